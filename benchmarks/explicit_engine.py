"""Benchmark the explicit engine: per cell states, transitions, depth, time, rate and peak memory.

    python benchmarks/explicit_engine.py [--out benchmarks/results/explicit.json] [--cells K46:0,K516:1]
                                         [--search packed|packed-python|plain] [--repeat 3] [--no-matrix]
                                         [--no-large]

Each cell runs in a fresh process (so peak memory is the cell's own), `--repeat` times: the same work every
time, and on a shared machine noise only ever adds time (this one's speed drifts by up to 30% between runs),
so each search's fastest run is kept. The whole default matrix is also timed through the CLI's parallel
runner. `--search plain` runs the reference search (one System.step per transition) instead of the packed
one, and `--search packed-python` the packed search with its loop in Python rather than compiled, for
comparison. Each search records which loop ran it ("compiled" or "python").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ipvs_verify.engines.explicit import SEARCHES, freeze_before_fork
from ipvs_verify.model.config import make_config
from ipvs_verify.model.system import System
from ipvs_verify.properties.catalog import PROPERTIES
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, EVENT_STATE_CAP, CellSpec, default_cells, run_matrix
from ipvs_verify.runner.verdicts import check_config


def _cell(spec: CellSpec, search: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    res = check_config(spec.config(DEFAULT_SCOPE), PROPERTIES, EVENT_STATE_CAP, search=SEARCHES[search])
    return {
        "cell": spec.slug,
        "seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "searches": [
            {"timing": s.timing, "states": s.states, "transitions": s.transitions, "depth": s.depth,
             "seconds": round(s.seconds, 3), "states_per_second": round(s.rate), "complete": s.complete,
             "loop": s.loop}
            for s in res.searches
        ],
        "verdicts": {v.prop.name: v.status for v in res.verdicts},
    }


# a larger scope: two ports per client, where a skeleton stands for more states
LARGE = ("K46", 0, 2, 1_500_000)  # variant, conn_reuse_mode, ports, state cap


def _large(search: str) -> dict[str, Any]:
    variant, mode, ports, cap = LARGE
    cfg = make_config(variant, "1.30", {"conn_reuse_mode": mode}, replace(DEFAULT_SCOPE, ports=ports))
    t0 = time.perf_counter()
    ex = SEARCHES[search](System(cfg, "event"), PROPERTIES, cap)
    secs = time.perf_counter() - t0
    return {"cell": f"{variant}-kp1.30-mode{mode}", "scope": replace(DEFAULT_SCOPE, ports=ports).describe(),
            "timing": "event", "states": ex.n_states, "transitions": ex.n_edges, "complete": ex.complete,
            "seconds": round(secs, 3), "states_per_second": round(ex.n_states / secs), "loop": ex.loop,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/explicit.json"))
    ap.add_argument("--cells", default="", help="variant:mode,... (default: the whole default matrix)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--search", choices=sorted(SEARCHES), default="packed")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell, in fresh processes; the fastest counts")
    ap.add_argument("--no-matrix", action="store_true", help="skip timing the whole matrix")
    ap.add_argument("--no-large", action="store_true", help="skip the larger-scope search (2 ports, 1.5M states)")
    args = ap.parse_args()
    cells = default_cells()
    if args.cells:
        cells = [CellSpec(v, "1.30", (("conn_reuse_mode", int(m)),))
                 for v, m in (c.split(":") for c in args.cells.split(","))]
    ctx = mp.get_context("fork")
    per_cell = []
    for spec in cells:  # one process per run, one at a time: clean single-core rates and peak memory
        runs = []
        for _ in range(max(1, args.repeat)):
            freeze_before_fork()  # as the matrix's runner does
            with ctx.Pool(1) as pool:
                runs.append(pool.apply(_cell, (spec, args.search)))
        if any(r["verdicts"] != runs[0]["verdicts"] or [s["states"] for s in r["searches"]]
               != [s["states"] for s in runs[0]["searches"]] for r in runs):
            raise SystemExit(f"{spec.slug}: runs differ (the search is not deterministic)")
        best = min(runs, key=lambda r: r["seconds"])
        best["runs_seconds"] = [r["seconds"] for r in runs]
        best["searches"] = [min(same, key=lambda s: s["seconds"])
                            for same in zip(*(r["searches"] for r in runs), strict=True)]
        per_cell.append(best)
    large = None
    if not args.no_large:
        freeze_before_fork()
        with ctx.Pool(1) as pool:
            large = pool.apply(_large, (args.search,))
    wall = None
    if not args.no_matrix:
        t0 = time.perf_counter()
        run_matrix(cells, DEFAULT_SCOPE, PROPERTIES, args.jobs)
        wall = round(time.perf_counter() - t0, 2)

    def rate(timing: str | None) -> int:
        searches = [s for c in per_cell for s in c["searches"] if timing is None or s["timing"] == timing]
        secs = sum(s["seconds"] for s in searches)
        return round(sum(s["states"] for s in searches) / secs) if secs else 0

    result = {
        "benchmark": "explicit-engine", "search": args.search, "scope": DEFAULT_SCOPE.describe(),
        "event_state_cap": EVENT_STATE_CAP, "python": platform.python_version(), "machine": platform.machine(),
        "cpus": mp.cpu_count(), "repeat": args.repeat, "matrix_wall_seconds": wall, "matrix_jobs": args.jobs,
        "single_core_states_per_second": rate(None),
        "event_search_states_per_second": rate("event"), "untimed_search_states_per_second": rate("untimed"),
        "cells": per_cell, "larger_scope": large,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    matrix = f"matrix {wall:.1f} s on {args.jobs} workers; " if wall is not None else ""
    if large is not None:
        print(f"larger scope ({large['scope']}): {large['states']:,} states at {large['states_per_second']:,} "
              f"states/s, peak {large['peak_rss_mib']} MiB")
    print(f"{len(cells)} cells, {args.search} search; {matrix}{result['single_core_states_per_second']:,} states/s "
          f"on one core (event search {result['event_search_states_per_second']:,}, untimed "
          f"{result['untimed_search_states_per_second']:,}); wrote {args.out}")


if __name__ == "__main__":
    main()
