"""Benchmark `check`: one patch on the whole default matrix against the matrix itself (issue 16).

    python benchmarks/check_patch.py [--out benchmarks/results/check_patch.json] [--patch kp81308] [-j 0]

Three runs through the CLI's own code, each in a fresh process: the default matrix; `check PATCH` on every
default variant with an empty baseline cache (base and patched cells both searched: the target is at most
twice the matrix); the same check again, every cell now read from the cache (each is cached by
content). The patch must apply to every default variant (a kube-proxy
patch does; a kernel commit conflicts with the variants that already have it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ipvs_verify.model.variants import DEFAULT_MATRIX_VARIANTS


def _timed(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "ipvs_verify.cli", *args], env=env, capture_output=True, text=True)
    return round(time.perf_counter() - t0, 2), r.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/check_patch.json"))
    ap.add_argument("--patch", default="kp81308")
    ap.add_argument("-j", "--jobs", type=int, default=0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, XDG_CACHE_HOME=tmp)
        jobs = ["-j", str(a.jobs), "-q"]
        matrix_s, matrix_rc = _timed(["matrix", "--out", f"{tmp}/cx", *jobs], env)
        check = ["check", a.patch, "--base", ",".join(DEFAULT_MATRIX_VARIANTS), "--out", f"{tmp}/chk", *jobs,
                 "--json"]
        cold_s, cold_rc = _timed(check, env)
        warm_s, warm_rc = _timed(check, env)
    result: dict[str, Any] = {
        "benchmark": "check_patch",
        "patch": a.patch,
        "cells": len(DEFAULT_MATRIX_VARIANTS) * 4,
        "jobs": a.jobs or os.cpu_count(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "matrix_seconds": matrix_s,
        "check_cold_seconds": cold_s,
        "check_cached_seconds": warm_s,
        "cold_over_matrix": round(cold_s / matrix_s, 2),
        "exit_codes": {"matrix": matrix_rc, "check_cold": cold_rc, "check_cached": warm_rc},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
