"""Benchmark the Hypothesis engine: rule steps per second, and the time to find each known bug.

    python benchmarks/hypothesis_engine.py [--out benchmarks/results/hypothesis.json] [--seeds 5]

At the CI profile's budget (ipvs_verify.engines.stateful.CI), for each known bug and each seed 0..N-1: the
wall time until the first violating run, the example it came in, and the time with Hypothesis' shrinking
and the minimiser included; the medians over the seeds. Steps per second come from watch-only runs (no
property fails them) on a few cells, next to the model's own step rate without Hypothesis.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

from ipvs_verify.engines.stateful import CI, quiet, search
from ipvs_verify.model.system import System
from ipvs_verify.properties.catalog import PROPERTIES
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, CellSpec

KNOWN_BUGS = (  # (name, variant, conn_reuse_mode, property number)
    ("kubernetes-81775", "K46", 0, 1),
    ("kubernetes-70747", "K46", 1, 3),
    ("T14-conntrack-killed", "K41", 1, 8),
    ("K59-mode0-81775", "K59", 0, 1),
)
RATE_CELLS = (("K46", 0), ("K59", 1), ("KT17", 1))
TARGET_SECONDS = 10.0


def _spec(variant: str, mode: int) -> CellSpec:
    return CellSpec(variant, "1.30", (("conn_reuse_mode", mode),))


def model_rate(variant: str, mode: int, steps: int = 20_000) -> float:
    """Model steps per second on a uniform random walk (no Hypothesis), for comparison."""
    sys = System(_spec(variant, mode).config(DEFAULT_SCOPE), "exact")
    rng = random.Random(0)
    st = sys.initial_states()[0]
    t0 = time.perf_counter()
    for n in range(steps):
        if n % 50 == 0:
            st = sys.initial_states()[0]
        st, _ = sys.step(st, rng.choice(sys.actions(st)))
    return steps / (time.perf_counter() - t0)


def find_bug(name: str, variant: str, mode: int, number: int, seed: int) -> dict[str, Any]:
    prop = next(p for p in PROPERTIES if p.number == number)
    t0 = time.perf_counter()
    r = search(_spec(variant, mode).config, (prop,), quiet(CI), seed, scope=DEFAULT_SCOPE)
    total = time.perf_counter() - t0
    cov = r.coverage
    return {
        "seed": seed, "found": r.found,
        "seconds_to_first_violation": round(cov.first_found_seconds, 3) if cov.first_found_seconds else None,
        "example_of_first_violation": cov.first_found_example,
        "seconds_with_shrink_and_minimise": round(total, 3),
        "examples": cov.examples, "steps": cov.steps,
        "shrunk_steps": len(r.violation.actions) if r.violation else None,
        "minimised_steps": len(r.minimised) if r.found else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/hypothesis.json"))
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    load = os.getloadavg()[0]  # other jobs on the machine slow every number here
    rates = []
    for variant, mode in RATE_CELLS:
        cov = search(_spec(variant, mode).config, (), quiet(CI), 0, scope=DEFAULT_SCOPE).coverage
        rates.append({
            "cell": _spec(variant, mode).slug, "examples": cov.examples, "steps": cov.steps,
            "seconds": round(cov.seconds, 3), "steps_per_second": round(cov.steps / cov.seconds),
            "model_steps_per_second_without_hypothesis": round(model_rate(variant, mode)),
        })
    bugs = []
    for name, variant, mode, number in KNOWN_BUGS:
        runs = [find_bug(name, variant, mode, number, seed) for seed in range(args.seeds)]
        found = [x for x in runs if x["found"]]
        first = [x["seconds_to_first_violation"] for x in found]
        full = [x["seconds_with_shrink_and_minimise"] for x in found]
        bugs.append({
            "bug": name, "cell": _spec(variant, mode).slug, "property": number,
            "found_in": f"{len(found)}/{len(runs)} seeds",
            "median_seconds_to_first_violation": round(statistics.median(first), 3) if first else None,
            "median_seconds_with_shrink_and_minimise": round(statistics.median(full), 3) if full else None,
            "median_minimised_steps": statistics.median(x["minimised_steps"] for x in found) if found else None,
            "under_target": bool(found) and len(found) == len(runs) and statistics.median(full) < TARGET_SECONDS,
            "runs": runs,
        })
    result = {
        "benchmark": "hypothesis-engine", "profile": "ci",
        "budget": {"max_examples": CI.max_examples, "stateful_step_count": CI.stateful_step_count},
        "scope": DEFAULT_SCOPE.describe(), "target_seconds": TARGET_SECONDS,
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "load_average_at_start": load, "load_average_at_end": os.getloadavg()[0],
        "steps_per_second": rates, "known_bugs": bugs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for rate in rates:
        print(f"{rate['cell']}: {rate['steps_per_second']:,} rule steps/s "
              f"(model alone {rate['model_steps_per_second_without_hypothesis']:,} steps/s)")
    for b in bugs:
        print(f"{b['bug']} ({b['cell']}, property {b['property']}): found in {b['found_in']}, median "
              f"{b['median_seconds_to_first_violation']} s to the first violation, "
              f"{b['median_seconds_with_shrink_and_minimise']} s with shrinking and minimising")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
