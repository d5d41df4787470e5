from __future__ import annotations

import functools

from ipvs_verify.check import CellResult, check_config
from ipvs_verify.matrix import DEFAULT_SCOPE, EVENT_STATE_CAP, CellSpec
from properties.catalog import PROPERTIES

pytest_plugins = ["tests.stateful_plugin"]  # the Hypothesis stateful suite: profiles, --variant, summary


@functools.cache
def cell(variant: str, mode: int, kube_proxy: str = "1.30", protocol: str = "tcp", scheduler: str = "rr") -> CellResult:
    """One matrix cell at the default scope, computed once per test session."""
    spec = CellSpec(variant, kube_proxy, (("conn_reuse_mode", mode),), protocol, scheduler=scheduler)
    return check_config(spec.config(DEFAULT_SCOPE), PROPERTIES, EVENT_STATE_CAP)
