"""The explicit engine's shortcuts never hide a violation.

The engine evaluates a property only on transitions that carry one of its trigger events, the lasso
search reuses the events recorded during the search, and untimed steps forget time only where a timer was
armed. All three are checked here against the plain definitions, on every transition of complete
explorations (untimed TCP cells; the event-timed ones are UDP cells, which are small: an event-timed TCP cell
costs 7 s here).
"""

from __future__ import annotations

from typing import Any

import pytest

from ipvs_verify.engines.explicit import explore
from ipvs_verify.model.actions import Act, Action
from ipvs_verify.model.state import Sock, State
from ipvs_verify.model.system import System
from ipvs_verify.properties.catalog import PROPERTIES, event_mask
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, CellSpec

CELLS = [("K41", 1, "untimed", "1.30", "tcp"), ("K46", 0, "untimed", "1.30", "tcp"),
         ("K46", 1, "untimed", "1.30", "tcp"), ("K516", 0, "untimed", "1.30", "tcp"),
         ("K59", 0, "untimed", "1.30", "tcp"), ("K46", 0, "event", "1.14.0", "udp"), ("K59", 1, "event", "1.30", "udp"),
         ("K516", 0, "untimed", "1.30", "tcp-persistent"), ("K46", 0, "untimed", "1.30", "tcp-bridge")]


def _spec(variant: str, mode: int, kube_proxy: str, protocol: str) -> CellSpec:
    """protocol is "tcp", "udp", "tcp-persistent" (sessionAffinity) or "tcp-bridge" (the bridge pod network)."""
    proto, _, extra = protocol.partition("-")
    return CellSpec(variant, kube_proxy, (("conn_reuse_mode", mode),), proto, 10800 if extra == "persistent" else 0,
                    pod_network="bridge" if extra == "bridge" else "routed")


@pytest.mark.parametrize("variant, mode, timing, kube_proxy, protocol", CELLS)
def test_trigger_masks_cover_every_true_predicate(variant: str, mode: int, timing: str, kube_proxy: str,
                                                  protocol: str) -> None:
    cfg = _spec(variant, mode, kube_proxy, protocol).config(DEFAULT_SCOPE)
    sys = System(cfg, timing)
    ex = explore(sys, (), max_states=60_000)
    assert ex.complete
    checks = [(p.name, p.violated, p.trigger_mask) for p in PROPERTIES if p.violated is not None]
    checks += [(f"{p.name}: {r.name}", r.holds, r.trigger_mask) for p in PROPERTIES for r in p.sometimes]
    true_somewhere: set[str] = set()
    for k in range(ex.n_edges):
        pre, a, post = ex.states[ex.edge_src[k]], ex.edge_act[k], ex.states[ex.edge_dst[k]]
        _, ev = sys.step(pre, a)
        assert ev == ex.edge_ev[k], f"recorded events differ from the step's at edge {k}"
        m = event_mask(ev)
        for name, pred, trig in checks:
            if pred(sys, pre, a, ev, post):
                true_somewhere.add(name)
                assert trig & m, f"{name} holds on {a} but its trigger mask misses events {ev}"
    assert true_somewhere, "no predicate was ever true: the check above proved nothing"


def _forgotten(st: State) -> State:
    """The plain definition of the untimed abstraction: every timer above 1 (armed) becomes 1."""
    def one(x: Any) -> Any:
        return x._replace(timer=1) if x is not None and x.timer > 1 else x
    flows = tuple(fl._replace(entries=tuple(one(e) for e in fl.entries), client=one(fl.client),
                              ct_timer=min(fl.ct_timer, 1)) for fl in st.flows)
    return st._replace(flows=flows, pods=tuple(one(p) for p in st.pods), templates=tuple(one(t) for t in st.templates),
                       check_timer=min(st.check_timer, 1), sync_timer=min(st.sync_timer, 1))


def _not_sent_now(st: State, a: Action) -> State:
    """The timed pre-state the untimed step stands for. A failed resolution tells a socket waiting on it unless its
    SYN left at that very instant (DataPath._neigh_failed, a timed-only rule): the untimed placeholder timer 1 is
    that instant for a first SYN, so the concrete state is one whose SYN left earlier (timer 0: it was due)."""
    if a[0] != Act.NEIGH_FAILED:
        return st
    flows = tuple(fl._replace(client=fl.client._replace(timer=0))
                  if fl.client.sock == Sock.SYN_SENT and fl.client.pod == a[1] else fl for fl in st.flows)
    return st._replace(flows=flows)


@pytest.mark.parametrize("variant, mode, timing, kube_proxy, protocol", [c for c in CELLS if c[2] == "untimed"])
def test_untimed_steps_forget_time_as_defined(variant: str, mode: int, timing: str, kube_proxy: str,
                                              protocol: str) -> None:
    """System._forget_time rebuilds only the parts holding a timer to forget: on every transition of the
    complete untimed search it must give what the plain definition gives on the timed step."""
    cfg = _spec(variant, mode, kube_proxy, protocol).config(DEFAULT_SCOPE)
    untimed, timed = System(cfg, "untimed"), System(cfg, "event")
    ex = explore(untimed, (), max_states=60_000)
    assert ex.complete
    armed = 0
    for k in range(ex.n_edges):
        pre, a, post = ex.states[ex.edge_src[k]], ex.edge_act[k], ex.states[ex.edge_dst[k]]
        raw, _ = timed.step(_not_sent_now(pre, a), a)
        if untimed.reduce_neighbours:  # the untimed search's other reduction, tested on its own (test_neighbours)
            raw = untimed._untimed_neighbours(raw)
        assert _forgotten(raw) == post, f"edge {k} ({a}): forgetting time differs from its definition"
        armed += raw != post
    assert armed, "no step armed a timer: the check above proved nothing"
