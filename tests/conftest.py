from __future__ import annotations

from ipvs_verify.model.config import Scope
from ipvs_verify.properties.catalog import PROPERTIES
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, EVENT_STATE_CAP, CellSpec, run_matrix
from ipvs_verify.runner.verdicts import CellResult, check_config

pytest_plugins = ["tests.stateful_plugin"]  # the Hypothesis stateful suite: profiles, --variant, summary

_CELLS: dict[tuple[CellSpec, Scope], CellResult] = {}


def cell(variant: str, mode: int, kube_proxy: str = "1.30", protocol: str = "tcp", scheduler: str = "rr") -> CellResult:
    """One matrix cell at the default scope, computed once per test session."""
    return cell_at(CellSpec(variant, kube_proxy, (("conn_reuse_mode", mode),), protocol, 0, scheduler), DEFAULT_SCOPE)


def cell_at(spec: CellSpec, scope: Scope) -> CellResult:
    """A matrix cell at a scope, every property, the default cap: computed once per test session."""
    key = (spec, scope)
    if key not in _CELLS:
        _CELLS[key] = check_config(spec.config(scope), PROPERTIES, EVENT_STATE_CAP)
    return _CELLS[key]


def prime_cells(cells: list[tuple[CellSpec, Scope]]) -> None:
    """Compute the cells not cached yet in the matrix's worker processes (every core): the same results as
    cell_at's (the matrix's own code path), sooner."""
    by_scope: dict[Scope, list[CellSpec]] = {}
    for spec, scope in cells:
        if (spec, scope) not in _CELLS and spec not in by_scope.get(scope, []):
            by_scope.setdefault(scope, []).append(spec)
    for scope, specs in by_scope.items():
        for spec, result in zip(specs, run_matrix(specs, scope, PROPERTIES, 0, EVENT_STATE_CAP), strict=True):
            _CELLS[(spec, scope)] = result


def pytest_collection_modifyitems(config: object, items: list[object]) -> None:
    """A test marked slow runs only when selected (`-m slow`): the default suite stays within its minutes."""
    import pytest

    expr = getattr(getattr(config, "option", None), "markexpr", "") or ""
    if "slow" in expr and "not slow" not in expr:
        return
    skip = pytest.mark.skip(reason="slow: select with -m slow")
    for item in items:
        if "slow" in getattr(item, "keywords", {}):
            item.add_marker(skip)  # type: ignore[attr-defined]
