"""The sequence diagram (ipvs_verify.presentation.diagram.Sequence) drawn as SVG: plain elements, no script.

A row per arrow or note, grouped by step: each step is a band (`<g class="step" id="diagram-step-N">`)
with its number, time and action in the left gutter, so a step that drew nothing is still there. Text is
monospace, so its width is known without a font's metrics and the layout is the same on every machine;
the output is byte-identical for the same sequence. Colours and lines are presentation attributes, not
CSS, so the file looks the same standalone as inline in the HTML page.
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET

from ipvs_verify.presentation.diagram import Arrow, Note, Sequence

SVG_NS = "http://www.w3.org/2000/svg"
FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
FONT_SIZE = 12
CHAR_W = 7.25  # the advance of a 12 px monospace glyph (DejaVu Sans Mono: 0.602 em), rounded up
ROW = 30  # height of one arrow or note
HEAD = 34  # lifeline boxes
PAD = 10
MIN_GAP = 120  # between two lifelines; wider where an arrow's label needs it
GUTTER_CHARS = 34
BAND = ("#ffffff", "#f4f6f8")
LOOP_BAND = ("#fff7e6", "#fdefd6")
STROKE = {"request": "#24292f", "reply": "#1a7f37", "lost": "#cf222e"}
NOTE_FILL = {"note": "#fff8c5", "time": "#ddf4ff", "loop-start": "#ffd8a8", "loop-end": "#ffd8a8"}


def _w(text: str) -> float:
    return len(text) * CHAR_W


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _el(parent: ET.Element, tag: str, **attrs: str | float) -> ET.Element:
    return ET.SubElement(parent, tag, {k.rstrip("_").replace("_", "-"): v if isinstance(v, str) else _fmt(v)
                                       for k, v in attrs.items()})


def _text(parent: ET.Element, x: float, y: float, text: str, anchor: str = "middle", **attrs: str | float) -> None:
    t = _el(parent, "text", x=x, y=y, text_anchor=anchor, **attrs)
    t.text = text


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "…"


def svg_diagram(seq: Sequence, link_steps: bool = False) -> str:
    """The diagram as an SVG document (no XML declaration: it is inlined as it is in the HTML page).

    link_steps: each step's gutter label links to `#step-N` (the page's section for that step)."""
    ids = [x.id for x in seq.lifelines]
    xs = _lifeline_xs(seq, GUTTER_CHARS * CHAR_W + 2 * PAD)
    col = MIN_GAP  # the margin before the first lifeline and after the last, and a span note's overhang
    # a note over one lifeline is as wide as its text and may stick out past the outer columns
    right = xs[ids[-1]] + col / 2
    for item in seq.items:
        if isinstance(item, Note) and len(item.over) == 1:
            half = _w(item.text) / 2 + PAD
            right = max(right, xs[item.over[0]] + half + PAD)
    width = right + PAD
    by_step: dict[int, list[Arrow | Note]] = {h.step: [] for h in seq.steps}
    for item in seq.items:
        by_step[item.step].append(item)  # every item belongs to a step of the trace
    action_lines = {h.step: textwrap.wrap(h.action, GUTTER_CHARS, break_on_hyphens=False) or [""] for h in seq.steps}
    heights = {n: max(24 + 15 * len(action_lines[n]), len(items) * ROW + 6) for n, items in by_step.items()}
    top = PAD + HEAD + 8
    height = top + sum(heights.values()) + 8 + HEAD + PAD

    svg = ET.Element("svg", {"xmlns": SVG_NS, "width": _fmt(width), "height": _fmt(height),
                             "viewBox": f"0 0 {_fmt(width)} {_fmt(height)}", "font-family": FONT,
                             "font-size": str(FONT_SIZE), "role": "img", "class": "sequence-diagram"})
    ET.SubElement(svg, "title").text = "Sequence diagram: " + ", ".join(x.label for x in seq.lifelines)
    _el(svg, "rect", x="0", y="0", width=width, height=height, fill="#ffffff")  # opaque in a dark viewer too
    defs = ET.SubElement(svg, "defs")
    for kind, colour in STROKE.items():
        m = _el(defs, "marker", id=f"arrow-{kind}", viewBox="0 0 10 10", refX="9", refY="5", markerWidth="8",
                markerHeight="8", orient="auto")
        if kind == "lost":  # a cross: the packet goes no further
            _el(m, "path", d="M1,1 L9,9 M9,1 L1,9", stroke=colour, stroke_width="1.8", fill="none")
        elif kind == "reply":
            _el(m, "path", d="M0,0 L10,5 L0,10", stroke=colour, stroke_width="1.5", fill="none")
        else:
            _el(m, "path", d="M0,0 L10,5 L0,10 z", fill=colour)

    bands = _el(svg, "g", class_="steps")
    lines = _el(svg, "g", class_="lifelines")
    bottom = height - PAD - HEAD
    for lid, lf in zip(ids, seq.lifelines, strict=True):
        x = xs[lid]
        _el(lines, "line", x1=x, y1=PAD + HEAD, x2=x, y2=bottom, stroke="#8c959f", stroke_width="1",
            stroke_dasharray="4 3")
        for y in (PAD, bottom):
            box = _el(lines, "g", class_="lifeline", data_lifeline=lid)
            bw = max(_w(lf.label) + 2 * PAD, 90)
            _el(box, "rect", x=x - bw / 2, y=y, width=bw, height=HEAD - 6, rx="4", fill="#eaeef2", stroke="#57606a")
            _text(box, x, y + (HEAD - 6) / 2 + 4, lf.label, font_weight="bold")

    loop_from = _loop_from(seq)
    y = top
    for i, head in enumerate(seq.steps):
        g = _el(bands, "g", class_="step", id=f"diagram-step-{head.step}", data_step=str(head.step))
        ET.SubElement(g, "title").text = f"step {head.step}: {head.actor} {head.action} => {head.outcome}"
        h = heights[head.step]
        fill = (LOOP_BAND if loop_from is not None and head.step >= loop_from else BAND)[i % 2]
        _el(g, "rect", x="0", y=y, width=width, height=h, fill=fill)
        label: ET.Element = g
        if link_steps:
            label = _el(g, "a", href=f"#step-{head.step}")
        _text(label, PAD, y + 16, _clip(f"{head.step}. t={head.time}  {head.actor}", GUTTER_CHARS), "start",
              font_weight="bold", fill="#0969da" if link_steps else "#24292f")
        for k, line in enumerate(action_lines[head.step]):
            _text(label, PAD, y + 31 + 15 * k, line, "start", fill="#57606a")
        for k, item in enumerate(by_step[head.step]):
            _draw(g, item, xs, col, y + 6 + k * ROW)
        y += h
    ET.indent(svg, space=" ")
    return ET.tostring(svg, encoding="unicode") + "\n"


def _lifeline_xs(seq: Sequence, gutter: float) -> dict[str, float]:
    """Each lifeline's x: the gaps between neighbours widened, shortest arrows first, until every arrow's
    label fits between its two ends."""
    ids = [x.id for x in seq.lifelines]
    gaps = [float(MIN_GAP)] * (len(ids) - 1)
    spans = sorted({(min(a, b), max(a, b), _w(it.label) + 2 * PAD) for it in seq.items if isinstance(it, Arrow)
                    for a, b in [(ids.index(it.src), ids.index(it.dst))] if a != b},
                   key=lambda s: (s[1] - s[0], s))
    for lo, hi, need in spans:
        short = need - sum(gaps[lo:hi])
        if short > 0:
            for k in range(lo, hi):
                gaps[k] += short / (hi - lo)
    xs, x = {}, gutter + MIN_GAP / 2
    for k, lid in enumerate(ids):
        xs[lid] = x
        x += gaps[k] if k < len(gaps) else 0
    return xs


def _loop_from(seq: Sequence) -> int | None:
    starts = [it.step for it in seq.items if isinstance(it, Note) and it.kind == "loop-start"]
    return starts[0] if starts else None


def _draw(g: ET.Element, item: Arrow | Note, xs: dict[str, float], col: float, y: float) -> None:
    """One row, its top at y."""
    if isinstance(item, Arrow):
        x1, x2 = xs[item.src], xs[item.dst]
        ly = y + ROW - 8
        grp = _el(g, "g", class_=f"arrow arrow-{item.kind}")
        dash = {} if item.kind == "request" else {"stroke_dasharray": "6 4"}
        if x1 == x2:  # to itself: out and back
            _el(grp, "path", d=f"M{_fmt(x1)},{_fmt(ly - 10)} h30 v10 h-28", fill="none", stroke=STROKE[item.kind],
                stroke_width="1.5", marker_end=f"url(#arrow-{item.kind})", **dash)
            _text(grp, x1 + 36, ly - 6, item.label, "start")
            return
        end = x2 - 2 if x2 > x1 else x2 + 2
        _el(grp, "line", x1=x1, y1=ly, x2=end, y2=ly, stroke=STROKE[item.kind], stroke_width="1.5",
            marker_end=f"url(#arrow-{item.kind})", **dash)
        # a halo of the page's colour keeps a label readable where it crosses a lifeline
        _text(grp, (x1 + x2) / 2, ly - 5, item.label, fill=STROKE[item.kind] if item.kind != "request" else "#24292f",
              stroke="#ffffff", stroke_width="3", paint_order="stroke")
        return
    xs_over = [xs[o] for o in item.over]
    if len(xs_over) == 1:
        w = _w(item.text) + 2 * PAD
        x = xs_over[0] - w / 2
    else:
        x = min(xs_over) - col / 2 + 4
        w = max(xs_over) - min(xs_over) + col - 8
    grp = _el(g, "g", class_=f"note note-{item.kind}")
    _el(grp, "rect", x=x, y=y + 3, width=w, height=ROW - 6, rx="3", fill=NOTE_FILL[item.kind], stroke="#9a6700",
        stroke_width="0.8")
    _text(grp, x + w / 2, y + ROW / 2 + 4, item.text)
