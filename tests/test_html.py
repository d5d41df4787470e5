"""The HTML page and the SVG diagram of a trace, and `matrix --html`: well-formed, every step present, the
state tables as the trace's own state views say, links that resolve, byte-identical for the same trace;
and the pages opened in a real headless browser (Debian's chromium through its chromedriver), which must
draw the diagram and show every step. The browser test is skipped, with the reason, only where no browser
is installed (.ci/run installs one)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import html5lib
import pytest

from ipvs_verify import cli
from ipvs_verify.presentation.diagram import Arrow, build_sequence
from ipvs_verify.presentation.html_page import trace_page
from ipvs_verify.presentation.svg_diagram import svg_diagram
from ipvs_verify.presentation.trace import Replay, load_trace, replay_trace
from ipvs_verify.presentation.trace_model import TraceFile

ROOT = Path(__file__).parent.parent
CX = ROOT / "counterexamples"
ALL = sorted(CX.glob("**/*.json"))
SVG = "{http://www.w3.org/2000/svg}"
XHTML = "{http://www.w3.org/1999/xhtml}"
SAFETY = CX / "K46-kp1.30-mode0--no-new-conn-to-destroyed-pod.json"
LASSO = CX / "K46-kp1.30-mode0--quiesced-dest-eventually-deleted.json"
# one of each shape: safety, liveness (a cycle), UDP, bridge, a persistent service's templates if one is committed
SHAPES = [SAFETY, LASSO, *[p for p in ALL if "udp" in p.name][:1], *[p for p in ALL if "bridge" in p.name][:1],
          *[p for p in ALL if "persist" in p.name][:1]]


def _replay(path: Path) -> Replay:
    return replay_trace(load_trace(path), path)


def _parse_html(text: str) -> Any:
    """A strict WHATWG parse: any parse error (a stray tag, a bad nesting) raises."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=True).parse(text)


def _ids(doc: Any) -> list[str]:
    return [e.get("id") for e in doc.iter() if e.get("id") is not None]


def _hrefs(doc: Any) -> list[str]:
    return [e.get("href") for e in doc.iter() if e.tag in (f"{XHTML}a", f"{SVG}a") and e.get("href") is not None]


# ---------------------------------------------------------------------- SVG
@pytest.mark.parametrize("path", SHAPES, ids=lambda p: p.stem)
def test_svg_is_well_formed_and_draws_every_step_and_message(path: Path) -> None:
    replay = _replay(path)
    root = ET.fromstring(svg_diagram(build_sequence(replay)))
    assert root.tag == f"{SVG}svg" and float(root.get("width", 0)) > 0 and float(root.get("height", 0)) > 0
    steps = root.findall(f".//{SVG}g[@class='step']")
    assert [g.get("data-step") for g in steps] == [str(s.step) for s in replay.trace.steps]
    # a lifeline per actor: the clients, IPVS, conntrack, kube-proxy and every pod of the scope
    lanes = {g.get("data-lifeline") for g in root.iter(f"{SVG}g") if g.get("class") == "lifeline"}
    pods = {f"pod_{p}" for p in replay.config.scope.all_pods}
    assert {"IPVS", "conntrack", "kube_proxy", "client_1"} | pods <= lanes
    # every SYN the model forwarded is an arrow into a pod, in the step that forwarded it
    for g, step in zip(steps, replay.trace.steps, strict=True):
        forwarded = sum(1 for e in step.events if e.event == "SYN_FORWARDED")
        drawn = [a for a in g.iter(f"{SVG}g") if a.get("class") == "arrow arrow-request"
                 and "".join(a.itertext()).strip().startswith("SYN") and "from" not in "".join(a.itertext())]
        assert len(drawn) == forwarded, step.step


def test_svg_and_mermaid_draw_the_same_messages() -> None:
    seq = build_sequence(_replay(SAFETY))
    root = ET.fromstring(svg_diagram(seq))
    drawn = ["".join(g.itertext()).strip() for g in root.iter(f"{SVG}g") if (g.get("class") or "").startswith("arrow")]
    from ipvs_verify.presentation.diagram import mermaid

    text = mermaid(seq)
    labels = re.findall(r"^    \w+(?:->>|-->>|--x)\w+: (.*)$", text, re.MULTILINE)
    assert drawn == labels == [i.label for i in seq.items if isinstance(i, Arrow)]


# ---------------------------------------------------------------------- the trace page
def test_every_committed_trace_renders_a_well_formed_page_with_every_step() -> None:
    for path in ALL:
        replay = _replay(path)
        doc = _parse_html(trace_page(replay, path.name))
        ids = _ids(doc)
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate ids"
        sections = [e.get("data-step") for e in doc.iter(f"{XHTML}section")]
        assert sections == [str(n) for n in range(len(replay.trace.steps) + 1)], path.name
        assert doc.find(f".//{SVG}svg") is not None, path.name
        for href in _hrefs(doc):  # the page links only within itself
            assert href.startswith("#") and href[1:] in ids, f"{path.name}: {href}"


def _pre_lines(section: Any, cls: str) -> list[str]:
    pre = next(p for p in section.iter(f"{XHTML}pre") if cls in (p.get("class") or "").split())
    return "".join(pre.itertext()).splitlines()


@pytest.mark.parametrize("path", SHAPES, ids=lambda p: p.stem)
def test_the_ipvsadm_tables_say_what_the_state_views_say(path: Path) -> None:
    """The page's tables come from the replayed States; the trace's state views (a different code path,
    compared with the file by the replay) must agree with them on every step."""
    trace: TraceFile = _replay(path).trace
    doc = _parse_html(trace_page(_replay(path)))
    sections = list(doc.iter(f"{XHTML}section"))
    views = [trace.initial_state] + [s.state for s in trace.steps]
    times = [0] + [s.time for s in trace.steps]
    udp = trace.config.scope.protocol == "udp"
    for section, view, now in zip(sections, views, times, strict=True):
        ipvs = view.model_dump(mode="json")["ipvs"]
        conns = [line.split("#")[0].split() for line in _pre_lines(section, "conns")[2:]]
        entries = [c for c in conns if not c[3].endswith(":0")]  # not the templates
        assert len(entries) == len(ipvs["entries"])
        for row, e in zip(entries, ipvs["entries"], strict=True):
            assert row[0] == ("UDP" if udp else "TCP")
            assert row[2] == ("UDP" if udp else e["state"]) and row[3] == e["flow"] and row[5] == f"{e['dest']}:80"
            if isinstance(e["expires_at"], int) and trace.search_timing != "untimed":
                minutes, seconds = map(int, row[1].split(":"))
                assert minutes * 60 + seconds == e["expires_at"] - now
        dests = {}
        for line in _pre_lines(section, "dests")[3:]:
            words = line.split("#")[0].split()
            listed = words[0] == "->"
            address, *numbers = words[1:] if listed else words
            weight, active, inactive = (int(x) for x in numbers[-3:])
            dests[address.removesuffix(":80")] = ("in service" if listed else "deleted", weight, active, inactive)
        assert dests == {name: (d["status"], d["weight"], d["active"], d["inactive"])
                         for name, d in ipvs["dests"].items()}


def test_a_persistent_service_shows_its_templates_and_its_scheduler() -> None:
    """No committed counterexample has a persistent service: a short trace of one, built and replayed."""
    from dataclasses import replace

    from ipvs_verify.model.config import make_config
    from ipvs_verify.model.state import Plan
    from ipvs_verify.model.system import Act
    from ipvs_verify.presentation.trace import build_trace
    from ipvs_verify.runner.matrix import DEFAULT_SCOPE

    cfg = make_config("K46", "1.30", {"conn_reuse_mode": 0}, replace(DEFAULT_SCOPE, persistence=10800),
                      scheduler="sh-fallback")
    replay = replay_trace(build_trace(cfg, [(Act.REQUEST, 0, Plan.CLIENT_CLOSES), (Act.WAIT, 5, 0)], None,
                                      "explicit-bfs", "event"))
    assert not replay.problems
    last = list(_parse_html(trace_page(replay)).iter(f"{XHTML}section"))[-1]
    view = replay.trace.steps[-1].state.model_dump(mode="json")["ipvs"]["templates"]
    pod, expires = re.fullmatch(r"(pod-\w+), expires at (\d+)", view["client-1"]).groups()  # type: ignore[union-attr]
    templates = [line.split() for line in _pre_lines(last, "conns")[2:] if line.split()[3] == "client-1:0"]
    minutes, seconds = map(int, templates[0][1].split(":"))
    assert len(templates) == 1 and templates[0][2] == "NONE" and templates[0][5] == f"{pod}:80"
    assert minutes * 60 + seconds == int(expires) - replay.trace.steps[-1].time
    assert _pre_lines(last, "dests")[2] == "TCP  VIP:80 sh sh-fallback persistent 10800"


def test_the_page_names_the_problems_of_a_trace_that_no_longer_reproduces() -> None:
    trace = load_trace(SAFETY)
    trace.steps[0].outcome = "something else"
    replay = replay_trace(trace, "tampered")
    assert replay.problems
    doc = _parse_html(trace_page(replay))
    text = "".join(doc.find(f".//{XHTML}ul[@class='problems']").itertext())
    assert "step 1: outcome" in text


# ---------------------------------------------------------------------- show --html / --svg
def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        cli.main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_show_writes_the_page_and_the_svg(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    page, svg = tmp_path / "t.html", tmp_path / "t.svg"
    code, out, err = run(capsys, "show", str(LASSO), "--html", str(page), "--svg", str(svg))
    assert (code, out, err) == (0, "", "")
    assert ET.parse(svg).getroot().tag == f"{SVG}svg"
    assert svg.read_text().startswith('<?xml version="1.0" encoding="UTF-8"?>\n<svg ')
    _parse_html(page.read_text())


def test_show_html_bad_input_is_one_line_and_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "show", str(SAFETY), "--html", str(tmp_path / "no" / "such" / "dir.html"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: --html: cannot write ")
    code, _, err = run(capsys, "show", str(SAFETY), "--svg", str(tmp_path / "d.svg"), "--markdown")
    assert code == 2 and "--markdown and --html/--svg" in err


def test_show_html_of_a_trace_that_differs_is_1_and_still_written(capsys: pytest.CaptureFixture[str],
                                                                  tmp_path: Path) -> None:
    text = SAFETY.read_text().replace('"time": 0', '"time": 7', 1)
    assert text != SAFETY.read_text()
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    code, out, err = run(capsys, "show", str(bad), "--html", str(tmp_path / "bad.html"))
    assert code == 1 and out == "" and "the file differs from the replay" in err
    assert "the file says 7" in (tmp_path / "bad.html").read_text()


def test_the_same_trace_gives_byte_identical_files(tmp_path: Path) -> None:
    """Two processes with different hash seeds write the same bytes."""
    outs = []
    for seed in ("1", "2"):
        page, svg = tmp_path / f"{seed}.html", tmp_path / f"{seed}.svg"
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "ipvs_verify.cli", "show", str(LASSO), "--html", str(page), "--svg",
                        str(svg)], check=True, env=env, cwd=tmp_path)
        outs.append((page.read_bytes(), svg.read_bytes()))
    assert outs[0] == outs[1]


# ---------------------------------------------------------------------- matrix --html
@pytest.fixture(scope="module")
def matrix_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("matrix")
    with pytest.raises(SystemExit) as e:
        cli.main(["matrix", "--variants", "K46", "--modes", "0", "--pod-network", "routed", "-j", "1", "-q",
                  "--out", str(base / "out"), "--html", str(base / "html"), "--json"])
    assert e.value.code == 0
    return base


def test_matrix_html_links_every_violated_cell_to_a_page_that_exists(matrix_site: Path) -> None:
    html = matrix_site / "html"
    doc = _parse_html((html / "index.html").read_text())
    table = doc.find(f".//{XHTML}table[@id='matrix']")
    rows = table.findall(f"{XHTML}tbody/{XHTML}tr") or table.findall(f"{XHTML}tr")
    head = [th.get("title", "").split(" (")[0] for th in rows[0]][2:]
    linked = []
    for row in rows[1:]:
        for prop, td in zip(head, list(row)[2:], strict=True):
            a = td.find(f"{XHTML}a")
            assert (a is not None) == (td.get("class") in ("violated", "undecided")), (prop, td.get("class"))
            if a is not None:
                target = html / a.get("href")
                assert target.is_file(), a.get("href")
                page = _parse_html(target.read_text())
                assert "".join(page.find(f".//{XHTML}h1").itertext()).startswith(f"{prop} (#")
                assert [x.get("href") for x in page.iter(f"{XHTML}a") if x.get("id") == "back"] == ["index.html"]
                linked.append(a.get("href"))
    assert linked
    # a page per counterexample written, and nothing else
    written = sorted(p.name.removesuffix(".json") + ".html" for p in (matrix_site / "out").glob("*.json"))
    assert sorted(linked) == written == sorted(p.name for p in html.glob("*.html") if p.name != "index.html")


def test_matrix_html_with_an_smt_engine_is_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "matrix", "--variants", "K46", "--modes", "0", "--engine", "bmc", "--html",
                       str(tmp_path))
    assert code == 2 and "--html and --engine bmc" in err


# ---------------------------------------------------------------------- a real browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for every page of this module."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="ipvs-verify-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # the given driver: no download
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _visible(driver: Any, element: Any) -> bool:
    """Displayed, with a nonzero box (selenium's is_displayed, and the layout's own rectangle)."""
    box = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];",
                                element)
    return bool(element.is_displayed()) and box[0] > 0 and box[1] > 0


@pytest.mark.parametrize("path", [SAFETY, LASSO], ids=lambda p: p.stem)
def test_a_browser_draws_the_diagram_and_shows_every_step(browser: Any, path: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    replay = _replay(path)
    page = tmp_path / "page.html"
    page.write_text(trace_page(replay, path.name))
    browser.get(page.as_uri())
    assert browser.title.startswith(replay.trace.property or "")
    svg = browser.find_element(By.CSS_SELECTOR, ".diagram svg")
    assert svg.size["width"] > 300 and svg.size["height"] > 100
    # the diagram is drawn: its content has a box (not an empty or broken SVG), with its arrows and lifelines
    bbox = browser.execute_script("const b = arguments[0].getBBox(); return [b.width, b.height];", svg)
    assert bbox[0] > 300 and bbox[1] > 100
    arrows = browser.find_elements(By.CSS_SELECTOR, ".diagram svg g.arrow line")
    assert len(arrows) == sum(1 for i in build_sequence(replay).items if isinstance(i, Arrow))
    assert all(_visible(browser, a) for a in browser.find_elements(By.CSS_SELECTOR, ".diagram svg g.lifeline"))
    n = len(replay.trace.steps)
    bands = browser.find_elements(By.CSS_SELECTOR, ".diagram svg g.step")
    assert len(bands) == n and all(_visible(browser, b) for b in bands)
    sections = browser.find_elements(By.CSS_SELECTOR, "section.step")
    assert [s.get_attribute("id") for s in sections] == [f"step-{i}" for i in range(n + 1)]
    for s in sections:
        browser.execute_script("arguments[0].scrollIntoView();", s)
        assert _visible(browser, s)
        assert _visible(browser, s.find_element(By.CSS_SELECTOR, "pre.conns"))


def test_a_browser_follows_the_matrix_links(browser: Any, matrix_site: Path) -> None:
    from selenium.webdriver.common.by import By

    index = (matrix_site / "html" / "index.html").as_uri()
    browser.get(index)
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#matrix a")]
    assert links
    for href in links:
        browser.get(href)
        assert browser.find_element(By.CSS_SELECTOR, ".diagram svg").size["width"] > 0
        assert browser.find_elements(By.CSS_SELECTOR, "section.step")
        browser.find_element(By.ID, "back").click()
        assert browser.current_url == index
