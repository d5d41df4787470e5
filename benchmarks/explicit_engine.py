"""Benchmark the explicit engine: per cell states, transitions, depth, time, rate and peak memory.

    python benchmarks/explicit_engine.py [--out benchmarks/results/explicit.json] [--cells K46:0,K516:1]

Each cell runs in a fresh process (so peak memory is the cell's own); the whole default matrix is
also timed through the CLI's parallel runner.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
from pathlib import Path
from typing import Any

from ipvs_verify.check import check_config
from ipvs_verify.matrix import DEFAULT_SCOPE, EVENT_STATE_CAP, CellSpec, default_cells, run_matrix
from properties.catalog import PROPERTIES


def _cell(spec: CellSpec) -> dict[str, Any]:
    t0 = time.perf_counter()
    res = check_config(spec.config(DEFAULT_SCOPE), PROPERTIES, EVENT_STATE_CAP)
    return {
        "cell": spec.slug,
        "seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "searches": [
            {"timing": s.timing, "states": s.states, "transitions": s.transitions, "depth": s.depth,
             "seconds": round(s.seconds, 3), "states_per_second": round(s.rate), "complete": s.complete}
            for s in res.searches
        ],
        "verdicts": {v.prop.name: v.status for v in res.verdicts},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/explicit.json"))
    ap.add_argument("--cells", default="", help="variant:mode,... (default: the whole default matrix)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    cells = default_cells()
    if args.cells:
        cells = [CellSpec(v, "1.30", (("conn_reuse_mode", int(m)),))
                 for v, m in (c.split(":") for c in args.cells.split(","))]
    ctx = mp.get_context("fork")
    per_cell = []
    for spec in cells:  # one process per cell, one at a time: clean single-core rates and peak memory
        with ctx.Pool(1) as pool:
            per_cell.append(pool.apply(_cell, (spec,)))
    t0 = time.perf_counter()
    run_matrix(cells, DEFAULT_SCOPE, PROPERTIES, args.jobs)
    wall = time.perf_counter() - t0
    states = sum(s["states"] for c in per_cell for s in c["searches"])
    secs = sum(s["seconds"] for c in per_cell for s in c["searches"])
    result = {
        "benchmark": "explicit-engine", "scope": DEFAULT_SCOPE.describe(), "event_state_cap": EVENT_STATE_CAP,
        "python": platform.python_version(), "machine": platform.machine(), "cpus": mp.cpu_count(),
        "matrix_wall_seconds": round(wall, 2), "matrix_jobs": args.jobs,
        "single_core_states_per_second": round(states / secs) if secs else 0,
        "cells": per_cell,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(cells)} cells; matrix {wall:.1f} s on {args.jobs} workers; "
          f"{result['single_core_states_per_second']:,} states/s on one core; wrote {args.out}")


if __name__ == "__main__":
    main()
