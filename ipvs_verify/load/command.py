"""`ipvs-verify load CONFIG [--sweep KEY=V1,V2 ...]`: one run (a table, or --json), or a sweep (CSV, JSON, plots)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ipvs_verify.load.config import LoadSpec, load_spec
from ipvs_verify.load.report import print_result, result
from ipvs_verify.load.sim import Simulation

LONG_RUN = 500_000  # connections a run is expected to attempt above which it shows a progress bar


def expected_attempts(spec: LoadSpec) -> float:
    """A rough size of the run, for the progress bar's decision only."""
    shape = spec.load
    if shape.mode == "open":
        return shape.rate * spec.duration
    return shape.workers * spec.duration / max(shape.hold + shape.think, 0.001)


def run_one(spec: LoadSpec, err: Console | None = None, quiet: bool = True) -> dict[str, Any]:
    sim = Simulation(spec)
    if quiet or err is None or expected_attempts(spec) < LONG_RUN:
        sim.run()
    else:
        with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                      TimeRemainingColumn(), console=err, transient=True) as bar:
            task = bar.add_task("run", total=spec.duration)
            sim.run(lambda t: bar.update(task, completed=min(t, spec.duration)))
    return result(sim)


def load_command(config: Path, sweeps: list[str], as_json: bool, out_dir: Path, jobs: int, quiet: bool,
                 out: Console, err: Console) -> int:
    spec = load_spec(config)
    if sweeps:
        from ipvs_verify.load.sweep import parse_sweeps, run_sweep, write_sweep

        axes = parse_sweeps(spec, sweeps)
        rows = run_sweep(spec, axes, jobs, err, quiet)
        files = write_sweep(spec, axes, rows, out_dir)
        if as_json:
            print(json.dumps({"name": spec.name, "axes": [a.key for a in axes], "points": rows}, indent=2))
        else:
            from ipvs_verify.load.sweep import print_sweep

            print_sweep(axes, rows, out)
        for f in files:
            print(f"wrote {f}", file=sys.stderr)
        return 0
    r = run_one(spec, err, quiet)
    if as_json:
        print(json.dumps(r, indent=2))
    else:
        print_result(r, out)
    return 0
