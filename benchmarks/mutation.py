"""Mutation testing of the semantics (model/, properties/) with cosmic-ray (issue 19).

    nice -n 10 python benchmarks/mutation.py [--files model/tcp_states.py,model/variants.py] [--timeout 120]
        [--out benchmarks/results/mutation.json] [--keep-scratch DIR]

Copies the worktree (tracked and untracked files, symlinks kept as links) into a scratch directory, so the
mutations never touch the checkout; runs `cosmic-ray init` and `cosmic-ray exec` there with one worker (the
local distributor runs one mutant at a time), each mutant against the fast subset FAST_TESTS with `-x`; then
reads the session and writes JSON (every mutant, and per file: mutants, killed, survived, equivalent, kill
rate over the non-equivalent ones) and prints a table. Mutants listed in benchmarks/mutation_equivalents.yaml
(file, line, operator, the mutated line's text, and why) count as equivalent, not survived; a listed entry
that no mutant matches any more is reported as stale. Exit 1 if a file's kill rate is below --min-rate.

cosmic-ray, not mutmut: cosmic-ray mutates each file in place in the scratch copy and runs any test command,
so the ipvs_verify/model -> ../model links see the mutant as the package imports it; mutmut 3 copies the
tree into mutants/ and injects trampolines that the search engines' caches and compiled loop would bypass.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILES = ("model/tcp_states.py", "model/variants.py", "model/kube_proxy.py", "model/ip_vs_in.py",
                 "model/graceful_termination.py", "model/equivalence.py",
                 "model/scheduler.py", "model/control_plane.py", "model/datapath.py", "properties/catalog.py")
# the per-mutant subset: the pins first (they kill most mutants in a second), then the decision tables, the
# committed counterexamples and the scenarios (about 15 s for a mutant that survives them all)
FAST_TESTS = ("tests/test_model_pins.py", "tests/test_model_pins_decisions.py", "tests/test_model_pins_schedulers.py",
              "tests/test_model_pins_events.py", "tests/test_model_pins_properties.py",
              "tests/test_model_pins_equivalence.py", "tests/test_decisions.py", "tests/test_graceful_termination.py",
              "tests/test_counterexamples.py", "tests/test_scenarios.py")
# operators left out: VariableInserter/VariableReplacer rename identifiers at random (NameError-style noise);
# ExceptionReplacer and the loop break/continue swaps have no target worth the time in model/
EXCLUDED_OPERATORS = (r"core/VariableInserter", r"core/VariableReplacer", r"core/ExceptionReplacer",
                      r"core/ReplaceBinaryOperator_.*_(BitAnd|BitOr|BitXor|LShift|RShift|Pow|MatMult)$")
EQUIVALENTS = ROOT / "benchmarks" / "mutation_equivalents.yaml"


def _copy_tree(dst: Path) -> None:
    """The worktree's files as git sees them (tracked, and untracked but not ignored), links kept."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the worktree
        out = dst / name
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), out)
        else:
            shutil.copy2(src, out)
    for so in (ROOT / "ipvs_verify" / "engines").glob("_packed_loop*.so"):
        shutil.copy2(so, dst / "ipvs_verify" / "engines" / so.name)  # the compiled loop, as the suite uses it


def _config(files: list[str], timeout: float, tests: list[str]) -> str:
    # two pytest runs: the pins alone first (they import the model only, so a mutant they kill costs about a
    # second), then the rest of the subset, only if the pins pass
    pins = [t for t in tests if Path(t).name.startswith("test_model_pins")]
    rest = [t for t in tests if t not in pins]
    pytest = f"{sys.executable} -m pytest -x -q -p no:cacheprovider -n 0"  # one process: no xdist start-up per mutant
    stages = [f"{pytest} {' '.join(group)}" for group in (pins, rest) if group]
    cmd = f"sh -c {shlex.quote(' && '.join(stages))}"
    lines = [
        "[cosmic-ray]",
        f"module-path = {json.dumps(files)}",
        f"timeout = {timeout}",
        "excluded-modules = []",
        f"test-command = {json.dumps(cmd)}",
        "",
        "[cosmic-ray.distributor]",
        'name = "local"',
        "",
        "[cosmic-ray.filters.operators-filter]",
        f"exclude-operators = {json.dumps(list(EXCLUDED_OPERATORS))}",
    ]
    return "\n".join(lines) + "\n"


def _mutated_line(diff: str) -> str:
    """The first added line of a mutant's diff: what the equivalents file quotes."""
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            return line[1:].strip()
    return ""


def _load_equivalents() -> list[dict[str, Any]]:
    if not EQUIVALENTS.exists():
        return []
    data = YAML(typ="safe").load(EQUIVALENTS.read_text()) or []
    return list(data)


def _forget_survivors(scratch: Path, db: Path, config: str) -> None:
    """New tests for old survivors: refresh the scratch copy's tests and mark its survivors pending again."""
    shutil.rmtree(scratch / "tests")
    for name in subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "tests"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.split():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, scratch / name)
    (scratch / "cosmic-ray.toml").write_text(config)  # the test list of this run
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")


DEFERRED = "deferred by --only"


def _defer_others(db: Path, only: str) -> None:
    """Run a session's mutants of some files first: the others' pending ones get a placeholder result (skipped,
    output DEFERRED) that cosmic-ray passes over and the report counts as not run; files named get theirs back."""
    names = [f.strip() for f in only.split(",") if f.strip()]
    marks = ",".join("?" * len(names))
    with sqlite3.connect(db) as con:
        con.execute(f"DELETE FROM work_results WHERE output = ? AND job_id IN (SELECT job_id FROM mutation_specs "
                    f"WHERE module_path IN ({marks}))", (DEFERRED, *names))
        con.execute(f"INSERT INTO work_results (worker_outcome, output, job_id) SELECT 'SKIPPED', ?, w.job_id "
                    f"FROM work_items w JOIN mutation_specs m ON m.job_id = w.job_id LEFT JOIN work_results r "
                    f"ON r.job_id = w.job_id WHERE r.job_id IS NULL AND m.module_path NOT IN ({marks})",
                    (DEFERRED, *names))


def _read_session(db: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every mutant that ran, and per file how many have not run yet (an interrupted session)."""
    from cosmic_ray.work_db import WorkDB, use_db

    out: list[dict[str, Any]] = []
    with sqlite3.connect(db) as con:
        deferred = {r[0] for r in con.execute("SELECT job_id FROM work_results WHERE output = ?", (DEFERRED,))}
    with use_db(str(db), WorkDB.Mode.open) as wdb:
        pending: dict[str, int] = {}
        for item, result in wdb.completed_work_items:
            for m in item.mutations:
                if item.job_id in deferred:
                    pending[str(m.module_path)] = pending.get(str(m.module_path), 0) + 1
                    continue
                out.append({
                    "file": str(m.module_path),
                    "line": m.start_pos[0],
                    "operator": m.operator_name,
                    "occurrence": m.occurrence,
                    "mutated": _mutated_line(result.diff or ""),
                    "worker": str(result.worker_outcome.value),
                    "outcome": None if result.test_outcome is None else str(result.test_outcome.value),
                })
        for item in wdb.pending_work_items:
            for m in item.mutations:
                pending[str(m.module_path)] = pending.get(str(m.module_path), 0) + 1
    out.sort(key=lambda r: (r["file"], r["line"], r["operator"], r["occurrence"]))
    return out, pending


def classify(mutants: list[dict[str, Any]], equivalents: list[dict[str, Any]],
             pending: dict[str, int]) -> tuple[dict[str, Any], list[str]]:
    used: set[int] = set()
    for m in mutants:
        if m["worker"] == "skipped":
            m["status"] = "skipped"
            continue
        if m["outcome"] != "survived":
            m["status"] = "killed"  # a failing test, a timeout or an import error (cosmic-ray: incompetent)
            continue
        for i, e in enumerate(equivalents):
            if (e["file"], e["line"], e["operator"], e["mutated"].strip()) == (
                    m["file"], m["line"], m["operator"], m["mutated"]):
                m["status"], m["why"] = "equivalent", e["why"]
                used.add(i)
                break
        else:
            m["status"] = "survived"
    stale = [f"{e['file']}:{e['line']} {e['operator']}" for i, e in enumerate(equivalents) if i not in used
             and any(m["file"] == e["file"] for m in mutants) and not pending.get(e["file"])]
    per_file: dict[str, dict[str, Any]] = {}
    for m in mutants:
        if m["status"] == "skipped":
            continue
        row = per_file.setdefault(m["file"], {"mutants": 0, "killed": 0, "survived": 0, "equivalent": 0})
        row["mutants"] += 1
        row[m["status"]] += 1
    total = {k: sum(r[k] for r in per_file.values()) for k in ("mutants", "killed", "survived", "equivalent")}
    for row in [*per_file.values(), total]:
        live = row["mutants"] - row["equivalent"]
        row["kill_rate"] = round(row["killed"] / live, 4) if live else None
    return {"per_file": per_file, "total": total}, stale


def table(summary: dict[str, Any]) -> str:
    head = f"{'file':32} {'mutants':>7} {'killed':>6} {'survived':>8} {'equiv':>5} {'kill rate':>9}"
    rows = [head, "-" * len(head)]
    for name, r in [*sorted(summary["per_file"].items()), ("total", summary["total"])]:
        rate = "-" if r["kill_rate"] is None else f"{100 * r['kill_rate']:.1f} %"
        rows.append(f"{name:32} {r['mutants']:>7} {r['killed']:>6} {r['survived']:>8} {r['equivalent']:>5} {rate:>9}")
    return "\n".join(rows)


def _run(a: argparse.Namespace, files: list[str], tests: list[str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Run (or resume, or only read) a cosmic-ray session in a scratch copy; return its mutants."""
    tmp = None
    if a.keep_scratch:
        scratch = a.keep_scratch.resolve()
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ipvs-mutation-")
        scratch = Path(tmp.name)
    try:
        db = scratch / "session.sqlite"
        if not db.exists():
            scratch.mkdir(parents=True, exist_ok=True)
            _copy_tree(scratch)
            (scratch / "cosmic-ray.toml").write_text(_config(files, a.timeout, tests))
        env = {**os.environ, "PYTHONPATH": str(scratch), "PYTHONDONTWRITEBYTECODE": "1"}
        run = {"cwd": scratch, "env": env, "check": True}
        if a.retest_survivors and db.exists():
            _forget_survivors(scratch, db, _config(files, a.timeout, tests))
        if not db.exists():
            subprocess.run(["cosmic-ray", "init", "cosmic-ray.toml", db.name], **run)  # type: ignore[call-overload]
            subprocess.run(["cr-filter-operators", db.name, "cosmic-ray.toml"], **run)  # type: ignore[call-overload]
        if a.only is not None:
            _defer_others(db, a.only)
        if not a.report_only:
            subprocess.run(["cosmic-ray", "exec", "cosmic-ray.toml", db.name], **run)  # type: ignore[call-overload]
        mutants, pending = _read_session(db)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return mutants, pending


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", default=",".join(DEFAULT_FILES), help="comma-separated, relative to the root")
    ap.add_argument("--tests", default=",".join(FAST_TESTS))
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant (a hang counts as killed)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mutation.json")
    ap.add_argument("--keep-scratch", type=Path, help="run in this directory and keep it (resumes a session)")
    ap.add_argument("--min-rate", type=float, default=0.95)
    ap.add_argument("--report-only", action="store_true",
                    help="with --keep-scratch: report the session as it stands (an interrupted run), run nothing")
    ap.add_argument("--only", metavar="FILES", help="with --keep-scratch: run only these files' mutants now "
                    "(comma-separated); the others' wait, and a later --only gets them back")
    ap.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                    help="no run: combine the mutants of these reports (runs over different files) into --out")
    ap.add_argument("--retest-survivors", action="store_true",
                    help="with --keep-scratch: copy tests/ afresh and run the survivors of the session again")
    a = ap.parse_args()
    files = [f.strip() for f in a.files.split(",") if f.strip()]
    tests = [t.strip() for t in a.tests.split(",") if t.strip()]
    if a.merge:
        mutants, pending, files = [], {}, []
        for path in a.merge:
            r = json.loads(path.read_text())
            mutants += r["mutants"]
            pending.update(r.get("pending", {}))
            files += r["files"]
    else:
        mutants, pending = _run(a, files, tests)
    summary, stale = classify(mutants, _load_equivalents(), pending)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"tool": "cosmic-ray", "files": files, "tests": tests, "timeout_s": a.timeout,
              "excluded_operators": list(EXCLUDED_OPERATORS), **summary, "pending": pending, "stale_equivalents": stale,
              "survivors": [m for m in mutants if m["status"] == "survived"], "mutants": mutants}
    a.out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    text = table(summary)
    a.out.with_suffix(".txt").write_text(text + "\n")
    print(text)
    for name, n in sorted(pending.items()):
        print(f"not run yet: {name}: {n} mutants")
    for m in report["survivors"]:
        print(f"survived: {m['file']}:{m['line']} {m['operator']}: {m['mutated']}")
    for s in stale:
        print(f"stale equivalent (no such mutant now): {s}")
    low = [n for n, r in summary["per_file"].items() if r["kill_rate"] is not None and r["kill_rate"] < a.min_rate]
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
