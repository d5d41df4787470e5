"""The `ipvs-verify` command line: matrix, check, replay, show.

Typer gives typed options and help; rich draws progress and tables. Bad input raises UserError (or a
model ValueError), printed as one line with exit code 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ipvs_verify.engines.explicit import SEARCHES
from ipvs_verify.engines.packed import PackingError
from ipvs_verify.errors import UserError
from ipvs_verify.matrix import (
    DEFAULT_KUBE_PROXY,
    DEFAULT_MODES,
    DEFAULT_SCOPE,
    EVENT_STATE_CAP,
    CellSpec,
    default_cells,
    markdown_table,
    matrix_json,
    run_matrix,
    save_counterexamples,
)
from ipvs_verify.story import story_lines
from ipvs_verify.trace import load_trace, replay_trace
from model.config import PROTOCOLS, Scope, UnknownScheduler
from model.kube_proxy import UnknownKubeProxy
from model.system import ACTION_NAMES, System
from model.variants import DEFAULT_MATRIX_VARIANTS, UnknownKernel
from properties.catalog import PROPERTIES, resolve

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Verify IPVS + kube-proxy connection reuse.")
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

SYMBOL = {"holds": "holds", "violated": "VIOLATED", "undecided": "undecided", "bounded": "bounded",
          "vacuous": "vacuous", "n/a": "n/a"}
STYLE = {"holds": "green", "violated": "bold red", "undecided": "yellow", "bounded": "yellow", "vacuous": "magenta",
         "n/a": "dim"}


def _split(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


@app.command()
def matrix(
    variants: Annotated[str, typer.Option(help="comma-separated kernel variants or versions")] = ",".join(
        DEFAULT_MATRIX_VARIANTS),
    modes: Annotated[str, typer.Option(help="conn_reuse_mode values")] = ",".join(map(str, DEFAULT_MODES)),
    kube_proxy: Annotated[str, typer.Option(help="kube-proxy releases")] = ",".join(DEFAULT_KUBE_PROXY),
    protocols: Annotated[str, typer.Option(help="service protocols: tcp, udp")] = "tcp",
    scheduler: Annotated[str, typer.Option(help="IPVS scheduler (kube-proxy --ipvs-scheduler): rr, lc, wlc, sh, "
                                           "sh-fallback")] = "rr",
    persistence: Annotated[int, typer.Option(
        help="sessionAffinity ClientIP: the persistent service's timeout in seconds (0: none)", min=0)] = 0,
    properties: Annotated[str, typer.Option(help="property names or numbers (default: all)")] = "",
    clients: Annotated[int, typer.Option(help="scope: client addresses", min=1, max=8)] = DEFAULT_SCOPE.clients,
    ports: Annotated[int, typer.Option(help="scope: ephemeral ports per client", min=1, max=8)] = DEFAULT_SCOPE.ports,
    pods: Annotated[str, typer.Option(help="scope: pods running at the start")] = ",".join(DEFAULT_SCOPE.pods),
    spare_pods: Annotated[str, typer.Option(help="scope: pods a scale-out may create")] = ",".join(
        DEFAULT_SCOPE.spare_pods),
    changes: Annotated[int, typer.Option(help="scope: pod deletions, creations and crashes per run", min=0)] = (
        DEFAULT_SCOPE.changes),
    crashes: Annotated[bool, typer.Option(help="scope: pods may die before kube-proxy knows")] = (
        DEFAULT_SCOPE.crashes),
    jobs: Annotated[int, typer.Option("-j", "--jobs", help="worker processes (0: all cores)")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="where counterexamples are written")] = Path(
        "counterexamples"),
    max_states: Annotated[int, typer.Option(help="state cap of the event-driven search")] = EVENT_STATE_CAP,
    as_json: Annotated[bool, typer.Option("--json", help="print the matrix as JSON")] = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="print the verdict table as Markdown")] = False,
    engine: Annotated[str, typer.Option(help="explicit | bmc | induction | all (all: report disagreements)")] = (
        "explicit"),
    depth: Annotated[int, typer.Option(help="bmc: the depth bound")] = 8,
    search: Annotated[str, typer.Option(help="explicit search: packed (fast: its loop compiled where the install "
                                        "built it), packed-python (its loop in Python), or plain (one "
                                        "System.step per transition, the reference the packed one is tested "
                                        "against)")] = "packed",
) -> None:
    """Check every property on every cell of the matrix and print the verdicts."""
    if search not in SEARCHES:
        raise UserError(f"--search: expected one of {', '.join(SEARCHES)}, got '{search}'")
    try:
        mode_values = tuple(int(m) for m in _split(modes))
    except ValueError:
        raise UserError(f"--modes: expected integers 0..3, got '{modes}'") from None
    for m in mode_values:
        if not 0 <= m <= 3:
            raise UserError(f"--modes: conn_reuse_mode must be 0..3, got {m}")
    props = _props(properties)
    protos = _split(protocols)
    bad = [p for p in protos if p not in PROTOCOLS]
    if bad or not protos:
        raise UserError(f"--protocols: expected a comma-separated list of {', '.join(PROTOCOLS)}, got '{protocols}'")
    cells = default_cells(_split(variants), mode_values, _split(kube_proxy), protos, persistence, scheduler)
    pod_names, spare_names = _split(pods), _split(spare_pods)
    if not pod_names or len(set(pod_names + spare_names)) != len(pod_names + spare_names):
        raise UserError(f"--pods/--spare-pods: expected distinct pod names, at least one running, got "
                        f"'{pods}' and '{spare_pods}'")
    scope = replace(DEFAULT_SCOPE, clients=clients, ports=ports, pods=pod_names, spare_pods=spare_names,
                    changes=changes, crashes=crashes)
    for c in cells:
        c.config(scope)  # validate names before starting workers
    if engine != "explicit":  # the Z3 engines (issue 4)
        from ipvs_verify.engines.smt_matrix import engine_matrix

        raise typer.Exit(engine_matrix(cells, scope, props, engine, depth, as_json, out_dir, jobs,
                                       max_states, out))
    t0 = time.perf_counter()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[stats]}"),
                        TimeElapsedColumn(), console=err, disable=as_json or as_markdown or not err.is_terminal)
    with progress:
        overall = progress.add_task("matrix", total=len(cells), stats="")
        tasks = {i: progress.add_task(f"  {c.slug}", total=None, stats="waiting", visible=False)
                 for i, c in enumerate(cells)}

        def on_progress(i: int, states: int, edges: int, depth: int, secs: float) -> None:
            rate = states / secs if secs else 0.0
            progress.update(tasks[i], visible=True,
                            stats=f"{states:,} states, depth {depth}, {rate:,.0f} states/s")

        def on_done(i: int, _r: Any) -> None:
            progress.update(tasks[i], visible=False)
            progress.advance(overall)

        try:
            results = run_matrix(cells, scope, props, jobs, max_states, on_progress, on_done, search)
        except PackingError as e:
            raise UserError(f"the packed search cannot represent this model ({e}); --search plain does not "
                            "need to") from None
    paths = save_counterexamples(cells, results, out_dir)
    data = matrix_json(cells, results, paths, scope)
    if as_json:
        print(json.dumps(data, indent=1))
        return
    if as_markdown:
        print(markdown_table(cells, results, props), end="")
        return
    _print_matrix(cells, results, props, paths, time.perf_counter() - t0, scope)


def _props(text: str) -> tuple[Any, ...]:
    try:
        return resolve(list(_split(text)) if text else None)
    except KeyError as e:
        raise UserError(f"--properties: {e.args[0]}") from None


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
    stats = Table(title="Searches (event-driven, then untimed where needed)")
    for col in ("cell", "timing", "states", "transitions", "depth", "complete", "seconds", "states/s", "loop"):
        stats.add_column(col, justify="right" if col not in ("cell", "timing", "loop") else "left")
    for spec, res in zip(cells, results, strict=True):
        for s in res.searches:
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
) -> None:
    """Tell a counterexample as a story: each step, its outcome, and what changed."""
    data = load_trace(trace)
    result = replay_trace(data, trace)
    if diagram:
        from ipvs_verify.diagram import sequence_diagram

        print(sequence_diagram(data), end="")
        return
    if as_pytest:
        from ipvs_verify.reproducer import pytest_reproducer

        try:
            print(pytest_reproducer(data), end="")
        except ValueError as e:
            raise UserError(f"{trace}: {e}") from None
        return
    if markdown:
        from ipvs_verify.story import story_markdown

        print(story_markdown(data), end="")
    else:
        for line in story_lines(data):
            out.print(line, highlight=False, markup=False)
    if result.prop is not None:
        verdict = "still violated" if result.violated else "NO LONGER violated by the model"
        out.print(f"replayed {len(data['steps'])} steps: {verdict}", highlight=False)


@app.command()
def replay(
    scenario: Annotated[Path, typer.Argument(help="a scenario YAML file")],
    variant: Annotated[str, typer.Option(help="kernel variant or version to run it on")] = "",
    all_variants: Annotated[bool, typer.Option("--all-variants", help="run it on every variant")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per step")] = False,
) -> None:
    """Replay an incident scenario step by step and print what happened at each step."""
    from ipvs_verify.scenario import load_scenario, print_run, run_scenario

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
def properties() -> None:
    """List the properties with what they mean."""
    for p in PROPERTIES:
        out.print(f"[bold]{p.number}. {p.name}[/] ({p.kind}; {p.stands_for})")
        out.print(f"   {p.meaning}")
        out.print("   sometimes: " + "; ".join(r.name for r in p.sometimes))


def main() -> None:
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        app(standalone_mode=False)
    except (UserError, UnknownKernel, UnknownKubeProxy, UnknownScheduler) as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)  # one plain line: never wrapped
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.TyperException as e:  # a usage error: unknown option, a value of the wrong type or range
        if debug:
            raise
        fmt = getattr(e, "format_message", None)
        message = fmt() if fmt else str(e)
        if message:  # empty when the command alone printed its help
            print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(2)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":  # python -m ipvs_verify.cli
    main()
