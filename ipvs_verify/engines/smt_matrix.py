"""`ipvs-verify matrix --engine bmc|induction|all`: the verdict matrix from the Z3 engines.

* bmc: event-driven timing, depth 1..--depth; a violation is a real run (written as a trace with engine
  "bmc", minimised, replayed); otherwise "bounded <= k" (or "vacuous <= k"), never "holds".
* induction: the untimed over-approximation; "proved" (every depth, every timing), "violated" (base
  case), or "cti" (the counterexample to induction is printed): never a pass when it fails.
* all: explicit, bmc and induction on every cell; prints where they disagree and exits 1 if they do.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ipvs_verify.engines.bmc import BmcRun, run_bmc_growing
from ipvs_verify.engines.induction import InductionRun, run_induction
from ipvs_verify.errors import UserError
from ipvs_verify.matrix import CellSpec, run_matrix, scope_tag
from ipvs_verify.minimise import minimise
from ipvs_verify.model.config import Scope
from ipvs_verify.model.system import System
from ipvs_verify.properties.catalog import BY_NAME, Property
from ipvs_verify.trace import build_trace

ENGINES = ("explicit", "bmc", "induction", "all")


def _bmc_cell(run: BmcRun) -> dict[str, dict[str, Any]]:
    out = {}
    for r in run.results:
        text = {"violated": f"VIOLATED@{r.depth}", "bounded": f"bounded<={r.depth}",
                "vacuous": f"vacuous<={r.depth}"}.get(r.status, r.status)
        out[r.prop_name] = {"status": r.status, "depth": r.depth, "text": text, "detail": r.detail,
                            "steps": len(r.actions) or None}
    return out


def _ind_cell(run: InductionRun) -> dict[str, dict[str, Any]]:
    return {p.prop_name: {"status": p.status, "k": p.k, "text": p.status if p.status != "cti" else f"cti(k={p.k})",
                          "detail": p.detail, "cti": p.cti, "seconds": round(p.seconds, 3)} for p in run.proofs}


def _write_bmc_traces(spec: CellSpec, run: BmcRun, out: Path) -> list[Path]:
    paths = []
    for r in run.results:
        if r.status != "violated":
            continue
        prop = BY_NAME[r.prop_name]
        actions = minimise(System(run.config, "exact"), prop, r.actions)
        trace = build_trace(run.config, actions, prop, "bmc", "event")
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{spec.slug}{scope_tag(run.config.scope)}--{prop.name}.json"
        path.write_text(trace.to_json())
        paths.append(path)
    return paths


def engine_matrix(cells: list[CellSpec], scope: Scope, props: tuple[Property, ...], engine: str, depth: int,
                  as_json: bool, out_dir: Path, jobs: int, max_states: int, console: Console) -> int:
    """Run the chosen engine(s) on every cell; returns the exit code (1 if engines disagree)."""
    if engine not in ENGINES:
        raise UserError(f"--engine: expected one of {', '.join(ENGINES)}, got '{engine}'")
    if depth < 1:
        raise UserError(f"--depth: expected a positive integer, got {depth}")
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    explicit = run_matrix(cells, scope, props, jobs, max_states) if engine == "all" else None
    disagreements: list[str] = []
    for i, spec in enumerate(cells):
        config = spec.config(scope)
        row: dict[str, Any] = {"cell": spec.slug}
        if engine in ("bmc", "all"):
            run = run_bmc_growing(config, props, depth)
            row["bmc"] = _bmc_cell(run)
            row["bmc_seconds"] = round(run.seconds, 3)
            row["bmc_traces"] = [str(p) for p in _write_bmc_traces(spec, run, out_dir / "bmc")]
        if engine in ("induction", "all"):
            ind = run_induction(config, props)
            row["induction"] = _ind_cell(ind)
            row["induction_seconds"] = round(ind.seconds, 3)
            row["lemmas"] = ind.lemmas
        if explicit is not None:
            res = explicit[i]
            row["explicit"] = {v.prop_name: {"status": v.status, "text": v.status, "steps": len(v.actions) or None,
                                             "timing": v.timing} for v in res.verdicts}
            disagreements += _compare(spec.slug, row)
        rows.append(row)
    seconds = time.perf_counter() - t0
    if as_json:
        print(json.dumps({"format": "ipvs-verify-engines", "version": 1, "engine": engine, "depth": depth,
                          "scope": scope.describe(), "cells": rows, "disagreements": disagreements,
                          "seconds": round(seconds, 3)}, indent=1))
    else:
        _print(rows, props, engine, depth, scope, console)
        for d in disagreements:
            console.print(f"[bold red]DISAGREEMENT[/] {d}", highlight=False)
        console.print(f"{len(cells)} cells in {seconds:.1f} s; engines disagree on {len(disagreements)} verdict(s)"
                      if engine == "all" else f"{len(cells)} cells in {seconds:.1f} s")
    return 1 if disagreements else 0


def _compare(slug: str, row: dict[str, Any]) -> list[str]:
    out = []
    for name, e in row["explicit"].items():
        b = row.get("bmc", {}).get(name)
        ind = row.get("induction", {}).get(name)
        if b and e["status"] == "violated" and e.get("timing") == "event":
            if b["status"] == "violated" and b["depth"] != e["steps"]:
                out.append(f"{slug} {name}: explicit shortest {e['steps']} steps, bmc {b['depth']}")
            if b["status"] in ("bounded", "vacuous") and e["steps"] <= b["depth"]:
                out.append(f"{slug} {name}: explicit violated in {e['steps']} steps, bmc none to depth {b['depth']}")
        if b and b["status"] == "violated" and e["status"] in ("holds", "vacuous"):
            out.append(f"{slug} {name}: bmc violated at depth {b['depth']}, explicit {e['status']}")
        if ind and ind["status"] == "proved" and e["status"] in ("violated", "undecided"):
            out.append(f"{slug} {name}: induction proved it, explicit {e['status']}")
        if ind and ind["status"] == "violated" and e["status"] == "holds":
            out.append(f"{slug} {name}: untimed base case violated, explicit holds")
    return out


def _print(rows: list[dict[str, Any]], props: tuple[Property, ...], engine: str, depth: int, scope: Scope,
           console: Console) -> None:
    engines = [e for e in ("explicit", "bmc", "induction") if engine in (e, "all")]
    table = Table(title=f"Verdicts by engine ({scope.describe()}; bmc depth {depth})")
    table.add_column("cell")
    table.add_column("engine")
    for p in props:
        table.add_column(str(p.number), justify="center")
    for row in rows:
        for e in engines:
            cells = row.get(e, {})
            table.add_row(row["cell"], e, *[cells.get(p.name, {}).get("text", "-") for p in props])
    console.print(table)
    for row in rows:
        for name, v in row.get("induction", {}).items():
            if v["status"] == "cti":
                console.print(f"{row['cell']} {name}: {v['detail']}", highlight=False)
                for n, step in enumerate(v["cti"]):
                    console.print(f"  s{n}: {step['state']}" + (f"  --{step['action']}-->" if "action" in step
                                                                 else ""), highlight=False)
        for path in row.get("bmc_traces", []):
            console.print(f"{row['cell']}: bmc counterexample {path}", highlight=False)
