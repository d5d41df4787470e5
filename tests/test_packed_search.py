"""The packed search is the plain search, only faster.

`explore` (packed states, memoised transitions, footprints) must give exactly what `explore_plain` gives
(one System.step per transition on whole states): the same states in the same order, the same edges and
events, the same first violations, reached checks and coverage. Run with `verify=True`, every memoised step is
also recomputed on the skeleton it is applied to, so a footprint that claims too little fails here. The last
tests show that the packer's checks do fail when the model breaks the packing's assumptions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from ipvs_verify.engines.explicit import Exploration, explore, explore_plain
from ipvs_verify.engines.lasso import armed
from ipvs_verify.engines.packed import PackingError
from ipvs_verify.model.config import Config, make_config
from ipvs_verify.model.state import State
from ipvs_verify.model.system import Act, Action, Part, System
from ipvs_verify.properties.catalog import PROPERTIES
from ipvs_verify.runner.matrix import DEFAULT_SCOPE


def _cfg(variant: str, mode: int, kube_proxy: str = "1.30", scheduler: str = "rr", pod_network: str = "routed",
         **scope: Any) -> Config:
    return make_config(variant, kube_proxy, {"conn_reuse_mode": mode}, replace(DEFAULT_SCOPE, **scope),
                       scheduler=scheduler, pod_network=pod_network)


# (name, config, timing, state cap): both packed timings (untimed systems run the plain search), both
# protocols, persistence, load-reading and hashing schedulers, two clients (footprints across flows), and the
# bridge pod network (a destroyed pod's neighbour clock, a flow's conntrack clock)
CASES = [
    ("K516-mode1-event", _cfg("K516", 1), "event", 12_000),
    ("K59-mode0-exact", _cfg("K59", 0), "exact", 8_000),
    ("K46-udp-kp1.14", _cfg("K46", 0, "1.14.0", protocol="udp"), "event", 12_000),
    ("K516-persistent-event", _cfg("K516", 1, persistence=10800), "event", 8_000),
    ("K516-persistent-mode0", _cfg("K516", 0, persistence=10800), "event", 8_000),
    ("K516-lc", _cfg("K516", 1, scheduler="lc"), "event", 8_000),
    ("K516-sh", _cfg("K516", 1, scheduler="sh"), "event", 8_000),
    ("K46-two-clients", _cfg("K46", 1, clients=2, long_lived=False), "event", 12_000),
    ("K516-bridge-event", _cfg("K516", 0, pod_network="bridge"), "event", 12_000),
    ("K59-bridge-exact", _cfg("K59", 1, pod_network="bridge"), "exact", 8_000),
]


def _same(packed: Exploration, plain: Exploration) -> None:
    assert packed.n_states == plain.n_states
    assert packed.complete == plain.complete and packed.bound == plain.bound
    for i, (a, b) in enumerate(zip(packed.states, plain.states, strict=True)):
        assert a == b, f"state {i} differs"
    assert list(packed.parent) == list(plain.parent) and packed.via == plain.via
    assert list(packed.edge_src) == list(plain.edge_src) and list(packed.edge_dst) == list(plain.edge_dst)
    assert packed.edge_act == plain.edge_act and packed.edge_ev == plain.edge_ev
    assert ({k: (f.src, f.action) for k, f in packed.violations.items()}
            == {k: (f.src, f.action) for k, f in plain.violations.items()})
    assert packed.reached == plain.reached and packed.coverage == plain.coverage


@pytest.mark.parametrize("name, config, timing, cap", CASES, ids=[c[0] for c in CASES])
def test_packed_search_equals_plain_search(name: str, config: Config, timing: str, cap: int) -> None:
    packed = explore(System(config, timing), PROPERTIES, cap, verify=True)
    plain = explore_plain(System(config, timing), PROPERTIES, cap)
    assert plain.n_edges > plain.n_states  # a search of substance, not an empty one
    _same(packed, plain)


CLOCK_FREE_CASES = [CASES[0], CASES[3], CASES[4]]


@pytest.mark.parametrize("name, config, timing, cap", CLOCK_FREE_CASES, ids=[c[0] for c in CLOCK_FREE_CASES])
def test_no_predicate_reads_a_clock(name: str, config: Config, timing: str, cap: int) -> None:
    """Hits and the lasso read states up to their clocks (a skeleton's representative): every predicate of the
    catalog must then say the same on the real state, on every state and transition of the search."""
    sys = System(config, timing)
    ex = explore(sys, PROPERTIES, cap)
    real, timeless = ex.states, ex.timeless_states()
    assert real != timeless  # the representatives do differ from the states (in their clocks)
    for p in PROPERTIES:
        if p.liveness is None:
            continue
        for i, (s, t) in enumerate(zip(real, timeless, strict=True)):
            for pod in range(sys.n_pods):
                assert bool(p.liveness.pending(sys, s, pod)) == bool(p.liveness.pending(sys, t, pod)), (p.name, i)
            for jname, just in p.liveness.justice:
                assert just(sys, s) == just(sys, t), (p.name, jname, i)
            assert armed(s) == armed(t), i
    edge_preds = [p.violated for p in PROPERTIES if p.violated is not None]
    edge_preds += [r.holds for p in PROPERTIES for r in p.sometimes]
    edge_preds += [pred for p in PROPERTIES if p.liveness is not None for _, pred in p.liveness.must_happen]
    for k in range(ex.n_edges):
        i, j, a, ev = ex.edge_src[k], ex.edge_dst[k], ex.edge_act[k], ex.edge_ev[k]
        for pred in edge_preds:
            assert bool(pred(sys, real[i], a, ev, real[j])) == bool(pred(sys, timeless[i], a, ev, timeless[j])), k


def test_a_write_outside_the_footprint_is_caught() -> None:
    class Claims(System):
        def footprint(self, a: Action) -> tuple[Part, ...] | None:
            return (Part.KP,) if a[0] == Act.GRACE_END else super().footprint(a)  # it writes the pods (SCHED)

    with pytest.raises(PackingError, match="outside its footprint"):
        explore(Claims(_cfg("K516", 1), "event"), PROPERTIES, 12_000)


def test_a_read_outside_the_footprint_is_caught_by_verify() -> None:
    class Claims(System):
        def footprint(self, a: Action) -> tuple[Part, ...] | None:
            # a close reads its pod's phase and its dest's status (SCHED), which this claim leaves out
            return (Part.FLOW,) if a[0] == Act.CLOSE else super().footprint(a)

    with pytest.raises(PackingError, match="not confined to its footprint"):
        explore(Claims(_cfg("K46", 0), "event"), PROPERTIES, 12_000, verify=True)


def test_a_step_that_computes_with_a_clock_is_caught() -> None:
    class Drifts(System):
        def step(self, st: State, a: Action) -> tuple[State, tuple]:
            n, ev = super().step(st, a)
            # the graceful-deletion check computes its next deadline from the old one: not a copy, not a constant
            return (n._replace(check_timer=st.check_timer + 5), ev) if a[0] == Act.CHECK else (n, ev)

    with pytest.raises(PackingError, match="computed a clock"):
        explore(Drifts(_cfg("K46", 0), "event"), PROPERTIES, 12_000)


@pytest.mark.parametrize("search, timing", [("packed", "event"), ("packed-python", "event"), ("plain", "untimed")])
def test_a_search_frees_what_it_built(search: str, timing: str) -> None:
    """A search freezes what it built (gc.freeze), so a reference cycle left in it, or a reference the compiled
    loop forgets to release, would be kept for good: repeated searches must not grow the heap (both were
    found this way: an lru_cache of a bound method, 190 KB a search, and attribute names made afresh per
    skeleton in the C loop, 75 blocks over four searches)."""
    import gc
    import sys

    from ipvs_verify.engines.explicit import SEARCHES

    config = _cfg("K516", 1)

    def once() -> None:
        ex = SEARCHES[search](System(config, timing), PROPERTIES, 3_000)
        assert ex.n_states > 1000
        del ex
        gc.collect()

    once()
    once()  # caches, free lists and interned objects settle
    before = sys.getallocatedblocks()
    for _ in range(4):
        once()
    grown = sys.getallocatedblocks() - before
    assert grown < 20, f"{grown} memory blocks more after four searches"  # 1 when nothing is kept
