"""The lasso search's strongly connected components (scipy's csgraph over arrays) against networkx's, the
reference, on the pending subgraphs of real explorations: the same components, so the same lassos."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ipvs_verify.engines.explicit import explore
from ipvs_verify.engines.lasso import _graph_arrays
from ipvs_verify.model.system import System
from ipvs_verify.properties.catalog import PROPERTIES
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, CellSpec


@pytest.mark.parametrize("variant,mode,timing", [("K46", 0, "event"), ("K516", 1, "untimed"), ("K41", 1, "event")])
def test_components_equal_networkx(variant: str, mode: int, timing: str) -> None:
    cfg = CellSpec(variant, "1.30", (("conn_reuse_mode", mode),)).config(DEFAULT_SCOPE)
    ex = explore(System(cfg, timing), PROPERTIES, 60_000)
    src, dst, crash, ev_id, distinct = _graph_arrays(ex)
    states = ex.timeless_states()
    for prop in (p for p in PROPERTIES if p.liveness is not None):
        live = prop.liveness
        assert live is not None
        for pod in range(ex.system.n_pods):
            pending = np.array([bool(live.pending(ex.system, s, pod)) for s in states])
            keep = pending[src] & pending[dst] & ~crash
            if live.discharges is not None:
                keep &= ~np.array([live.discharges(ev, pod) for ev in distinct], dtype=bool)[ev_id]
            ks, kd = src[keep], dst[keep]
            g = nx.DiGraph()
            g.add_nodes_from(np.nonzero(pending)[0].tolist())
            g.add_edges_from(zip(ks.tolist(), kd.tolist(), strict=True))
            want = {frozenset(c) for c in nx.strongly_connected_components(g)
                    if len(c) > 1 or g.has_edge(next(iter(c)), next(iter(c)))}
            n = len(states)
            _, labels = connected_components(csr_matrix((np.ones(len(ks)), (ks, kd)), shape=(n, n)),
                                             directed=True, connection="strong")
            groups: dict[int, set[int]] = {}
            for i in np.nonzero(pending)[0].tolist():
                groups.setdefault(int(labels[i]), set()).add(i)
            loops = set(ks[ks == kd].tolist())
            got = {frozenset(c) for c in groups.values() if len(c) > 1 or next(iter(c)) in loops}
            assert got == want, (prop.name, pod)
