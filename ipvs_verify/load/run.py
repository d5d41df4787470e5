"""One simulated run, with a progress bar on stderr when it is long: what `load` and every point of a sweep run."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ipvs_verify.load.config import LoadSpec
from ipvs_verify.load.report import result
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
