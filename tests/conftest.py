from __future__ import annotations

import functools

from ipvs_verify.check import CellResult, check_config
from ipvs_verify.matrix import DEFAULT_SCOPE, EVENT_STATE_CAP, CellSpec
from model.config import Scope
from properties.catalog import PROPERTIES

pytest_plugins = ["tests.stateful_plugin"]  # the Hypothesis stateful suite: profiles, --variant, summary


def cell(variant: str, mode: int, kube_proxy: str = "1.30", protocol: str = "tcp", scheduler: str = "rr") -> CellResult:
    """One matrix cell at the default scope, computed once per test session."""
    return cell_at(CellSpec(variant, kube_proxy, (("conn_reuse_mode", mode),), protocol, 0, scheduler), DEFAULT_SCOPE)


@functools.cache
def cell_at(spec: CellSpec, scope: Scope) -> CellResult:
    """A matrix cell at a scope, every property, the default cap: computed once per test session."""
    return check_config(spec.config(scope), PROPERTIES, EVENT_STATE_CAP)
