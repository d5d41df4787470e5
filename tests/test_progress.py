"""Progress outside a terminal: plain `progress:` lines on stderr naming the cell, the phase (each search,
and the liveness pass over its graph), states, cap, depth and rate, then one line when the cell is done."""

from __future__ import annotations

import io

from rich.console import Console

from ipvs_verify.model.config import Scope
from ipvs_verify.properties.catalog import PROPERTIES
from ipvs_verify.runner.matrix import CellSpec
from ipvs_verify.runner.progress import MatrixProgress
from ipvs_verify.runner.verdicts import check_config

SCOPE = Scope(changes=1)
CAP = 300_000


def _lines(quiet: bool = False) -> list[str]:
    spec = CellSpec("K46", "1.30", (("conn_reuse_mode", 0),), "tcp", 0, "rr")
    stream = io.StringIO()
    console = Console(file=io.StringIO(), force_terminal=False)  # a CI log: no live display
    with MatrixProgress([spec.slug], CAP, console, stream, quiet=quiet, every=0.0) as view:
        result = check_config(spec.config(SCOPE), PROPERTIES, CAP,
                              lambda *a: view.update(0, *a))
        view.done(0, f"{len(result.verdicts)} verdicts")
    return stream.getvalue().splitlines()


def test_every_phase_reports_outside_a_terminal() -> None:
    lines = _lines()
    assert lines and all(line.startswith("progress: ") for line in lines)
    phases = {line.split(" ")[2].rstrip(":") for line in lines[:-1]}
    assert {"event", "untimed", "lasso"} <= phases, phases
    search = next(line for line in lines if " event: " in line)
    assert "states (cap 300,000), depth " in search and "states/s" in search
    lasso = next(line for line in lines if " lasso " in line)
    assert "quiesced-dest-eventually-deleted" in lasso and "over " in lasso
    assert lines[-1].startswith("progress: [1/1] ") and lines[-1].endswith(" verdicts")


def test_quiet_reports_nothing() -> None:
    assert _lines(quiet=True) == []
