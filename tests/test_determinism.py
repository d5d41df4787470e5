"""The matrix gives the same verdicts and the same counterexample files whatever the number of workers."""

from __future__ import annotations

from pathlib import Path

from ipvs_verify.properties.catalog import PROPERTIES
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, CellSpec, run_matrix, save_counterexamples

# small UDP cells (a second each) with violations, so that there are files to compare
CELLS = [CellSpec("K46", "1.14.0", (("conn_reuse_mode", 0),), "udp"),
         CellSpec("K59", "1.30", (("conn_reuse_mode", 1),), "udp"),
         CellSpec("K516", "1.14.0", (("conn_reuse_mode", 1),), "udp")]


def _run(jobs: int, out: Path) -> tuple[list[list[tuple[str, str, list]]], dict[str, bytes]]:
    results = run_matrix(CELLS, DEFAULT_SCOPE, PROPERTIES, jobs)
    save_counterexamples(CELLS, results, out)
    verdicts = [[(v.prop_name, v.status, v.actions) for v in r.verdicts] for r in results]
    return verdicts, {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_same_verdicts_and_files_with_one_or_two_workers(tmp_path: Path) -> None:
    one = _run(1, tmp_path / "one")
    two = _run(2, tmp_path / "two")
    assert one[0] == two[0]
    assert one[1] and one[1] == two[1]
