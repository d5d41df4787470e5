"""`ipvs-verify load CONFIG [--sweep KEY=V1,V2 ...]`: one run (a table, or --json), or a sweep (CSV, JSON, plots)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

from ipvs_verify.load.config import load_spec
from ipvs_verify.load.report import print_result
from ipvs_verify.load.run import run_one


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
