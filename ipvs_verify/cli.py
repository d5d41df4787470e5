"""The `ipvs-verify` command line: matrix, show, replay, conformance, properties.

Typer gives typed options and help; rich draws progress and tables. Bad input raises UserError (or a
model ValueError), printed as one line with exit code 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ipvs_verify.engines.explicit import SEARCHES
from ipvs_verify.engines.packed import PackingError
from ipvs_verify.errors import UserError
from ipvs_verify.model.config import POD_NETWORKS, PROTOCOLS, Scope, UnknownScheduler
from ipvs_verify.model.decision_points import PatchError
from ipvs_verify.model.kube_proxy import UnknownKubeProxy
from ipvs_verify.model.system import ACTION_NAMES, System
from ipvs_verify.model.variants import DEFAULT_MATRIX_VARIANTS, UnknownKernel
from ipvs_verify.presentation.story import story_lines
from ipvs_verify.presentation.trace import load_trace, replay_trace
from ipvs_verify.properties.catalog import PROPERTIES, resolve
from ipvs_verify.runner.expected import MANIFEST, Moved, compare, load_manifest, update_manifest
from ipvs_verify.runner.matrix import (
    CLIENTS,
    DEFAULT_KUBE_PROXY,
    DEFAULT_MODES,
    DEFAULT_POD_NETWORKS,
    DEFAULT_SCOPE,
    EVENT_STATE_CAP,
    CellSpec,
    cell_key,
    default_cells,
    markdown_table,
    matrix_report,
    run_matrix,
    save_counterexamples,
)
from ipvs_verify.runner.progress import MatrixProgress
from ipvs_verify.runner.report import ExpectedReport
from ipvs_verify.runner.report import Moved as ReportMoved
from ipvs_verify.runner.verdicts import CellResult

app = typer.Typer(add_completion=False, no_args_is_help=True)
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

SYMBOL = {"holds": "holds", "violated": "VIOLATED", "undecided": "undecided", "bounded": "bounded",
          "vacuous": "vacuous", "n/a": "n/a"}
STYLE = {"holds": "green", "violated": "bold red", "undecided": "yellow", "bounded": "yellow", "vacuous": "magenta",
         "n/a": "dim"}


def _split(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _smt_scope(scope: Scope) -> Scope:
    """The Z3 engines do not encode a client that crashes, nor kube-proxy's read/delete window: they run the
    scope without them, and say so."""
    if scope.client_crashes:
        err.print("note: the SMT engines do not encode client crashes: the scope without them", highlight=False)
        scope = replace(scope, client_crashes=False)
    if scope.kp_window:
        err.print("note: the SMT engines do not encode kube-proxy's read/delete window: atomic sync and check",
                  highlight=False)
        scope = replace(scope, kp_window=False)
    return scope


# scope options shared by matrix and check
ClientsOption = Annotated[int, typer.Option(help="scope: client addresses", min=1, max=8)]
PortsOption = Annotated[int, typer.Option(help="scope: ephemeral ports per client", min=1, max=8)]
ChangesOption = Annotated[int, typer.Option(help="scope: pod deletions, creations and crashes per run", min=0)]
CrashesOption = Annotated[bool, typer.Option(help="scope: pods may die before kube-proxy knows")]
ClientCrashesOption = Annotated[bool, typer.Option(help="scope: a client may lose an established connection without "
                                                   "a packet and reuse its port")]
BoundPortsOption = Annotated[bool, typer.Option(help="scope: the client binds its source ports (load testers, "
                                                "proxies): a connect takes over the port's own TIME_WAIT")]
KpWindowOption = Annotated[bool, typer.Option(help="scope: a packet may pass between kube-proxy's read of a real "
                                             "server's counters and its delete (deleteRsFunc's two netlink calls); "
                                             "--no-kp-window: one atomic step")]
ClientResetsOption = Annotated[bool, typer.Option(help="scope: a client may close with a RST (SO_LINGER 0, as load "
                                                  "testers do): no TIME_WAIT of its own")]


@app.command()
def matrix(
    variants: Annotated[str, typer.Option(help="comma-separated kernel variants or versions")] = ",".join(
        DEFAULT_MATRIX_VARIANTS),
    modes: Annotated[str, typer.Option(help="conn_reuse_mode values")] = ",".join(map(str, DEFAULT_MODES)),
    kube_proxy: Annotated[str, typer.Option(help="kube-proxy releases")] = ",".join(DEFAULT_KUBE_PROXY),
    protocols: Annotated[str, typer.Option(help="service protocols: tcp, udp")] = "tcp",
    scheduler: Annotated[str, typer.Option(help="IPVS scheduler (kube-proxy --ipvs-scheduler): rr, lc, wlc, sh, "
                                           "sh-fallback, sh-port, sh-fallback-port")] = "rr",
    pod_network: Annotated[str, typer.Option(help="pod networks: routed (a /32 route per pod), bridge (pods on a "
                                             "bridge with a subnet route); default both (the Z3 engines: routed)")
                           ] = "",
    client: Annotated[str, typer.Option(help="what the clients are: app (ephemeral ports, FIN closes), load-tester "
                                        "(bound ports, SO_LINGER 0 resets); comma-separated, a cell each")] = "app",
    persistence: Annotated[int, typer.Option(
        help="sessionAffinity ClientIP: the persistent service's timeout in seconds (0: none)", min=0)] = 0,
    invalid_drop: Annotated[bool, typer.Option("--invalid-drop", help="the node's FORWARD drops what conntrack "
                                               "finds INVALID (kube-proxy's iptables mode, Calico; not its IPVS "
                                               "mode): cells of their own (explicit engine)")] = False,
    properties: Annotated[str, typer.Option(help="property names or numbers (default: all)")] = "",
    clients: ClientsOption = DEFAULT_SCOPE.clients,
    ports: PortsOption = DEFAULT_SCOPE.ports,
    pods: Annotated[str, typer.Option(help="scope: pods running at the start")] = ",".join(DEFAULT_SCOPE.pods),
    spare_pods: Annotated[str, typer.Option(help="scope: pods a scale-out may create")] = ",".join(
        DEFAULT_SCOPE.spare_pods),
    changes: ChangesOption = DEFAULT_SCOPE.changes,
    crashes: CrashesOption = DEFAULT_SCOPE.crashes,
    client_crashes: ClientCrashesOption = DEFAULT_SCOPE.client_crashes,
    client_resets: ClientResetsOption = DEFAULT_SCOPE.client_resets,
    bound_ports: BoundPortsOption = DEFAULT_SCOPE.bound_ports,
    kp_window: KpWindowOption = DEFAULT_SCOPE.kp_window,
    jobs: Annotated[int, typer.Option("-j", "--jobs", help="worker processes (0: all cores)")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="where counterexamples are written")] = Path(
        "counterexamples"),
    max_states: Annotated[int, typer.Option(help="state cap of each explicit search", min=0)] = EVENT_STATE_CAP,
    as_json: Annotated[bool, typer.Option("--json", help="print the matrix as JSON")] = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="print the verdict table as Markdown")] = False,
    html: Annotated[Path | None, typer.Option("--html", metavar="DIR", help="also write the verdict table as "
                                              "DIR/index.html, each violated cell linked to its trace's page")] = None,
    engine: Annotated[str, typer.Option(help="explicit | bmc | induction | all (all: report disagreements)")] = (
        "explicit"),
    depth: Annotated[int, typer.Option(help="bmc: the depth bound", min=1)] = 8,
    search: Annotated[str, typer.Option(help="explicit search: packed (fast: its loop compiled where the install "
                                        "built it), packed-python (its loop in Python), or plain (one "
                                        "System.step per transition, the reference the packed one is tested "
                                        "against)")] = "packed",
    expect: Annotated[Path, typer.Option(help="the manifest of expected verdicts each cell is compared with "
                                         "(exit 1 when a verdict moves)")] = MANIFEST,
    update_expected: Annotated[bool, typer.Option("--update-expected", help="write this run's verdicts (and, "
                                                  "for a full run, state counts) into the manifest")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="no progress on stderr")] = False,
) -> None:
    """Check every property on every cell of the matrix and print the verdicts.

    Exit 0: every cell the manifest pins has its expected verdicts; 1: a verdict or a pinned state count moved
    (listed on stderr); 2: bad input; 130: interrupted.
    """
    _exclusive(("--json", as_json), ("--markdown", as_markdown))
    _exclusive(("--update-expected", update_expected), (f"--engine {engine}", engine != "explicit"))
    _exclusive(("--html", html is not None), (f"--engine {engine}", engine != "explicit"))
    if search not in SEARCHES:
        raise UserError(f"--search: expected one of {', '.join(SEARCHES)}, got '{search}'")
    try:
        mode_values = tuple(int(m) for m in _split(modes))
    except ValueError:
        raise UserError(f"--modes: expected integers 0..3, got '{modes}'") from None
    for m in mode_values:
        if not 0 <= m <= 3:
            raise UserError(f"--modes: conn_reuse_mode must be 0..3, got {m}")
    _distinct("--modes", [str(m) for m in mode_values])
    _distinct("--variants", list(_split(variants)))
    _distinct("--kube-proxy", list(_split(kube_proxy)))
    props = _props(properties)
    protos = _split(protocols)
    bad = [p for p in protos if p not in PROTOCOLS]
    if bad or not protos:
        raise UserError(f"--protocols: expected a comma-separated list of {', '.join(PROTOCOLS)}, got '{protocols}'")
    _distinct("--protocols", list(protos))
    # the Z3 engines do not encode the bridge: by default they run the routed cells (and say so)
    nets = _split(pod_network) or (DEFAULT_POD_NETWORKS if engine == "explicit" else ("routed",))
    if not pod_network and engine != "explicit":
        err.print("note: the SMT engines encode the routed pod network only: routed cells", highlight=False)
    if not nets or any(n not in POD_NETWORKS for n in nets):
        raise UserError(f"--pod-network: expected a comma-separated list of {', '.join(POD_NETWORKS)}, "
                        f"got '{pod_network}'")
    _distinct("--pod-network", list(nets))
    kinds = _split(client)
    if not kinds or any(k not in CLIENTS for k in kinds):
        raise UserError(f"--client: expected a comma-separated list of {', '.join(CLIENTS)}, got '{client}'")
    _distinct("--client", list(kinds))
    if invalid_drop and engine != "explicit":
        raise UserError(f"--invalid-drop: the Z3 engines do not encode the node's INVALID drop; expected --engine "
                        f"explicit, got '{engine}'")
    cells = default_cells(_split(variants), mode_values, _split(kube_proxy), protos, persistence, scheduler, nets,
                          kinds, invalid_drop)
    if not cells:
        raise UserError("--variants/--modes/--kube-proxy: expected at least one cell, got none")
    pod_names, spare_names = _split(pods), _split(spare_pods)
    if not pod_names or len(set(pod_names + spare_names)) != len(pod_names + spare_names):
        raise UserError(f"--pods/--spare-pods: expected distinct pod names, at least one running, got "
                        f"'{pods}' and '{spare_pods}'")
    scope = replace(DEFAULT_SCOPE, clients=clients, ports=ports, pods=pod_names, spare_pods=spare_names,
                    changes=changes, crashes=crashes, client_crashes=client_crashes, client_resets=client_resets,
                    bound_ports=bound_ports, kp_window=kp_window)
    for c in cells:
        c.config(scope)  # validate names before starting workers
    if engine != "explicit":  # the Z3 engines (issue 4)
        scope = _smt_scope(scope)
        from ipvs_verify.runner.smt import engine_matrix

        raise typer.Exit(engine_matrix(cells, scope, props, engine, depth, as_json, out_dir, jobs,
                                       max_states, out, quiet))
    manifest = load_manifest(expect) if (expect.exists() or not update_expected) else {}
    t0 = time.perf_counter()
    view = MatrixProgress([c.slug for c in cells], max_states, err, sys.stderr, quiet)

    def on_done(i: int, r: CellResult) -> None:
        view.done(i, ", ".join(f"{s.timing} {s.states:,} states{'' if s.complete else ' (' + s.bound + ')'}"
                               for s in r.searches) + f", {sum(s.seconds for s in r.searches):.1f} s")

    with view:
        try:
            results = run_matrix(cells, scope, props, jobs, max_states, view.update, on_done, search)
        except PackingError as e:
            raise UserError(f"the packed search cannot represent this model ({e}); --search plain does not "
                            "need to") from None
    paths = save_counterexamples(cells, results, out_dir)
    if html is not None:
        from ipvs_verify.runner.matrix_site import write_matrix_site

        write_matrix_site(html, cells, results, props, paths, scope.describe())
    keys = [cell_key(c, r.config.scope) for c, r in zip(cells, results, strict=True)]
    pin_states = len(props) == len(PROPERTIES) and max_states == EVENT_STATE_CAP
    if update_expected:
        n = update_manifest(expect, cells, scope, results, pin_states)
        err.print(f"wrote {n} cells to {expect}", highlight=False)
        moved: list[Moved] = []
        missing: list[str] = []
    else:
        moved, missing = compare(manifest, keys, results, pin_states)
    report = matrix_report(cells, results, paths, scope)
    report.expected = ExpectedReport(manifest=str(expect), moved=[ReportMoved(**m.__dict__) for m in moved],
                                     not_pinned=missing)
    report.seconds = round(time.perf_counter() - t0, 3)
    if as_json:
        print(report.to_json())
    elif as_markdown:
        print(markdown_table(cells, results, props), end="")
    else:
        _print_matrix(cells, results, props, paths, time.perf_counter() - t0, scope)
    _report_moved(moved, missing, expect)
    if moved:
        raise typer.Exit(1)


def _exclusive(*flags: tuple[str, bool]) -> None:
    given = [name for name, on in flags if on]
    if len(given) > 1:
        raise UserError(f"{given[0]} and {given[1]}: expected at most one of them")


def _distinct(option: str, values: list[str]) -> None:
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    if seen:
        raise UserError(f"{option}: expected distinct values, got '{seen[0]}' twice")


def _report_moved(moved: list[Moved], missing: list[str], manifest: Path) -> None:
    if missing:
        err.print(f"not in the manifest {manifest} (not compared): {', '.join(missing)}", highlight=False)
    if not moved:
        return
    table = Table(title=f"Moved against {manifest}")
    for col in ("cell", "property", "expected", "got"):
        table.add_column(col)
    for m in moved:
        table.add_row(m.cell, m.what, m.expected, m.got)
    err.print(table)
    err.print(f"{len(moved)} moved: if on purpose, rerun with --update-expected and say why in the commit",
              highlight=False)


def _props(text: str) -> tuple[Any, ...]:
    try:
        props = resolve(list(_split(text)) if text else None)
    except KeyError as e:
        raise UserError(f"--properties: {e.args[0]}") from None
    _distinct("--properties", [p.name for p in props])
    if text and not props:
        raise UserError(f"--properties: expected property names or numbers, got '{text}'")
    return props


def _print_matrix(cells: list[CellSpec], results: list[Any], props: tuple[Any, ...],
                  paths: dict[tuple[int, str], Path], seconds: float, scope: Scope) -> None:
    table = Table(title=f"Verdict matrix ({scope.describe()})", show_lines=False)
    table.add_column("cell")
    table.add_column("sysctls (mode/ct/nodest/quiesc)")
    for p in props:
        table.add_column(f"{p.number}", justify="center")
    for spec, res in zip(cells, results, strict=True):
        s = res.config.sysctls
        row = [spec.slug, f"{s.conn_reuse_mode}/{int(s.conntrack)}/{int(s.expire_nodest_conn)}/"
                          f"{int(s.expire_quiescent_template)}"]
        for v in res.verdicts:
            row.append(f"[{STYLE[v.status]}]{SYMBOL[v.status]}[/]")
        table.add_row(*row)
    out.print(table)
    out.print("properties: " + "; ".join(f"{p.number} {p.name} ({p.kind})" for p in props))
    stats = Table(title="Searches (event-driven, stopped once the complete untimed one has settled the rest; untimed)")
    for col in ("cell", "timing", "states", "transitions", "depth", "complete", "seconds", "states/s", "loop"):
        stats.add_column(col, justify="right" if col not in ("cell", "timing", "loop") else "left")
    for spec, res in zip(cells, results, strict=True):
        for s in res.searches:
            if res.same_as:  # one transition system with an earlier cell (model/equivalence.py): not searched again
                stats.add_row(spec.slug, s.timing, f"{s.states:,}", f"{s.transitions:,}", str(s.depth),
                              "yes" if s.complete else f"no ({s.bound})", "-", "-", f"= {res.same_as}")
                continue
            stats.add_row(spec.slug, s.timing, f"{s.states:,}", f"{s.transitions:,}", str(s.depth),
                          "yes" if s.complete else f"no ({s.bound})", f"{s.seconds:.1f}", f"{s.rate:,.0f}", s.loop)
    out.print(stats)
    # per-action coverage: the full counts are in --json; here, the actions a cell's scope offers that never
    # fired (a dead action is a hint that the model or the scope is not what was meant)
    for spec, res in zip(cells, results, strict=True):
        fired: dict[str, int] = {}
        for s in res.searches:
            for name, count in s.coverage.items():
                fired[name] = fired.get(name, 0) + count
        top = sorted(fired.items(), key=lambda kv: -kv[1])[:6]
        dead = [name for k in System(res.config).search_action_kinds()
                if not fired.get(name := ACTION_NAMES[k])]
        out.print(f"coverage {spec.slug}: " + ", ".join(f"{a} {n:,}" for a, n in top)
                  + (f"; never fired: {', '.join(dead)}" if dead else ""), highlight=False)
    notes = [(spec.slug, v) for spec, res in zip(cells, results, strict=True) for v in res.verdicts
             if v.status != "holds"]
    if notes:
        out.print("Evidence:")
        for slug, v in notes:
            path = next((str(p) for (ci, name), p in paths.items()
                         if name == v.prop.name and cells[ci].slug == slug), "")
            extra = path or v.detail
            out.print(f"  {slug} #{v.prop.number} {v.status}: {extra}")
            if path and v.detail:
                out.print(f"      {v.detail}")
    out.print(f"{len(cells)} cells in {seconds:.1f} s")


@app.command()
def show(
    trace: Annotated[Path, typer.Argument(help="a counterexample JSON file")],
    markdown: Annotated[bool, typer.Option(help="print the Markdown rendering")] = False,
    diagram: Annotated[bool, typer.Option(help="print a Mermaid sequence diagram (a lane per actor)")] = False,
    as_pytest: Annotated[bool, typer.Option("--pytest", help="print a standalone pytest reproducer")] = False,
    html: Annotated[Path | None, typer.Option("--html", metavar="FILE", help="write a self-contained HTML page: "
                                              "the steps, the diagram, the state after each step")] = None,
    svg: Annotated[Path | None, typer.Option("--svg", metavar="FILE", help="write the sequence diagram as SVG")
                   ] = None,
) -> None:
    """Tell a counterexample as a story: each step, its outcome, and what changed.

    Everything shown comes from replaying the trace in the model, not from the file's text. Exit 0 when the
    replay reproduces the file step for step and (a counterexample) still violates its property; 1 when a
    step differs from the file or no longer applies (each is named on stderr), or the property is no longer
    violated; 2 when the file is not a valid trace. With --html / --svg the page or the diagram is written
    instead of printed (the same codes; a file that cannot be written is 2).
    """
    files = html is not None or svg is not None
    _exclusive(("--markdown", markdown), ("--diagram", diagram), ("--pytest", as_pytest), ("--html/--svg", files))
    result = replay_trace(load_trace(trace), trace)
    rendered = result.trace  # the replay's own trace
    if files:  # written, nothing on stdout: the verdict goes to stderr when it is not a success
        from ipvs_verify.presentation.html_page import write_renderings

        write_renderings(result, str(trace), html, svg)
    elif diagram:
        from ipvs_verify.presentation.diagram import sequence_diagram

        print(sequence_diagram(result), end="")
    elif as_pytest:
        from ipvs_verify.presentation.reproducer import pytest_reproducer

        try:
            print(pytest_reproducer(rendered), end="")
        except ValueError as e:
            raise UserError(f"{trace}: {e}") from None
    elif markdown:
        from ipvs_verify.presentation.story import story_markdown

        print(story_markdown(rendered), end="")
    else:
        for line in story_lines(rendered):
            out.print(line, highlight=False, markup=False)
    sys.stdout.flush()
    for problem in result.problems:  # plain lines, never wrapped
        print(f"{trace}: {problem}", file=sys.stderr)
    if not (diagram or as_pytest or files):
        if result.prop is not None or result.problems:
            out.print(result.verdict(), highlight=False, markup=False)
    elif result.exit_code:
        print(f"{trace}: {result.verdict()}", file=sys.stderr)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command()
def replay(
    scenario: Annotated[Path, typer.Argument(help="a scenario YAML file")],
    variant: Annotated[str, typer.Option(help="kernel variant or version to run it on")] = "",
    all_variants: Annotated[bool, typer.Option("--all-variants", help="run it on every variant")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per step")] = False,
) -> None:
    """Replay an incident scenario step by step and print what happened at each step."""
    from ipvs_verify.scenario import check_variant_option, load_scenario, print_run, run_scenario

    _exclusive(("--variant", bool(variant)), ("--all-variants", all_variants))
    if variant:
        check_variant_option(variant)  # a bad option is named before the file is read
    sc = load_scenario(scenario)
    names = list(DEFAULT_MATRIX_VARIANTS) if all_variants else [variant or sc.variant]
    failed = False
    for name in names:
        run = run_scenario(sc, name)
        print_run(run, out, as_json)
        failed = failed or not run.ok
    if failed:
        raise typer.Exit(1)


@app.command()
def conformance(
    scenarios: Annotated[list[Path] | None, typer.Argument(
        help="scenario YAML files (default: scenarios/conformance/ and scenarios/, the fast ones)")] = None,
    slow: Annotated[bool, typer.Option("--slow", help="include the slow scenarios (long real waits)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per scenario")] = False,
    backend: Annotated[str, typer.Option(help="uml (User-Mode Linux) | qemu (TCG, Debian's x86 kernel)")] = "uml",
) -> None:
    """Run scenarios on a real Linux IPVS kernel (User-Mode Linux) and through the model; compare each step."""
    from ipvs_verify.conformance.cli import conformance_command

    raise typer.Exit(conformance_command(list(scenarios or []), slow, as_json, out, err, backend))


@app.command()
def check(
    patch_files: Annotated[list[str], typer.Argument(metavar="PATCH...", help="patch files (.yaml, .py) or shipped "
                                                     "patch ids, applied in this order")],
    base: Annotated[str, typer.Option(help="kernel variants or versions to apply them to (default: the first "
                                      "patch's base)")] = "",
    kube_proxy: Annotated[str, typer.Option(help="the kube-proxy release of the base (default: the first "
                                            "patch's)")] = "",
    modes: Annotated[str, typer.Option(help="conn_reuse_mode values")] = ",".join(map(str, DEFAULT_MODES)),
    pod_network: Annotated[str, typer.Option(help="pod networks: routed, bridge (default both; the Z3 engines: "
                                             "routed)")] = "",
    properties: Annotated[str, typer.Option(help="property names or numbers (default: all)")] = "",
    engine: Annotated[str, typer.Option(help="explicit | bmc | induction: the engine that checks both sides")] = (
        "explicit"),
    depth: Annotated[int, typer.Option(help="bmc: the depth bound", min=1)] = 8,
    must_fix: Annotated[str, typer.Option(help="properties that must hold in every patched cell (exit 1 if "
                                          "not)")] = "",
    clients: ClientsOption = DEFAULT_SCOPE.clients,
    ports: PortsOption = DEFAULT_SCOPE.ports,
    changes: ChangesOption = DEFAULT_SCOPE.changes,
    crashes: CrashesOption = DEFAULT_SCOPE.crashes,
    client_crashes: ClientCrashesOption = DEFAULT_SCOPE.client_crashes,
    client_resets: ClientResetsOption = DEFAULT_SCOPE.client_resets,
    bound_ports: BoundPortsOption = DEFAULT_SCOPE.bound_ports,
    kp_window: KpWindowOption = DEFAULT_SCOPE.kp_window,
    jobs: Annotated[int, typer.Option("-j", "--jobs", help="worker processes (0: all cores)")] = 0,
    max_states: Annotated[int, typer.Option(help="state cap of each explicit search", min=0)] = EVENT_STATE_CAP,
    out_dir: Annotated[Path, typer.Option("--out", help="where regressions' counterexamples are written")] = Path(
        "check-results"),
    cache: Annotated[bool, typer.Option(help="reuse unpatched baselines computed before (cached by the model's "
                                        "source, the cell and the scope)")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the verdict diff as JSON (docs/check.schema.json)")
                       ] = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="print the verdict diff as Markdown (for a pull "
                                              "request)")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="no progress on stderr")] = False,
) -> None:
    """Check patches against the model: every property with and without them, per cell, and what changed.

    Exit 0: nothing that held breaks (and every --must-fix property holds); 1: a regression (a property that
    held is violated with the patch: its counterexample is saved and told) or a --must-fix property does not
    hold; 2: bad input (a patch file, an option); 130: interrupted.
    """
    from ipvs_verify.patching.command import markdown, print_table, report, run_check
    from ipvs_verify.patching.compare import default_cache
    from ipvs_verify.patching.files import resolve_patch, with_base

    _exclusive(("--json", as_json), ("--markdown", as_markdown))
    patches = [resolve_patch(a) for a in patch_files]
    _distinct("PATCH", [p.id for p in patches])
    first = patches[0]
    if base or kube_proxy:
        first = with_base(first, _split(base) or None, kube_proxy or None)
    variants, kp = first.base_variants, first.base_kube_proxy
    _distinct("--base", list(variants))
    try:
        mode_values = tuple(int(m) for m in _split(modes))
    except ValueError:
        raise UserError(f"--modes: expected integers 0..3, got '{modes}'") from None
    if not mode_values or any(not 0 <= m <= 3 for m in mode_values):
        raise UserError(f"--modes: expected conn_reuse_mode values 0..3, got '{modes}'")
    if engine not in ("explicit", "bmc", "induction"):
        raise UserError(f"--engine: expected explicit, bmc or induction, got '{engine}'")
    nets = _split(pod_network) or (DEFAULT_POD_NETWORKS if engine == "explicit" else ("routed",))
    if not nets or any(n not in POD_NETWORKS for n in nets):
        raise UserError(f"--pod-network: expected a comma-separated list of {', '.join(POD_NETWORKS)}, "
                        f"got '{pod_network}'")
    props = _props(properties)
    fix = _props(must_fix) if must_fix else ()
    scope = replace(DEFAULT_SCOPE, clients=clients, ports=ports, changes=changes, crashes=crashes,
                    client_crashes=client_crashes, client_resets=client_resets,
                    bound_ports=bound_ports, kp_window=kp_window)
    if engine != "explicit":
        if not pod_network:
            err.print("note: the SMT engines encode the routed pod network only: routed cells", highlight=False)
        scope = _smt_scope(scope)
    run = run_check(patches, variants, kp, mode_values, nets, scope, props, jobs, max_states,
                    default_cache() if cache else None, err, quiet, engine, depth, out_dir)
    rep = report(run, scope, fix, out_dir)
    if as_json:
        print(rep.to_json())
    elif as_markdown:
        print(markdown(run, rep), end="")
    else:
        print_table(run, rep, out)
    for f in rep.failures:
        print(f"fails: {f}", file=sys.stderr)  # plain lines, never wrapped
    if rep.failures:
        raise typer.Exit(1)


@app.command()
def patches(
    as_markdown: Annotated[bool, typer.Option("--markdown", help="print the table as Markdown")] = False,
    update: Annotated[bool, typer.Option("--update", help="check every shipped patch on its base and record what "
                                         "it fixes and breaks (minutes)")] = False,
    jobs: Annotated[int, typer.Option("-j", "--jobs", help="worker processes for --update (0: all cores)")] = 0,
) -> None:
    """List the shipped patches: a line each, with what each fixes and breaks on its base.

    Exit 0; 1 when a shipped patch has no current record (it changed since `patches --update`); 2: a shipped
    patch file is malformed.
    """
    from ipvs_verify.patching.command import (
        fixes_and_breaks,
        load_record,
        patch_rows,
        patches_markdown,
        run_check,
        summarize,
        write_record,
    )
    from ipvs_verify.patching.compare import default_cache

    if update:
        from ipvs_verify.patching.files import shipped_patches

        entries: dict[str, Any] = {}
        for p in shipped_patches():
            err.print(f"checking {p.id} on {', '.join(p.base_variants)} ...", highlight=False)
            run = run_check([p], p.base_variants, p.base_kube_proxy, DEFAULT_MODES, DEFAULT_POD_NETWORKS,
                            DEFAULT_SCOPE, PROPERTIES, jobs, EVENT_STATE_CAP, default_cache(), err, True)
            entries[p.id] = {"sha256": p.digest, **summarize(run)}
        write_record(entries)
    rows = patch_rows(load_record())
    if as_markdown:
        print(patches_markdown(rows), end="")
    else:
        table = Table(title="Shipped patches (what each fixes and breaks on its base, default scope)")
        for col in ("patch", "form", "base", "change", "fixes", "breaks"):
            table.add_column(col)
        for p, r in rows:
            table.add_row(p.id, p.form, f"{', '.join(p.base_variants)} kp{p.base_kube_proxy}", p.summary,
                          *fixes_and_breaks(r))
        out.print(table)
    stale = [p.id for p, r in rows if r is None]
    if stale:
        err.print(f"no current record for: {', '.join(stale)} (run `ipvs-verify patches --update`)", highlight=False)
        raise typer.Exit(1)


@app.command()
def load(
    config: Annotated[Path, typer.Argument(help="a load simulation YAML file (see loads/)")],
    sweep: Annotated[list[str] | None, typer.Option("--sweep", help="KEY=V1,V2,...: run every value (rate, workers, "
                                                    "hold, port_range, replicas, conn_reuse_mode, variant, patch); "
                                                    "the first is the plots' x axis, the rest their lines")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="where a sweep writes its CSV, JSON and plots")] = Path(
        "load-results"),
    jobs: Annotated[int, typer.Option("-j", "--jobs", help="sweep: worker processes (0: all cores)")] = 0,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="no progress bar on stderr")] = False,
) -> None:
    """Simulate one node under load, stepped by the model (docs/load.md): connections, failures, delays, per pod.

    Exit 0: the run (or sweep) finished; 2: bad input (the file, an option); 130: interrupted.
    """
    from ipvs_verify.load.command import load_command

    raise typer.Exit(load_command(config, sweep or [], as_json, out_dir, jobs, quiet, out, err))


@app.command()
def properties() -> None:
    """List the properties with what they mean."""
    for p in PROPERTIES:
        out.print(f"[bold]{p.number}. {p.name}[/] ({p.kind}; {p.stands_for})")
        out.print(f"   {p.meaning}")
        out.print("   sometimes: " + "; ".join(r.name for r in p.sometimes))


EXIT_CODES = {
    0: "as expected: every verdict as the manifest pins it, every expectation met, the replay reproduces its file",
    1: "a result differs: a verdict moved, an expectation failed, a replay differs, engines disagree",
    2: "bad input: a malformed file or option (one line names the file, the place and what was expected)",
    3: "the environment lacks something the command needs (no kernel to boot, no compiler)",
    130: "interrupted (Ctrl-C)",
}


@app.callback(epilog="Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="show the traceback of an error (may be given anywhere "
                                        "on the command line)")] = False,
) -> None:
    """Verify IPVS + kube-proxy connection reuse."""


def main(argv: list[str] | None = None) -> None:
    """The entry point: runs the command and exits with its documented code (EXIT_CODES)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        code = app(args=args, prog_name="ipvs-verify", standalone_mode=False)
    except (UserError, UnknownKernel, UnknownKubeProxy, UnknownScheduler, PatchError) as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)  # one plain line: never wrapped
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.TyperException as e:  # a usage error: unknown option, a value of the wrong type or range
        if debug:
            raise
        fmt = getattr(e, "format_message", None)
        message = fmt() if fmt else str(e)
        if message:  # empty when the command alone printed its help
            print(f"error: {message}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2) or 2)
    # standalone_mode=False hands back the code of a typer.Exit the command raised (130 for Ctrl-C)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # python -m ipvs_verify.cli
    main()
