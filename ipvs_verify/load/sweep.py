"""`load CONFIG --sweep KEY=V1,V2 ...`: the run at every combination of the swept values, in parallel processes,
written as a CSV and a JSON table and plotted (plots.py). The first key is the plots' x axis; each combination of
the others is one line (a variant, a patch, a conn_reuse_mode ...)."""

from __future__ import annotations

import csv
import itertools
import json
import multiprocessing as mp
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ipvs_verify.errors import UserError
from ipvs_verify.load.config import CLOSED_LOOP_NEEDS_TIME, MAX_RATE, MAX_REPLICAS, MAX_WORKERS, LoadSpec, check_model
from ipvs_verify.load.run import run_one
from ipvs_verify.model.decision_points import PatchError
from ipvs_verify.model.variants import UnknownKernel, resolve_variant

SWEEP_KEYS = ("rate", "workers", "hold", "replicas", "port_range", "conn_reuse_mode", "variant", "patch")
NUMERIC = ("rate", "workers", "hold", "replicas", "conn_reuse_mode")

# the table's columns: (name, where in a run's result)
COLUMNS = (
    ("attempted", ("connections", "attempted")), ("completed", ("connections", "completed")),
    ("achieved_per_s", ("rates", "achieved_per_s")), ("last_quarter_per_s", ("rates", "last_quarter_per_s")),
    ("failed_share", ("shares", "failed")), ("no_route_share", ("shares", "no_route")),
    ("refused_share", ("shares", "refused")), ("first_syn_lost_share", ("shares", "first_syn_lost")),
    ("no_port_share", ("shares", "no_port")), ("latency_mean_s", ("connect_latency_s", "mean")),
    ("latency_p50_s", ("connect_latency_s", "p50")), ("latency_p99_s", ("connect_latency_s", "p99")),
    ("latency_max_s", ("connect_latency_s", "max")),
)


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple[str, ...]  # as written

    @property
    def numeric(self) -> bool:
        return self.key in NUMERIC


def parse_sweeps(spec: LoadSpec, texts: list[str]) -> list[Axis]:
    axes: list[Axis] = []
    for text in texts:
        key, eq, rest = text.partition("=")
        key = key.strip()
        values = tuple(v.strip() for v in rest.split(",") if v.strip())
        if not eq or key not in SWEEP_KEYS:
            raise UserError(f"--sweep {text}: expected KEY=V1,V2,... with KEY one of {', '.join(SWEEP_KEYS)}")
        if not values:
            raise UserError(f"--sweep {text}: expected at least one value after '='")
        if key in (a.key for a in axes):
            raise UserError(f"--sweep {text}: {key} is swept twice")
        if len(set(values)) != len(values):
            raise UserError(f"--sweep {text}: a value is given twice")
        axis = Axis(key, values)
        for v in values:
            point(spec, ((axis, v),))  # each value checked alone, with its own message
        axes.append(axis)
    return axes


def _number(axis: Axis, value: str, kind: type, lo: float, hi: float) -> Any:
    try:
        x = kind(value)
    except ValueError:
        raise UserError(f"--sweep {axis.key}: expected {'an integer' if kind is int else 'a number'}, got "
                        f"'{value}'") from None
    if not lo <= x <= hi:
        raise UserError(f"--sweep {axis.key}: expected {lo:g}..{hi:g}, got {value}")
    return x


def point(spec: LoadSpec, values: tuple[tuple[Axis, str], ...]) -> LoadSpec:
    """The spec with these swept values; a bad value is a UserError naming --sweep."""
    for axis, v in values:
        k = axis.key
        if k == "rate":
            spec = replace(spec, load=spec.load.model_copy(update={"mode": "open", "rate": _number(
                axis, v, float, 1e-6, MAX_RATE)}))
        elif k == "workers":
            spec = replace(spec, load=spec.load.model_copy(update={"mode": "closed", "workers": _number(
                axis, v, int, 1, MAX_WORKERS)}))
        elif k == "hold":
            spec = replace(spec, load=spec.load.model_copy(update={"hold": _number(axis, v, float, 0, 3600)}))
        elif k == "replicas":
            spec = replace(spec, clients=spec.clients.model_copy(update={"replicas": _number(
                axis, v, int, 1, MAX_REPLICAS)}))
        elif k == "port_range":
            lo, dash, hi = v.partition("-")
            if not dash:
                raise UserError(f"--sweep port_range: expected LOW-HIGH (e.g. 32768-60999), got '{v}'")
            low, high = _number(axis, lo, int, 1, 65535), _number(axis, hi, int, 1, 65535)
            if low > high:
                raise UserError(f"--sweep port_range: expected LOW <= HIGH, got '{v}' (upside down)")
            spec = replace(spec, clients=spec.clients.model_copy(update={"port_range": [low, high]}))
        elif k == "conn_reuse_mode":
            mode = _number(axis, v, int, 0, 3)
            spec = replace(spec, sysctls=tuple(sorted({**dict(spec.sysctls), "conn_reuse_mode": mode}.items())))
        elif k == "variant":
            try:
                resolve_variant(v)
            except UnknownKernel as e:
                raise UserError(f"--sweep variant: {e}") from None
            spec = replace(spec, variant=v, kernel=None)
        elif k == "patch":
            if v == "none":
                spec = replace(spec, patches=(), patch_ids=())
            else:
                from ipvs_verify.patching.files import resolve_patch

                p = resolve_patch(v)
                spec = replace(spec, patches=(p.change,), patch_ids=(p.id,))
    spec = replace(spec, extra={a.key: v for a, v in values})
    if spec.load.mode == "closed" and spec.load.hold + spec.load.think <= 0:
        raise UserError(f"--sweep {', '.join(f'{a.key}={v}' for a, v in values)}: {CLOSED_LOOP_NEEDS_TIME}")
    try:
        check_model(spec)
    except (ValueError, PatchError) as e:
        raise UserError(f"--sweep {', '.join(f'{a.key}={v}' for a, v in values)}: {e}") from None
    return spec


_POINTS: list[LoadSpec] = []  # the sweep's points, inherited by the forked workers


def _run_point(i: int) -> dict[str, Any]:
    return run_one(_POINTS[i])


def run_sweep(spec: LoadSpec, axes: list[Axis], jobs: int, err: Console, quiet: bool) -> list[dict[str, Any]]:
    """Every combination (the first axis varying fastest), run in parallel; rows in the combinations' order."""
    combos = [tuple(reversed(c)) for c in itertools.product(*[[(ax, v) for v in ax.values] for ax in reversed(axes)])]
    _POINTS[:] = [point(spec, c) for c in combos]
    jobs = jobs or os.cpu_count() or 1
    results: list[dict[str, Any] | None] = [None] * len(combos)
    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                  transient=True, disable=quiet) as bar:
        task = bar.add_task("points", total=len(combos))
        if jobs == 1 or len(combos) == 1:
            for i in range(len(combos)):
                results[i] = _run_point(i)
                bar.advance(task)
        else:
            with mp.get_context("fork").Pool(min(jobs, len(combos))) as pool:
                for i, done in enumerate(pool.imap(_run_point, range(len(combos)))):
                    results[i] = done
                    bar.advance(task)
    rows = []
    for combo, r in zip(combos, results, strict=True):
        assert r is not None
        row: dict[str, Any] = {a.key: v for a, v in combo}
        for name, (part, key) in COLUMNS:
            row[name] = r[part][key]
        row["label"] = r["config"]["label"]
        rows.append(row)
    return rows


def write_sweep(spec: LoadSpec, axes: list[Axis], rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    from ipvs_verify.load.plots import plot_sweep

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(spec.source).stem if spec.source else "load"
    base = out_dir / f"{stem}--{'-'.join(a.key for a in axes)}"
    fields = [a.key for a in axes] + [name for name, _ in COLUMNS] + ["label"]
    csv_path, json_path = base.with_suffix(".csv"), base.with_suffix(".json")
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow({k: "" if row[k] is None else row[k] for k in fields})
    json_path.write_text(json.dumps({"name": spec.name, "config": spec.source, "axes": [a.key for a in axes],
                                     "points": rows}, indent=2) + "\n")
    return [csv_path, json_path, *plot_sweep(spec.name, axes, rows, base)]


def print_sweep(axes: list[Axis], rows: list[dict[str, Any]], out: Console) -> None:
    table = Table(title="sweep")
    shown = ("achieved_per_s", "failed_share", "no_route_share", "first_syn_lost_share", "latency_p99_s")
    for a in axes:
        table.add_column(a.key)
    for name in shown:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*(row[a.key] for a in axes), *("-" if row[n] is None else f"{row[n]:g}" for n in shown))
    out.print(table)
