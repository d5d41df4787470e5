"""Benchmark of the Z3 engines (issue 4); writes benchmarks/results/z3_engine.json.

    python benchmarks/z3_engine.py [--quick]

1. the known bugs, found by BMC at the default scope (time to the violation, depth, time per depth);
2. assumption literals vs push/pop, and bit-vectors vs integers, on the same BMC runs;
3. the induction proofs of the fixed variants (Houdini strengthening + k-induction);
4. a larger scope (2 ports per client), BMC against the explicit event-driven search.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import z3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipvs_verify.engines.bmc import run_bmc  # noqa: E402
from ipvs_verify.engines.explicit import explore  # noqa: E402
from ipvs_verify.engines.induction import run_induction  # noqa: E402
from ipvs_verify.model.system import System  # noqa: E402
from ipvs_verify.properties.catalog import PROPERTIES  # noqa: E402
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, CellSpec  # noqa: E402

BUGS = [("K46", 0, 1), ("K46", 1, 3), ("K41", 1, 8), ("K59", 0, 1)]
PROOFS = [("K516", 0, 1), ("K46UW", 0, 1), ("K46U", 1, 1), ("K46U", 1, 3), ("K59", 1, 1), ("K59", 1, 3),
          ("K516", 1, 1), ("K516", 1, 3)]


def prop(n: int) -> Any:
    return next(p for p in PROPERTIES if p.number == n)


def cfg(v: str, m: int, scope: Any = DEFAULT_SCOPE) -> Any:
    return CellSpec(v, "1.30", (("conn_reuse_mode", m),)).config(scope)


def bmc_row(v: str, m: int, props: tuple[Any, ...], depth: int, **kw: Any) -> dict[str, Any]:
    run = run_bmc(cfg(v, m, kw.pop("scope", DEFAULT_SCOPE)), props, depth, **kw)
    stats = {k: v for k, v in sorted(run.statistics.items()) if isinstance(v, int | float)}
    return {
        "cell": f"{v}-mode{m}", "properties": [p.number for p in props], "max_depth": depth,
        "results": [{"property": r.prop_name, "status": r.status, "depth": r.depth,
                     "seconds_to_verdict": round(r.seconds, 3)} for r in run.results],
        "seconds": round(run.seconds, 3), "build_seconds": round(run.build_seconds, 3),
        "per_depth": run.per_depth, "settings": run.settings, "solver_statistics": stats,
    }


def main() -> None:
    quick = "--quick" in sys.argv
    out: dict[str, Any] = {
        "benchmark": "z3_engine", "z3": z3.get_version_string(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(), "scope": DEFAULT_SCOPE.describe(),
    }
    t0 = time.perf_counter()
    out["known_bugs"] = [bmc_row(v, m, (prop(n),), 10) for v, m, n in BUGS]
    print("known bugs:", [(r["cell"], r["results"][0]["depth"], r["results"][0]["seconds_to_verdict"])
                          for r in out["known_bugs"]], flush=True)
    safety = tuple(p for p in PROPERTIES if p.kind == "safety" and p.number in (1, 2, 3, 4, 7, 8, 9))
    cmp_depth = 6 if quick else 7
    comparisons = []
    summary = []
    for v, m in (("K46", 0), ("K516", 1), ("K41", 1)):
        for arith in ("bv", "int"):
            for inc in ("assume", "push"):
                reps = 3 if arith == "bv" else 1  # Int is ~10x slower: one run is enough to see it
                runs = [bmc_row(v, m, safety, cmp_depth, arith=arith, incremental=inc) for _ in range(reps)]
                secs = sorted(r["seconds"] for r in runs)
                comparisons.append(runs[0])
                summary.append({"cell": f"{v}-mode{m}", "arith": arith, "incremental": inc, "depth": cmp_depth,
                                "seconds_each": secs, "median_seconds": secs[len(secs) // 2]})
                print("compare", v, m, arith, inc, secs, flush=True)
    out["settings_comparison"] = comparisons
    out["settings_summary"] = summary
    proofs = []
    for v, m, n in PROOFS[:2] if quick else PROOFS:
        run = run_induction(cfg(v, m), (prop(n),))
        p = run.proofs[0]
        proofs.append({"cell": f"{v}-mode{m}", "property": p.prop_name, "status": p.status, "k": p.k,
                       "seconds": round(run.seconds, 3), "houdini_seconds": round(run.houdini_seconds, 3),
                       "lemmas_kept": len(run.lemmas), "lemmas_dropped": run.dropped, "settings": run.settings})
        print("proof", v, m, n, p.status, round(run.seconds, 2), flush=True)
    out["induction"] = proofs
    big = replace(DEFAULT_SCOPE, ports=2)  # 2 flows: 2 ports of one client
    t = time.perf_counter()
    ex = explore(System(cfg("K46", 0, big), "event"), (prop(1),), 400_000, keep_edges=False)
    found = ex.violations.get(prop(1).name)
    out["larger_scope"] = {
        "scope": big.describe(),
        "explicit_event": {"states": ex.n_states, "complete": ex.complete, "depth": ex.max_depth,
                           "violation_depth": ex.depth[found.src] + 1 if found else None,
                           "seconds": round(time.perf_counter() - t, 3)},
        "bmc": bmc_row("K46", 0, (prop(1),), 8, scope=big),
    }
    print("larger scope:", out["larger_scope"]["explicit_event"], out["larger_scope"]["bmc"]["seconds"], flush=True)
    two = replace(DEFAULT_SCOPE, clients=2)
    t = time.perf_counter()
    run = run_induction(cfg("K516", 0, two), (prop(1),))
    out["larger_scope"]["induction_2_clients"] = {
        "scope": two.describe(), "cell": "K516-mode0", "property": run.proofs[0].prop_name,
        "status": run.proofs[0].status, "lemmas_kept": len(run.lemmas), "seconds": round(time.perf_counter() - t, 3)}
    t = time.perf_counter()
    ex = explore(System(cfg("K516", 0, two), "untimed"), (prop(1),), 2_000_000, keep_edges=False)
    out["larger_scope"]["explicit_untimed_2_clients"] = {"states": ex.n_states, "complete": ex.complete,
                                                        "seconds": round(time.perf_counter() - t, 3)}
    three = replace(DEFAULT_SCOPE, clients=3)
    out["larger_scope"]["bmc_3_clients"] = bmc_row("K46", 0, (prop(1),), 8, scope=three)
    print("larger scope 2/3 clients:", out["larger_scope"]["induction_2_clients"],
          out["larger_scope"]["explicit_untimed_2_clients"], out["larger_scope"]["bmc_3_clients"]["seconds"],
          flush=True)
    out["total_seconds"] = round(time.perf_counter() - t0, 3)
    out["load_average_at_end"] = os.getloadavg()
    path = Path(__file__).resolve().parent / "results" / "z3_engine.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
