"""`ipvs-verify matrix --engine bmc|induction|all`: the verdict matrix from the Z3 engines.

* bmc: event-driven timing, depth 1..--depth; a violation is a real run (written as a trace with engine
  "bmc", minimised, replayed); otherwise "bounded <= k" (or "vacuous <= k"), never "holds".
* induction: the untimed over-approximation; "proved" (every depth, every timing), "violated" (base
  case), or "cti" (the counterexample to induction is printed): never a pass when it fails.
* all: explicit, bmc and induction on every cell; prints where they disagree and exits 1 if they do.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ipvs_verify.engines.bmc import BmcRun, run_bmc_growing
from ipvs_verify.engines.induction import InductionRun, run_induction
from ipvs_verify.errors import UserError
from ipvs_verify.model.config import Scope
from ipvs_verify.model.system import System
from ipvs_verify.presentation.minimise import minimise
from ipvs_verify.presentation.trace import build_trace, config_to_json
from ipvs_verify.properties.catalog import BY_NAME, Property
from ipvs_verify.runner.matrix import CellSpec, cell_key, explicit_cell, property_refs, run_matrix, save_counterexamples
from ipvs_verify.runner.report import CellReport, Engine, MatrixReport, VerdictReport, bmc_verdict, induction_verdict

ENGINES = ("explicit", "bmc", "induction", "all")


def _bmc_cell(run: BmcRun, traces: dict[str, Path]) -> dict[str, VerdictReport]:
    return {r.prop_name: bmc_verdict(r.status, r.depth, r.detail, len(r.actions) or None,
                                     str(traces[r.prop_name]) if r.prop_name in traces else None)
            for r in run.results}


def _ind_cell(run: InductionRun) -> dict[str, VerdictReport]:
    return {p.prop_name: induction_verdict(p.status, p.k, p.detail) for p in run.proofs}


def _write_bmc_traces(spec: CellSpec, run: BmcRun, out: Path) -> dict[str, Path]:
    paths = {}
    for r in run.results:
        if r.status != "violated":
            continue
        prop = BY_NAME[r.prop_name]
        actions = minimise(System(run.config, "exact"), prop, r.actions)
        trace = build_trace(run.config, actions, prop, "bmc", "event")
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{cell_key(spec, run.config.scope)}--{prop.name}.json"
        path.write_text(trace.to_json())
        paths[prop.name] = path
    return paths


def engine_matrix(cells: list[CellSpec], scope: Scope, props: tuple[Property, ...], engine: str, depth: int,
                  as_json: bool, out_dir: Path, jobs: int, max_states: int, console: Console,
                  quiet: bool = False) -> int:
    """Run the chosen engine(s) on every cell, in the one result format (ipvs_verify/runner/report.py); returns the exit
    code (1 if engines disagree)."""
    if engine not in ENGINES:
        raise UserError(f"--engine: expected one of {', '.join(ENGINES)}, got '{engine}'")
    if depth < 1:
        raise UserError(f"--depth: expected a positive integer, got {depth}")
    t0 = time.perf_counter()
    rows: list[CellReport] = []
    explicit = run_matrix(cells, scope, props, jobs, max_states) if engine == "all" else None
    if explicit is not None:
        paths = save_counterexamples(cells, explicit, out_dir)
    disagreements: list[str] = []
    for i, spec in enumerate(cells):
        config = spec.config(scope)
        if explicit is not None:
            row = explicit_cell(spec, explicit[i], {name: p for (ci, name), p in paths.items() if ci == i})
        else:
            row = CellReport(cell=cell_key(spec, config.scope), config=config_to_json(config), verdicts={})
        if engine in ("bmc", "all"):
            run = run_bmc_growing(config, props, depth)
            row.verdicts["bmc"] = _bmc_cell(run, _write_bmc_traces(spec, run, out_dir / "bmc"))
            row.seconds["bmc"] = round(run.seconds, 3)
            _progress(quiet, i, len(cells), row.cell, f"bmc to depth {depth}", run.seconds, row.verdicts["bmc"])
        if engine in ("induction", "all"):
            ind = run_induction(config, props)
            row.verdicts["induction"] = _ind_cell(ind)
            row.seconds["induction"] = round(ind.seconds, 3)
            row.lemmas = ind.lemmas
            row_cti[row.cell] = {p.prop_name: p.cti for p in ind.proofs if p.status == "cti"}
            _progress(quiet, i, len(cells), row.cell, "induction", ind.seconds, row.verdicts["induction"])
        if explicit is not None:
            disagreements += _compare(row.cell, row.verdicts)
        rows.append(row)
    seconds = time.perf_counter() - t0
    engines: list[Engine] = [e for e in ("explicit", "bmc", "induction") if engine in (e, "all")]  # type: ignore
    report = MatrixReport(engines=engines, scope=scope.describe(), depth=depth if "bmc" in engines else None,
                          properties=property_refs(), cells=rows, disagreements=disagreements,
                          seconds=round(seconds, 3))
    if as_json:
        print(report.to_json())
    else:
        _print(report, props, depth, scope, console)
        for d in disagreements:
            console.print(f"[bold red]DISAGREEMENT[/] {d}", highlight=False)
        console.print(f"{len(cells)} cells in {seconds:.1f} s; engines disagree on {len(disagreements)} verdict(s)"
                      if engine == "all" else f"{len(cells)} cells in {seconds:.1f} s")
    return 1 if disagreements else 0


def _progress(quiet: bool, i: int, n: int, cell: str, what: str, seconds: float,
              verdicts: Mapping[str, VerdictReport]) -> None:
    """One plain line on stderr per cell and engine, in a terminal and in a CI log alike."""
    if quiet:
        return
    counts: dict[str, int] = {}
    for v in verdicts.values():
        counts[v.status] = counts.get(v.status, 0) + 1
    summary = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
    print(f"progress: [{i + 1}/{n}] {cell} {what} done in {seconds:.1f} s: {summary}", file=sys.stderr, flush=True)


row_cti: dict[str, dict[str, list[dict[str, Any]]]] = {}  # cell -> property -> induction's counterexample to it


def _compare(cell: str, verdicts: Mapping[Any, Mapping[str, VerdictReport]]) -> list[str]:
    """Where the engines' verdicts on one cell contradict each other (the shared vocabulary: report.py)."""
    out = []
    for name, e in verdicts["explicit"].items():
        b = verdicts.get("bmc", {}).get(name)
        ind = verdicts.get("induction", {}).get(name)
        if b and e.status == "violated" and e.timing == "event" and e.steps is not None and b.depth is not None:
            if b.status == "violated" and b.depth != e.steps:
                out.append(f"{cell} {name}: explicit shortest {e.steps} steps, bmc {b.depth}")
            if b.status == "bounded" and e.steps <= b.depth:
                out.append(f"{cell} {name}: explicit violated in {e.steps} steps, bmc none to depth {b.depth}")
        if b and b.status == "violated" and e.status in ("holds", "vacuous"):
            out.append(f"{cell} {name}: bmc violated at depth {b.depth}, explicit {e.status}")
        if ind and ind.status == "holds" and e.status in ("violated", "undecided"):
            out.append(f"{cell} {name}: induction proved it, explicit {e.status}")
        if ind and ind.status == "violated" and e.status == "holds":
            out.append(f"{cell} {name}: untimed base case violated, explicit holds")
    return out


def _print(report: MatrixReport, props: tuple[Property, ...], depth: int, scope: Scope, console: Console) -> None:
    table = Table(title=f"Verdicts by engine ({scope.describe()}; bmc depth {depth})")
    table.add_column("cell")
    table.add_column("engine")
    for p in props:
        table.add_column(str(p.number), justify="center")
    for row in report.cells:
        for e in report.engines:
            cells = row.verdicts.get(e, {})
            table.add_row(row.cell, e, *[cells[p.name].text if p.name in cells else "-" for p in props])
    console.print(table)
    for row in report.cells:
        for name, v in row.verdicts.get("induction", {}).items():
            if v.text.startswith("cti"):
                console.print(f"{row.cell} {name}: {v.detail}", highlight=False)
                for n, step in enumerate(row_cti.get(row.cell, {}).get(name, [])):
                    console.print(f"  s{n}: {step['state']}" + (f"  --{step['action']}-->" if "action" in step
                                                                 else ""), highlight=False)
        for v in row.verdicts.get("bmc", {}).values():
            if v.counterexample:
                console.print(f"{row.cell}: bmc counterexample {v.counterexample}", highlight=False)
