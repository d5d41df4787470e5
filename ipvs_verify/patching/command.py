"""The `check` and `patches` commands: a patch's verdict diff, as a table, Markdown or JSON (docs/patches.md)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from ruamel.yaml import YAML

from ipvs_verify.errors import UserError
from ipvs_verify.model.config import Scope
from ipvs_verify.patching.compare import CHANGES, CellDiff, base_cells, diff, patched, run_with_cache
from ipvs_verify.patching.files import Patch, shipped_patches
from ipvs_verify.presentation.story import story_lines
from ipvs_verify.properties.catalog import BY_NAME, Property
from ipvs_verify.runner.matrix import CellSpec, counterexample_trace, explicit_verdict, property_refs, write_trace
from ipvs_verify.runner.progress import MatrixProgress
from ipvs_verify.runner.report import CheckReport, DiffReport, PatchReport, VerdictReport
from ipvs_verify.runner.verdicts import CellResult

SHORT = {"holds": "ok", "violated": "VIOL", "undecided": "undec", "bounded": "bound", "vacuous": "vac", "n/a": "n/a"}
STYLE = {"fixed": "bold green", "now holds": "green", "regression": "bold red", "weakened": "yellow",
         "still violated": "red", "changed": "yellow", "unchanged": "dim"}
RECORD = Path(__file__).resolve().parent.parent / "patch_results.yaml"  # beside expected_verdicts.yaml


@dataclass
class CheckRun:
    patches: list[Patch]
    base: list[CellSpec]
    after: list[CellSpec]
    verdicts: dict[str, dict[str, VerdictReport]]  # cell slug -> property -> verdict (the one vocabulary)
    results: dict[str, CellResult]  # the explicit engine's cells (their counterexamples are written on demand)
    diffs: list[CellDiff]
    props: tuple[Property, ...]
    hits: int
    seconds: float
    engine: str = "explicit"


def run_check(patches: list[Patch], variants: tuple[str, ...], kube_proxy: str, modes: tuple[int, ...],
              pod_networks: tuple[str, ...], scope: Scope, props: tuple[Property, ...], jobs: int, cap: int,
              cache: Path | None, err: Console | None = None, quiet: bool = True, engine: str = "explicit",
              depth: int = 8, out_dir: Path | None = None) -> CheckRun:
    t0 = time.perf_counter()
    base = base_cells(patches, variants, kube_proxy, modes, pod_networks)
    after = patched(base, patches)
    for c in base + after:
        c.config(scope)  # every cell builds (and every hook is checked) before a search starts
    cells = base + after
    if engine != "explicit":
        return _run_smt(patches, base, after, scope, props, engine, depth, out_dir or Path("check-results"), t0)
    view = MatrixProgress([c.slug for c in cells], cap, err or Console(stderr=True), sys.stderr, quiet)

    def on_done(i: int, r: CellResult) -> None:
        view.done(i, ", ".join(f"{s.timing} {s.states:,} states" for s in r.searches)
                  + f", {sum(s.seconds for s in r.searches):.1f} s")

    with view:
        results, hits = run_with_cache(cells, scope, props, jobs, cap, cache, view.update, on_done)
    by_slug = {c.slug: r for c, r in zip(cells, results, strict=True)}
    verdicts = {slug: {v.prop_name: explicit_verdict(v, r, None) for v in r.verdicts} for slug, r in by_slug.items()}
    return CheckRun(patches, base, after, verdicts, by_slug, _diff(base, after, verdicts, props), props, hits,
                    time.perf_counter() - t0)


def _diff(base: list[CellSpec], after: list[CellSpec], verdicts: dict[str, dict[str, VerdictReport]],
          props: tuple[Property, ...]) -> list[CellDiff]:
    return diff(base, after, {slug: {p: v.status for p, v in vs.items()} for slug, vs in verdicts.items()}, props)


def _run_smt(patches: list[Patch], base: list[CellSpec], after: list[CellSpec], scope: Scope,
             props: tuple[Property, ...], engine: str, depth: int, out_dir: Path, t0: float) -> CheckRun:
    """The Z3 engines on the same cells: bmc (a violation is a real run, otherwise bounded) or induction."""
    from ipvs_verify.engines.bmc import run_bmc_growing
    from ipvs_verify.engines.induction import run_induction
    from ipvs_verify.runner.smt import _bmc_cell, _ind_cell, _write_bmc_traces

    verdicts: dict[str, dict[str, VerdictReport]] = {}
    for spec in base + after:
        config = spec.config(scope)
        if engine == "bmc":
            run = run_bmc_growing(config, props, depth)
            verdicts[spec.slug] = _bmc_cell(run, _write_bmc_traces(spec, run, out_dir / "bmc"))
        else:
            verdicts[spec.slug] = _ind_cell(run_induction(config, props))
    return CheckRun(patches, base, after, verdicts, {}, _diff(base, after, verdicts, props), props, 0,
                    time.perf_counter() - t0, engine)


def report(run: CheckRun, scope: Scope, must_fix: tuple[Property, ...], out_dir: Path | None) -> CheckReport:
    """The run as the check format (ipvs_verify/runner/report.py); regressions' counterexamples written to `out_dir`."""
    specs = {c.slug: c for c in run.base + run.after}
    rows: list[DiffReport] = []
    failures: list[str] = []
    for d in run.diffs:
        bv = run.verdicts[d.base_cell][d.prop]
        av = run.verdicts[d.patched_cell][d.prop]
        if d.change == "regression":
            res = run.results.get(d.patched_cell)
            if res is not None and out_dir is not None:  # explicit: written now; bmc wrote its own
                v = next(v for v in res.verdicts if v.prop_name == d.prop)
                av = explicit_verdict(v, res, Path(save_trace(out_dir, specs[d.patched_cell], res, v)))
            failures.append(f"{d.patched_cell} #{BY_NAME[d.prop].number} {d.prop}: held without the patch, "
                            f"violated with it" + (f" ({av.counterexample})" if av.counterexample else ""))
        rows.append(DiffReport(base_cell=d.base_cell, patched_cell=d.patched_cell, property=d.prop, base=bv,
                               patched=av, change=d.change))
    for p in must_fix:
        bad = [d for d in run.diffs if d.prop == p.name and d.patched not in ("holds", "n/a")]
        for d in bad:
            failures.append(f"{d.patched_cell} #{p.number} {p.name}: --must-fix, but it is {d.patched}")
    counts = {c: sum(1 for d in run.diffs if d.change == c) for c in CHANGES}
    return CheckReport(
        patches=[PatchReport(id=p.id, title=p.title, based_on=p.based_on, file=p.change.origin, sha256=p.digest,
                             form=p.form, change=p.summary) for p in run.patches],
        scope=scope.describe(), properties=property_refs(), cells=rows, counts=counts,  # type: ignore[arg-type]
        must_fix=[p.name for p in must_fix], failures=failures, baseline_cache_hits=run.hits,
        seconds=round(run.seconds, 3))


def save_trace(out_dir: Path, spec: CellSpec, res: CellResult, v: Any) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    return str(write_trace(out_dir, f"{spec.slug}--{v.prop_name}", counterexample_trace(res, v)))


# ---------------------------------------------------------------------- presentation
def print_table(run: CheckRun, rep: CheckReport, out: Console) -> None:
    names = " + ".join(p.id for p in run.patches)
    table = Table(title=f"{names}: verdicts without -> with the patch")
    table.add_column("cell")
    for p in run.props:
        table.add_column(str(p.number), justify="center")
    by = {(d.base_cell, d.prop): d for d in run.diffs}
    for spec in run.base:
        row = [spec.slug]
        for p in run.props:
            d = by[(spec.slug, p.name)]
            b, a = SHORT.get(d.base, d.base), SHORT.get(d.patched, d.patched)
            text = b if d.base == d.patched else f"{b}>{a}"
            row.append(f"[{STYLE[d.change]}]{text}[/]")
        table.add_row(*row)
    out.print(table)
    out.print("without>with; ok holds, VIOL violated, undec undecided, bound bounded, vac vacuous", highlight=False)
    out.print("properties: " + "; ".join(f"{p.number} {p.name}" for p in run.props), highlight=False)
    out.print(", ".join(f"{c} {n}" for c, n in rep.counts.items() if n) + f" ({len(run.base)} cells, "
              f"{rep.baseline_cache_hits} baselines cached, {run.seconds:.1f} s)", highlight=False)
    for cell in rep.cells:
        if cell.change == "regression" and cell.patched.counterexample:
            from ipvs_verify.presentation.trace import load_trace

            out.print(f"\nRegression: {cell.patched_cell} #{BY_NAME[cell.property].number} {cell.property}",
                      highlight=False)
            for line in story_lines(load_trace(Path(cell.patched.counterexample))):
                out.print("  " + line, highlight=False, markup=False)


def markdown(run: CheckRun, rep: CheckReport) -> str:
    lines = [f"### {' + '.join(p.id for p in run.patches)}: {'; '.join(p.title for p in run.patches)}", ""]
    lines += [f"Based on: {p.based_on}. Change: {p.summary}." for p in run.patches]
    lines += ["", "| cell | property | without | with | change |", "|---|---|---|---|---|"]
    for d in run.diffs:
        if d.change != "unchanged":
            lines.append(f"| {d.base_cell} | {BY_NAME[d.prop].number} {d.prop} | {d.base} | {d.patched} | "
                         f"{'**' + d.change + '**' if d.change in ('regression', 'fixed') else d.change} |")
    lines += ["", "Totals: " + ", ".join(f"{c} {n}" for c, n in rep.counts.items() if n) + "."]
    if rep.failures:
        lines += ["", "Fails:"] + [f"- {f}" for f in rep.failures]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- `patches`: what each shipped one does
def summarize(run: CheckRun) -> dict[str, Any]:
    """What a patch fixes and breaks on its base: property numbers per change, with the cells."""
    out: dict[str, Any] = {}
    for change in ("fixed", "regression", "now holds", "weakened"):
        props = sorted({BY_NAME[d.prop].number for d in run.diffs if d.change == change})
        if props:
            out[change] = props
    return out


def load_record(path: Path = RECORD) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = YAML(typ="safe").load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}:1: expected a mapping of patch ids to their results")
    return data


def write_record(entries: dict[str, Any], path: Path = RECORD) -> None:
    yaml = YAML()
    yaml.default_flow_style = False
    with path.open("w") as f:
        f.write("# What each shipped patch fixes and breaks on its base (`ipvs-verify patches --update` writes it;\n"
                "# tests/test_patches.py checks it against the patch files and recomputes some).\n")
        yaml.dump(entries, f)


def patch_rows(record: dict[str, Any]) -> list[tuple[Patch, dict[str, Any] | None]]:
    rows = []
    for p in shipped_patches():
        r = record.get(p.id)
        rows.append((p, r if isinstance(r, dict) and r.get("sha256") == p.digest else None))
    return rows


def fixes_and_breaks(r: dict[str, Any] | None) -> tuple[str, str]:
    """A patch's record as the table shows it: the properties it fixes, and those it breaks."""
    if r is None:
        return "not checked", "not checked"
    return _nums(r, "fixed"), _nums(r, "regression")


def patches_markdown(rows: list[tuple[Patch, dict[str, Any] | None]]) -> str:
    lines = ["| patch | form | base | change | fixes | breaks | based on |", "|---|---|---|---|---|---|---|"]
    for p, r in rows:
        fixes, breaks = fixes_and_breaks(r)
        lines.append(f"| {p.id} | {p.form} | {', '.join(p.base_variants)} kp{p.base_kube_proxy} | {p.summary} | "
                     f"{fixes} | {breaks} | {p.based_on} |")
    return "\n".join(lines) + "\n"


def _nums(r: dict[str, Any], key: str) -> str:
    return ", ".join(f"#{n}" for n in r.get(key, [])) or "nothing"
