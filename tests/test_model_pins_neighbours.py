"""The node's neighbour entry for a destroyed pod's address on a bridge pod network (model/state.py Neigh),
pinned against net/core/neighbour.c and net/ipv4/arp.c of 6.1, and the untimed search's reductions of it
checked against the search without them.

What the kernel does with a packet for the address, by the entry's NUD state (neighbour.c
__neigh_event_send, neigh_timer_handler; arp.c arp_tbl defaults):
- none, or FAILED: a resolution starts (INCOMPLETE), the packet is queued; mcast_solicit 3 probes
  retrans_time 1 s apart, then FAILED and every queued packet gets ICMP host unreachable (3 s);
- REACHABLE: the packet goes out to the cached MAC (neigh_hh_output): nobody has it any more, it is lost;
- STALE: sent to the cached MAC too, and the entry goes DELAY (delay_first_probe_time 5 s), then PROBE
  (ucast_solicit 3 probes, 1 s apart), then FAILED: 8 s of lost packets, none queued;
- REACHABLE goes STALE reachable_time after its confirmation: uniform in [base/2, 3 base/2), base 30 s.
"""

from __future__ import annotations

import pytest

from ipvs_verify.engines.explicit import explore_plain
from ipvs_verify.engines.lasso import find_lasso
from ipvs_verify.model.config import Timing, make_config
from ipvs_verify.model.events import Ev
from ipvs_verify.model.state import Neigh, Plan, PodPhase, Sock, State
from ipvs_verify.model.system import Act, System
from ipvs_verify.properties.catalog import PROPERTIES
from ipvs_verify.runner.matrix import DEFAULT_SCOPE

HZ_BASE_REACHABLE, DELAY_PROBE, RETRANS, UCAST, MCAST = 30, 5, 1, 3, 3  # arp.c arp_tbl.parms (seconds, probes)


def test_timings_are_the_kernels() -> None:
    t = Timing()
    assert t.neigh_reachable_max == HZ_BASE_REACHABLE * 3 // 2  # neigh_rand_reach_time: below 3/2 of the base
    assert t.neigh_probe == DELAY_PROBE + UCAST * RETRANS  # DELAY, then the unicast probes
    assert t.neigh_resolve == MCAST * RETRANS  # __neigh_event_send starts probes at ucast_probes: mcast ones left


def _bridge(timing: str = "exact", mode: int = 0) -> System:
    return System(make_config("K516", overrides={"conn_reuse_mode": mode, "expire_nodest_conn": 0},
                              pod_network="bridge"), timing)


def _crashed(sys: System, neigh: Neigh) -> tuple[State, int]:
    """A first request served by a pod, which then crashes (endpoint still listed): (state, its index)."""
    st, ev = sys.step(sys.initial_states()[0], (Act.REQUEST, 0, Plan.SERVER_CLOSES))
    pod = next(e[2] for e in ev if e[0] == Ev.CONNECTED)
    st, _ = sys.step(st, (Act.CRASH_POD, pod, neigh))
    return st, pod


def _with(st: State, p: int, neigh: Neigh, timer: int) -> State:
    pods = list(st.pods)
    pods[p] = pods[p]._replace(neigh=neigh, timer=timer)
    return st._replace(pods=tuple(pods))


@pytest.mark.parametrize("before, timer, event, after, after_timer, waits", [
    (Neigh.NONE, -1, Ev.SYN_QUEUED, Neigh.INCOMPLETE, 3, True),
    (Neigh.LIVE, 30, Ev.SYN_LOST, Neigh.LIVE, 30, False),
    (Neigh.STALE, -1, Ev.SYN_LOST, Neigh.PROBING, 8, False),
    (Neigh.PROBING, 5, Ev.SYN_LOST, Neigh.PROBING, 5, False),
    (Neigh.INCOMPLETE, 2, Ev.SYN_QUEUED, Neigh.INCOMPLETE, 2, True),
])
def test_a_syn_meets_the_entry_as_the_kernel_has_it(before: Neigh, timer: int, event: Ev, after: Neigh,
                                                    after_timer: int, waits: bool) -> None:
    sys = _bridge()
    st, p = _crashed(sys, Neigh.LIVE)
    st = _with(st, p, before, timer)
    nxt, ev = sys.step(st, (Act.REQUEST, 0, Plan.SERVER_CLOSES))  # reuses the entry to the crashed pod (mode 0)
    kinds = [e[0] for e in ev]
    assert Ev.SYN_FORWARDED in kinds and event in kinds
    assert Ev.NO_ROUTE not in kinds and Ev.CONNECTED not in kinds
    assert (nxt.pods[p].neigh, nxt.pods[p].timer) == (after, after_timer)
    c = nxt.flows[0].client
    assert c.sock == Sock.SYN_SENT  # retransmits after its RTO in every case
    assert (c.pod == p) is waits  # only a queued SYN's socket hears of the resolution's failure


def test_a_pod_the_node_had_resolved_leaves_a_live_entry_and_one_it_had_not_leaves_none() -> None:
    sys = _bridge()
    live, p = _crashed(sys, Neigh.LIVE)
    assert live.pods[p].phase == PodPhase.DESTROYED
    assert (live.pods[p].neigh, live.pods[p].timer) == (Neigh.LIVE, 45)
    none, q = _crashed(sys, Neigh.NONE)
    assert (none.pods[q].neigh, none.pods[q].timer) == (Neigh.NONE, -1)
    # a timed search offers both; the routed network, or UDP, has no entry to track
    acts = sys.actions(sys.step(sys.initial_states()[0], (Act.REQUEST, 0, Plan.SERVER_CLOSES))[0])
    assert {a for a in acts if a[0] == Act.CRASH_POD and a[1] == p} == {(Act.CRASH_POD, p, Neigh.LIVE),
                                                                       (Act.CRASH_POD, p, Neigh.NONE)}
    routed = System(make_config("K516", pod_network="routed"), "exact")
    assert {a[2] for a in routed.actions(routed.initial_states()[0]) if a[0] == Act.CRASH_POD} == {Neigh.NONE}


def test_reachable_goes_stale_at_any_moment_and_at_the_latest_when_its_time_is_up() -> None:
    sys = _bridge()
    st, p = _crashed(sys, Neigh.LIVE)
    acts = sys.actions(st)
    assert (Act.NEIGH_STALE, p, 0) in acts and any(a[0] == Act.WAIT for a in acts)  # any moment, not due
    due = _with(st, p, Neigh.LIVE, 0)
    acts = sys.actions(due)
    assert (Act.NEIGH_STALE, p, 0) in acts and not any(a[0] == Act.WAIT for a in acts)  # time stops for it
    nxt, ev = sys.step(due, (Act.NEIGH_STALE, p, 0))
    assert (nxt.pods[p].neigh, nxt.pods[p].timer) == (Neigh.STALE, -1)
    assert (Ev.NEIGH_STALE, p, 0, 0) in ev
    # a STALE entry has no timer: nothing happens to it until a packet comes
    assert not any(a[1] == p and a[0] in (Act.NEIGH_STALE, Act.NEIGH_FAILED) for a in sys.actions(nxt))


@pytest.mark.parametrize("state, told", [(Neigh.PROBING, 0), (Neigh.INCOMPLETE, 1)])
def test_the_probes_end_fails_the_entry_and_tells_only_queued_syns(state: Neigh, told: int) -> None:
    sys = _bridge()
    st, p = _crashed(sys, Neigh.LIVE)
    st = _with(st, p, Neigh.STALE if state == Neigh.PROBING else Neigh.NONE, -1)
    st, _ = sys.step(st, (Act.REQUEST, 0, Plan.SERVER_CLOSES))
    assert st.pods[p].neigh == state
    st = _with(st, p, state, 0)
    st = st._replace(flows=tuple(f._replace(client=f.client._replace(timer=5)) for f in st.flows))
    assert (Act.NEIGH_FAILED, p, 0) in sys.actions(st)
    nxt, ev = sys.step(st, (Act.NEIGH_FAILED, p, 0))
    assert (nxt.pods[p].neigh, nxt.pods[p].timer) == (Neigh.NONE, -1)
    assert (Ev.NEIGH_FAILED, p, told, 0) in ev
    assert (Ev.NO_ROUTE in [e[0] for e in ev]) is bool(told)
    assert (nxt.flows[0].client.sock == Sock.FREE) is bool(told)  # EHOSTUNREACH, or still retransmitting


def test_untimed_a_live_entry_only_ends_and_a_pod_leaves_only_a_live_one() -> None:
    """Without clocks REACHABLE, STALE and PROBING are one: packets lost until the entry fails at some moment
    (then a packet resolves anew). So the untimed search destroys a pod with a live entry and ends it "freed"
    at any moment, which also gives the pod that left none (freed at once)."""
    sys = _bridge("untimed")
    st, p = _crashed(sys, Neigh.LIVE)
    assert [a for a in sys.actions(st) if a[0] == Act.NEIGH_STALE] == [(Act.NEIGH_STALE, p, 1)]
    nxt, _ = sys.step(st, (Act.NEIGH_STALE, p, 1))
    assert nxt.pods[p].neigh == Neigh.NONE
    first = sys.step(sys.initial_states()[0], (Act.REQUEST, 0, Plan.SERVER_CLOSES))[0]
    assert {a[2] for a in sys.actions(first) if a[0] == Act.CRASH_POD} == {Neigh.LIVE}


def _verdicts(sys: System) -> tuple[dict[str, object], int]:
    ex = explore_plain(sys, PROPERTIES, max_states=400_000)
    assert ex.complete
    out: dict[str, object] = {}
    for prop in PROPERTIES:
        if prop.kind == "safety":
            found = ex.violations.get(prop.name)
            out[prop.name] = None if found is None else len(ex.path_to(found.src)) + 1
        else:
            out[prop.name] = find_lasso(ex, prop) is not None
    return out, ex.n_states


def test_the_untimed_reduction_of_neighbour_entries_keeps_every_verdict() -> None:
    """DataPath._untimed_neighbours merges states that differ only in entries no later step can tell apart:
    the same violations, at the same shortest depth, and the same lassos as without it (DEFAULT_SCOPE)."""
    cfg = make_config("K46", overrides={"conn_reuse_mode": 0}, scope=DEFAULT_SCOPE, pod_network="bridge")
    reduced, plain = System(cfg, "untimed"), System(cfg, "untimed")
    plain.reduce_neighbours = False
    (verdicts, n), (plain_verdicts, plain_n) = _verdicts(reduced), _verdicts(plain)
    assert verdicts == plain_verdicts
    assert any(v is not None and v is not False for v in verdicts.values())  # something to keep
    assert n < plain_n  # and it did merge states


@pytest.mark.parametrize("tries, told, waits_again", [(2, 1, False), (0, 0, True)])
def test_a_syn_sent_as_the_resolution_fails_starts_the_next_one(tries: int, told: int, waits_again: bool) -> None:
    """B02-B08 on UML 6.1.176: the retransmission due with the failure reaches the entry once it is FAILED, so a
    new resolution runs; the socket hears of the old one only if it had queued an earlier SYN on it."""
    sys = _bridge()
    st, p = _crashed(sys, Neigh.NONE)
    st, _ = sys.step(st, (Act.REQUEST, 0, Plan.SERVER_CLOSES))
    c = st.flows[0].client
    st = _with(st, p, Neigh.INCOMPLETE, 0)
    st = st._replace(flows=(st.flows[0]._replace(client=c._replace(tries=tries, timer=1 << tries)),) + st.flows[1:])
    nxt, ev = sys.step(st, (Act.NEIGH_FAILED, p, 0))
    assert (nxt.pods[p].neigh, nxt.pods[p].timer) == (Neigh.INCOMPLETE, 3)
    assert (Ev.NEIGH_FAILED, p, told, 0) in ev
    assert (nxt.flows[0].client.pod == p) is waits_again
