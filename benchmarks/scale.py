"""Benchmark the matrix at larger scopes (issue 17): per scope and cell, the verdicts, each search's states,
seconds, states/s, and the cell's seconds and peak memory, with the event-driven search settled by the untimed
one (the default) and run on to its cap (`settle=False`: what the matrix did before).

    python benchmarks/scale.py [--out benchmarks/results/scale.json] [--scopes 1x1,2x1,1x2]
                               [--cells K46:0,K46:1,K516:0,K516:1] [--cap 3000000] [--no-unsettled]

Each cell runs in a fresh process, one at a time (clean single-core times, its own peak memory), once: the
searches are deterministic (the same states every run), and noise only ever adds time. Scopes are CLIENTSxPORTS.
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

from ipvs_verify.engines.explicit import freeze_before_fork
from ipvs_verify.properties.catalog import PROPERTIES
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, CellSpec
from ipvs_verify.runner.verdicts import check_config


def _cell(spec: CellSpec, clients: int, ports: int, cap: int, settle: bool) -> dict[str, Any]:
    scope = replace(DEFAULT_SCOPE, clients=clients, ports=ports)
    t0 = time.perf_counter()
    res = check_config(spec.config(scope), PROPERTIES, cap, settle=settle)
    return {
        "cell": spec.slug, "clients": clients, "ports": ports, "settled": settle,
        "seconds": round(time.perf_counter() - t0, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "searches": [{"timing": s.timing, "states": s.states, "transitions": s.transitions,
                      "seconds": round(s.seconds, 2), "states_per_second": round(s.rate), "complete": s.complete,
                      "bound": s.bound} for s in res.searches],
        "verdicts": {v.prop.name: v.status for v in res.verdicts},
        "decided": all(v.status != "bounded" for v in res.verdicts),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/scale.json"))
    ap.add_argument("--scopes", default="1x1,2x1,1x2", help="CLIENTSxPORTS,...")
    ap.add_argument("--cells", default="K46:0,K46:1,K516:0,K516:1", help="variant:mode,...")
    ap.add_argument("--cap", type=int, default=3_000_000, help="state cap of each search")
    ap.add_argument("--no-unsettled", action="store_true", help="skip the runs with the event search to its cap")
    args = ap.parse_args()
    scopes = [tuple(int(x) for x in s.split("x")) for s in args.scopes.split(",")]
    cells = [CellSpec(v, "1.30", (("conn_reuse_mode", int(m)),)) for v, m in (c.split(":") for c in
                                                                               args.cells.split(","))]
    ctx = mp.get_context("fork")
    runs = []
    for clients, ports in scopes:
        for spec in cells:
            for settle in (True,) if args.no_unsettled else (True, False):
                freeze_before_fork()
                with ctx.Pool(1) as pool:
                    r = pool.apply(_cell, (spec, clients, ports, args.cap, settle))
                runs.append(r)
                print(f"{clients}x{ports} {r['cell']} {'settled' if settle else 'to the cap'}: {r['seconds']} s, "
                      f"{r['peak_rss_mib']} MiB, " + ", ".join(f"{s['timing']} {s['states']:,}"
                                                             for s in r["searches"])
                      + ("" if r["decided"] else " (bounded)"), flush=True)
    for r in runs:  # settling changes no verdict
        twin = next((o for o in runs if o is not r and o["cell"] == r["cell"] and o["clients"] == r["clients"]
                     and o["ports"] == r["ports"]), None)
        if twin is not None and twin["verdicts"] != r["verdicts"] and r["decided"] and twin["decided"]:
            raise SystemExit(f"{r['cell']} at {r['clients']}x{r['ports']}: settling moved a verdict")
    result = {"benchmark": "scale", "cap": args.cap, "python": platform.python_version(),
              "machine": platform.machine(), "cpus": mp.cpu_count(), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
