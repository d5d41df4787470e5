"""A trace as a self-contained HTML page, and the verdict matrix as a page whose cells link to those pages.

The trace page holds the header, the replay's verdict, the sequence diagram (inline SVG, and its Mermaid
source), and every step with its outcome, what changed and the state after it: the IPVS connection table as
`ipvsadm -lnc` shows it, the real servers as `ipvsadm -ln`, conntrack, the clients, the pods and
kube-proxy. Everything comes from the replay (ipvs_verify.presentation.trace.Replay): the IPVS tables from
its States, the rest from the state views of its own trace. No script, no external file: CSS and SVG are
inline, so the page works offline and as a CI artifact. Jinja2 templates (package data, autoescaped);
the same trace gives byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from ipvs_verify.errors import UserError
from ipvs_verify.model.system import replay_system
from ipvs_verify.presentation.diagram import build_sequence, mermaid
from ipvs_verify.presentation.ipvs_tables import connection_rows, ipvsadm_ln, ipvsadm_lnc, service_view
from ipvs_verify.presentation.story import diff, header
from ipvs_verify.presentation.svg_diagram import svg_diagram
from ipvs_verify.presentation.trace import Replay
from ipvs_verify.presentation.trace_model import Params, StateView

_env = Environment(loader=PackageLoader("ipvs_verify.presentation", "templates"), autoescape=True,
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _params(params: Params) -> str:
    return " ".join(f"{k}={v}" for k, v in params.given().items())


def _others(view: StateView) -> dict[str, Any]:
    """The state apart from IPVS's tables, as the trace's state view has it (section -> rows)."""
    v = view.model_dump(mode="json", exclude_unset=True)
    ipvs = v.get("ipvs", {})
    kp = v.get("kube_proxy", {})
    return {
        "conntrack": v.get("conntrack", {}),
        "clients": v.get("clients", {}),
        "pods": v.get("pods", {}) or {"(none)": ""},
        "kube-proxy": {
            "next sync": kp.get("sync_at") if kp.get("sync_at") is not None else "none pending",
            "next graceful-deletion check": kp.get("next_check_at"),
            "graceful-deletion list": ", ".join(kp.get("graceful_deletion_list", [])) or "(empty)",
        },
        "IPVS, besides": {
            "rr cursor": ipvs.get("rr_cursor"),
            "expire_nodest_conn work pending": "yes" if ipvs.get("flush_pending") else "no",
            "environment changes left": v.get("changes_left"),
        },
    }


def trace_page(replay: Replay, source: str = "", back: str | None = None) -> str:
    """The page of one replayed trace. source: the file it came from (shown); back: a link to the matrix page."""
    trace = replay.trace
    sys = replay_system(replay.config, "exact")
    head = header(trace)
    seq = build_sequence(replay)
    steps = []
    prev = trace.initial_state
    views = [trace.initial_state] + [s.state for s in trace.steps]
    for i, (st, view) in enumerate(zip(replay.states, views, strict=True)):
        rec = trace.steps[i - 1] if i else None
        steps.append({
            "n": i,
            "title": (f"{rec.step}. t={rec.time} {rec.actor}: {rec.action} {_params(rec.params)}".rstrip()
                      if rec else "the initial state"),
            "outcome": rec.outcome if rec else "",
            "changes": [c.strip() for c in diff(prev, view)] if rec else [],
            "cycle_starts": trace.loop_start is not None and i == trace.loop_start + 1,
            "in_cycle": trace.loop_start is not None and i > trace.loop_start,
            "lnc": ipvsadm_lnc(connection_rows(sys, st)),
            "ln": ipvsadm_ln(service_view(sys, st)),
            "others": _others(view),
        })
        prev = view
    return _env.get_template("trace.html.j2").render(
        title=head[0], facts=head[1:], source=source, verdict=replay.verdict(), problems=replay.problems,
        reproduces=replay.exit_code == 0, loop_start=trace.loop_start, steps=steps, back=back,
        svg=Markup(svg_diagram(seq, link_steps=True)), mermaid=mermaid(seq), n_steps=len(trace.steps))


@dataclass(frozen=True)
class MatrixCell:
    status: str  # holds, violated, undecided, bounded, vacuous, n/a
    href: str | None  # the trace page of a violation, beside the matrix page


@dataclass(frozen=True)
class MatrixRow:
    name: str
    sysctls: str
    cells: list[MatrixCell]


def matrix_page(title: str, properties: list[tuple[int, str, str]], rows: list[MatrixRow]) -> str:
    """The verdict table; properties: (number, name, kind) per column."""
    return _env.get_template("matrix.html.j2").render(title=title, properties=properties, rows=rows)


def write_page(path: Path, text: str, option: str) -> None:
    """Write a rendering; a path that cannot be written is bad input (exit 2), named with its option."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UserError(f"{option}: cannot write {path} ({e.strerror or e})") from None


def write_renderings(replay: Replay, source: str, html: Path | None, svg: Path | None) -> None:
    """`show --html FILE` and `show --svg FILE`."""
    if html is not None:
        write_page(html, trace_page(replay, source), "--html")
    if svg is not None:
        write_page(svg, '<?xml version="1.0" encoding="UTF-8"?>\n' + svg_diagram(build_sequence(replay)), "--svg")
