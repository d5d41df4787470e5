"""Shared by the tests: matrix cells computed once per test session, and the `slow` marker.

A cell's result is kept in memory and, through the content-addressed cell cache `check` uses
(ipvs_verify/patching/compare.py), in a directory of this session that every pytest-xdist worker shares: a
cell one worker computed is read by the others, and one lock makes a worker wait for a cell another is
computing instead of computing it again. IPVS_VERIFY_TEST_CELLS=DIR keeps that directory across sessions
(its keys hold the digest of the model's source, so a changed model never reads an old result).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ipvs_verify.model.config import Scope
from ipvs_verify.patching.compare import run_with_cache
from ipvs_verify.properties.catalog import PROPERTIES
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, EVENT_STATE_CAP, CellSpec
from ipvs_verify.runner.verdicts import CellResult

pytest_plugins = ["tests.stateful_plugin"]  # the Hypothesis stateful suite: profiles, --variant, summary

_CELLS: dict[tuple[CellSpec, Scope], CellResult] = {}
CELLS_ENV = "IPVS_VERIFY_TEST_CELLS"
_OWNED = "_IPVS_VERIFY_TEST_CELLS_OWNED"  # set when this session made the directory (and removes it)


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get(CELLS_ENV):
        return  # a worker inherits the controller's directory; a user's directory is kept
    os.environ[CELLS_ENV] = tempfile.mkdtemp(prefix="ipvs-verify-cells-")
    os.environ[_OWNED] = "1"


def pytest_unconfigure(config: pytest.Config) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER") and os.environ.pop(_OWNED, None):
        shutil.rmtree(os.environ.pop(CELLS_ENV), ignore_errors=True)


@contextmanager
def _cache() -> Iterator[Path]:
    """The session's cell directory, held under its lock while cells are looked up and computed."""
    root = Path(os.environ[CELLS_ENV])
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield root
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cell(variant: str, mode: int, kube_proxy: str = "1.30", protocol: str = "tcp", scheduler: str = "rr") -> CellResult:
    """One matrix cell at the default scope, computed once per test session."""
    return cell_at(CellSpec(variant, kube_proxy, (("conn_reuse_mode", mode),), protocol, 0, scheduler), DEFAULT_SCOPE)


def cell_at(spec: CellSpec, scope: Scope) -> CellResult:
    """A matrix cell at a scope, every property, the default cap (the matrix's own code path): computed once
    per test session."""
    key = (spec, scope)
    if key not in _CELLS:
        with _cache() as root:
            _CELLS[key] = run_with_cache([spec], scope, PROPERTIES, 1, EVENT_STATE_CAP, root)[0][0]
    return _CELLS[key]


def prime_cells(cells: list[tuple[CellSpec, Scope]]) -> None:
    """Compute the cells not cached yet in the matrix's worker processes (every core): the same results as
    cell_at's, sooner."""
    by_scope: dict[Scope, list[CellSpec]] = {}
    for spec, scope in cells:
        if (spec, scope) not in _CELLS and spec not in by_scope.get(scope, []):
            by_scope.setdefault(scope, []).append(spec)
    for scope, specs in by_scope.items():
        with _cache() as root:
            results, _ = run_with_cache(specs, scope, PROPERTIES, 0, EVENT_STATE_CAP, root)
        for spec, result in zip(specs, results, strict=True):
            _CELLS[(spec, scope)] = result


# The files with the longest single test (minutes of one worker's time: the manifest's cells, the Z3 proofs) go
# first: `--dist loadfile` hands files out in collection order, so a long one started last would run alone at the
# end while the other worker idles (measured: the suite's tail).
LONGEST_FIRST = ("test_expected_verdicts.py", "test_smt_induction.py", "test_smt_engine.py", "test_stateful.py",
                 "test_engine_shortcuts.py")


def _file_rank(item: object) -> int:
    name = Path(str(getattr(item, "fspath", ""))).name
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config: object, items: list[object]) -> None:
    """The longest files first (above); a test marked slow runs only when selected (`-m slow`): the default
    suite stays within its minutes."""
    items.sort(key=_file_rank)  # stable: each file keeps its own order
    expr = getattr(getattr(config, "option", None), "markexpr", "") or ""
    if "slow" in expr and "not slow" not in expr:
        return
    skip = pytest.mark.skip(reason="slow: select with -m slow")
    for item in items:
        if "slow" in getattr(item, "keywords", {}):
            item.add_marker(skip)  # type: ignore[attr-defined]
