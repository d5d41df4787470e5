"""The properties' own predicates, pinned against what each property says it means (issue 19).

The engines agree on every verdict because they all call these predicates; a wrong predicate that every
engine shares (a flag test inverted, the wrong event field read, a "sometimes" check that can never hold)
passes every agreement test. Here each predicate is evaluated on transitions built by hand, over the whole
finite domain of what it reads (the SF_* flags of a forwarded SYN, the reasons of a broken connection, a
dest's weight and status, a pod's phase), and compared with the property's sentence in the catalog
(`ipvs-verify properties`), not with the model's output. The events' fields are as model/events.py documents
them.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from ipvs_verify.model.config import Config
from ipvs_verify.model.events import (
    SF_DEST_DELETED,
    SF_DEST_W0,
    SF_POD_DEAD,
    SF_RETRANSMIT,
    SF_REUSED,
    BrokenWhy,
    Ev,
    Event,
)
from ipvs_verify.model.state import Dest, DestStatus, Entry, Flow, Pod, PodPhase, Sock, State
from ipvs_verify.model.system import Act, Action, System
from ipvs_verify.model.tcp_states import TcpState
from ipvs_verify.properties.catalog import (
    ALWAYS,
    BY_NAME,
    PROPERTIES,
    Property,
    event_mask,
    missing_needs,
    resolve,
    triggers,
)
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, CellSpec

FLAGS = (SF_REUSED, SF_POD_DEAD, SF_DEST_W0, SF_DEST_DELETED, SF_RETRANSMIT)
ALL_FLAGS = [sum(c) for n in range(len(FLAGS) + 1) for c in itertools.combinations(FLAGS, n)]
NOP: Action = (Act.WAIT, 0, 0)


def _config(protocol: str = "tcp") -> Config:
    return CellSpec("K516", "1.30", (("conn_reuse_mode", 1),), protocol=protocol).config(DEFAULT_SCOPE)


SYS = System(_config())
BASE = SYS.initial_states()[0]


def state(weights: tuple[int, ...] = (1, 1, 0), statuses: tuple[DestStatus, ...] | None = None,
          phases: tuple[PodPhase, ...] | None = None, listed: tuple[bool, ...] | None = None,
          order: tuple[int, ...] = (1, 0), flows: tuple[Flow, ...] | None = None) -> State:
    n = len(BASE.pods)
    statuses = statuses or tuple(DestStatus.LINKED if i in order else DestStatus.ABSENT for i in range(n))
    phases = phases or tuple(PodPhase.RUNNING if i in order else PodPhase.ABSENT for i in range(n))
    listed = listed or tuple(p == PodPhase.RUNNING for p in phases)
    return BASE._replace(dests=tuple(Dest(s, w) for s, w in zip(statuses, weights, strict=True)),
                         pods=tuple(Pod(ph, 0, li) for ph, li in zip(phases, listed, strict=True)),
                         order=order, flows=BASE.flows if flows is None else flows)


def violated(prop: Property, ev: tuple[Event, ...], pre: State = BASE, post: State = BASE, a: Action = NOP,
             sys: System = SYS) -> bool:
    assert prop.violated is not None
    got = prop.violated(sys, pre, a, ev, post)
    if got:  # the engines evaluate `violated` only on transitions that carry one of its trigger events
        assert event_mask(ev) & prop.trigger_mask, (prop.name, ev)
    return got


# ------------------------------------------------------------------ the forwarded-packet safety properties
@pytest.mark.parametrize("flags", ALL_FLAGS)
def test_a_forwarded_syn_against_each_property_on_every_flag_combination(flags: int) -> None:
    """1: to a destroyed pod AND quiesced (weight 0 or deleted); 2: quiesced; 9: destroyed and NOT quiesced.
    Whether the SYN came through an old entry (SF_REUSED) or is a retransmission changes none of the three."""
    dead, quiesced = bool(flags & SF_POD_DEAD), bool(flags & (SF_DEST_W0 | SF_DEST_DELETED))
    ev: tuple[Event, ...] = ((Ev.SYN_FORWARDED, 0, 1, flags),)
    assert violated(BY_NAME["no-new-conn-to-destroyed-pod"], ev) == (dead and quiesced)
    assert violated(BY_NAME["no-new-conn-to-quiesced-dest"], ev) == quiesced
    assert violated(BY_NAME["control-plane-race"], ev) == (dead and not quiesced)
    # the same flags on a datagram: only property 10 reads those
    dgram: tuple[Event, ...] = ((Ev.DGRAM_FORWARDED, 0, 1, flags),)
    assert violated(BY_NAME["no-datagram-to-destroyed-pod"], dgram) == (dead and quiesced)
    for name in ("no-new-conn-to-destroyed-pod", "no-new-conn-to-quiesced-dest", "control-plane-race"):
        assert not violated(BY_NAME[name], dgram)
    assert not violated(BY_NAME["no-datagram-to-destroyed-pod"], ev)


def test_the_flags_are_read_from_the_flags_field_of_any_event_of_the_transition() -> None:
    """The pod field (e[2]) is not the flags; a violating SYN anywhere in the transition's events counts."""
    p1 = BY_NAME["no-new-conn-to-destroyed-pod"]
    assert not violated(p1, ((Ev.SYN_FORWARDED, 0, SF_POD_DEAD | SF_DEST_W0, 0),))
    ev = ((Ev.REUSE_HIT, 0, int(TcpState.TIME_WAIT), 1), (Ev.SYN_FORWARDED, 0, 1, SF_POD_DEAD | SF_DEST_W0))
    assert violated(p1, ev)
    assert not violated(p1, ((Ev.PKT_FORWARDED, 0, 1, SF_POD_DEAD | SF_DEST_W0),))


def test_a_dropped_syn_violates_3_whatever_its_reason() -> None:
    p3 = BY_NAME["no-syn-dropped-on-reuse"]
    for why in (0, 1):
        assert violated(p3, ((Ev.SYN_DROPPED, 0, why, 0),))
    assert not violated(p3, ((Ev.DGRAM_DROPPED, 0, 0, 0), (Ev.SYN_FORWARDED, 0, 1, SF_REUSED)))
    assert not violated(p3, ())


@pytest.mark.parametrize("dest,pod", [(0, 0), (1, 1), (0, 1), (1, 0), (2, 1)])
def test_an_established_connections_packet_stays_on_its_pod(dest: int, pod: int) -> None:
    """7: PKT_FORWARDED (flow, dest, pod the connection was established with) violates iff they differ."""
    assert violated(BY_NAME["established-connections-stay-put"], ((Ev.PKT_FORWARDED, 0, dest, pod),)) == (dest != pod)


def test_7_reads_only_forwarded_packets() -> None:
    """A SYN's (flow, pod, flags) beside a packet that stays on its pod is no violation of 7."""
    p7 = BY_NAME["established-connections-stay-put"]
    assert not violated(p7, ((Ev.SYN_FORWARDED, 0, 1, 0), (Ev.CONNECTED, 0, 1, 0), (Ev.PKT_FORWARDED, 0, 1, 1)))
    assert not violated(p7, ((Ev.PKT_FORWARDED, 0, 1, 1), (Ev.BROKEN, 0, int(BrokenWhy.POD_GONE), 1)))


def test_a_killed_conntrack_violates_8_only_when_it_belonged_to_a_newer_connection() -> None:
    p8 = BY_NAME["live-conntrack-never-killed"]
    assert violated(p8, ((Ev.CT_KILLED, 0, 1, 0),))
    assert not violated(p8, ((Ev.CT_KILLED, 0, 0, 0),))
    assert not violated(p8, ((Ev.ENTRY_EXPIRED, 0, 1, 0),))
    assert not violated(p8, ((Ev.SYN_FORWARDED, 0, 1, 0), (Ev.CONNECTED, 0, 1, 0), (Ev.CT_KILLED, 0, 0, 0)))


# ------------------------------------------------------------------ graceful termination (property 4)
@pytest.mark.parametrize("phase", [PodPhase.RUNNING, PodPhase.TERMINATING, PodPhase.DESTROYED])
@pytest.mark.parametrize("kind", [Ev.BROKEN, Ev.ORPHANED])
@pytest.mark.parametrize("why", list(BrokenWhy))
def test_a_broken_or_orphaned_connection_violates_4_when_the_dest_deletion_broke_a_live_pods(
        phase: PodPhase, kind: Ev, why: BrokenWhy) -> None:
    """Broken by the server-status block (DEST_DELETED) while its pod runs or terminates: violated. A pod that
    was destroyed under it, or a RST from the node, is not kube-proxy's doing."""
    pre = state(phases=(phase, PodPhase.RUNNING, PodPhase.ABSENT))
    want = why == BrokenWhy.DEST_DELETED and phase != PodPhase.DESTROYED
    assert violated(BY_NAME["graceful-termination-kept"], ((kind, 0, int(why), 0),), pre=pre) == want


def test_4_reads_the_pod_of_the_broken_connection() -> None:
    """BROKEN / ORPHANED (flow, BrokenWhy, pod): the pod is e[3], here pod-b, while pod-a is destroyed."""
    p4 = BY_NAME["graceful-termination-kept"]
    pre = state(phases=(PodPhase.DESTROYED, PodPhase.RUNNING, PodPhase.ABSENT))
    for kind in (Ev.BROKEN, Ev.ORPHANED):
        assert violated(p4, ((kind, 0, int(BrokenWhy.DEST_DELETED), 1),), pre=pre)
    pre = state(phases=(PodPhase.RUNNING, PodPhase.DESTROYED, PodPhase.ABSENT))
    assert not violated(p4, ((Ev.BROKEN, 0, int(BrokenWhy.DEST_DELETED), 1),), pre=pre)


def test_deleting_a_real_server_violates_4_only_with_established_connections_to_a_live_pod() -> None:
    p4 = BY_NAME["graceful-termination-kept"]
    for n in range(3):  # DEST_DELETED (pod, established connections to it whose pod still runs)
        assert violated(p4, ((Ev.DEST_DELETED, 0, n, 0),)) == (n > 0)
    assert not violated(p4, ((Ev.DEST_QUIESCED, 0, 2, 0),))


# ------------------------------------------------------------------ refusals (property 11)
@pytest.mark.parametrize("weights", list(itertools.product((0, 1), repeat=3)))
def test_a_refusal_violates_11_iff_a_real_server_in_the_service_has_weight(weights: tuple[int, int, int]) -> None:
    """Only the service's list counts (order): pod-c's dest outside it, with weight, makes no refusal wrong."""
    post = state(weights=weights, order=(1, 0))
    want = weights[0] > 0 or weights[1] > 0
    assert violated(BY_NAME["no-refusal-with-a-usable-dest"], ((Ev.REFUSED, 0, 0, 0),), post=post) == want
    assert not violated(BY_NAME["no-refusal-with-a-usable-dest"], ((Ev.SYN_FORWARDED, 0, 1, 0),), post=post)
    assert not violated(BY_NAME["no-refusal-with-a-usable-dest"], ((Ev.CONNECTED, 0, 1, 0),), post=post)


# ------------------------------------------------------------------ "sometimes" checks
def reach(prop: str, check: str, ev: tuple[Event, ...] = (), pre: State = BASE, post: State = BASE,
          a: Action = NOP, sys: System = SYS) -> bool:
    r = next(r for r in BY_NAME[prop].sometimes if r.name == check)
    got = r.holds(sys, pre, a, ev, post)
    if got:
        assert event_mask(ev) & r.trigger_mask, (prop, check)
    return got


def _conn(dest: int, state_: TcpState = TcpState.ESTABLISHED) -> Flow:
    e = Entry(state_, dest, True, True, 900, 0)
    return BASE.flows[0]._replace(entries=(e,))


def test_weight_zero_with_connections_needs_all_three() -> None:
    """2's check: a LINKED dest at weight 0 with an entry (any state counts: InActConn)."""
    name, check = "no-new-conn-to-quiesced-dest", "a dest has weight 0 while it has connections"
    for w, linked, has in itertools.product((0, 1), (True, False), (True, False)):
        statuses = (DestStatus.LINKED if linked else DestStatus.TRASH, DestStatus.LINKED, DestStatus.ABSENT)
        post = state(weights=(w, 1, 0), statuses=statuses,
                     flows=(_conn(0, TcpState.TIME_WAIT),) if has else (BASE.flows[0]._replace(entries=()),))
        assert reach(name, check, post=post) == (w == 0 and linked and has)


@pytest.mark.parametrize("st", list(TcpState))
def test_3s_check_is_a_syn_meeting_a_time_wait_entry(st: TcpState) -> None:
    ev = ((Ev.REUSE_HIT, 0, int(st), 1),)
    assert reach("no-syn-dropped-on-reuse", "a SYN finds an entry in TIME_WAIT", ev) == (st == TcpState.TIME_WAIT)


@pytest.mark.parametrize("w", [0, 1])
def test_the_reuse_checks_read_the_hit_entrys_dest(w: int) -> None:
    """REUSE_HIT (flow, entry state, entry dest): the weight read is the dest's, e[3], in the state before."""
    pre = state(weights=(1, w, 0))
    ev = ((Ev.REUSE_HIT, 0, int(TcpState.TIME_WAIT), 1),)
    for name in ("no-new-conn-to-destroyed-pod", "no-new-conn-to-quiesced-dest"):
        assert reach(name, "a SYN finds an entry whose dest has weight 0", ev, pre=pre) == (w == 0)
        # only REUSE_HIT's fields: a fresh SYN's (flow, pod, flags 0) beside pod-a at weight 0 is no hit
        fresh = ((Ev.SYN_FORWARDED, 0, 1, 0), (Ev.CONNECTED, 0, 1, 0))
        assert not reach(name, "a SYN finds an entry whose dest has weight 0", fresh, pre=state(weights=(0, 1, 0)))
        resched = ((Ev.RESCHEDULED, 0, 1, 0), (Ev.ENTRY_EXPIRED, 0, 1, 0))  # (flow, old dest): no REUSE_HIT
        assert not reach(name, "a SYN finds an entry whose dest has weight 0", resched, pre=state(weights=(0, 1, 0)))
    assert not reach("no-syn-dropped-on-reuse", "a SYN finds an entry in TIME_WAIT",
                     ((Ev.SYN_FORWARDED, 0, int(TcpState.TIME_WAIT), 1),))


@pytest.mark.parametrize("phase", list(PodPhase))
@pytest.mark.parametrize("status", list(DestStatus))
def test_a_destroyed_pod_whose_real_server_is_still_linked(phase: PodPhase, status: DestStatus) -> None:
    post = state(statuses=(status, DestStatus.LINKED, DestStatus.ABSENT), phases=(phase, PodPhase.RUNNING,
                 PodPhase.ABSENT))
    want = phase == PodPhase.DESTROYED and status == DestStatus.LINKED
    assert reach("no-new-conn-to-destroyed-pod", "a pod is destroyed while its real server is still in IPVS",
                 post=post) == want


def test_5s_check_is_a_gone_endpoint_whose_real_server_has_connections() -> None:
    check = "an endpoint is gone while its real server still has connections"
    for listed, has in itertools.product((True, False), (True, False)):
        post = state(listed=(listed, True, False),
                     flows=(_conn(0, TcpState.CLOSE_WAIT),) if has else (BASE.flows[0]._replace(entries=()),))
        assert reach("quiesced-dest-eventually-deleted", check, post=post) == (not listed and has)


def test_6s_check_is_a_scale_out_pod_with_a_usable_real_server() -> None:
    new = len(SYS.scope.pods)
    dests, pods = list(BASE.dests), list(BASE.pods)
    dests[new], pods[new] = Dest(DestStatus.LINKED, 1), Pod(PodPhase.RUNNING, 0, True)
    post = BASE._replace(dests=tuple(dests), pods=tuple(pods))
    assert reach("new-pods-get-new-connections", "a scale-out pod gets a real server", post=post)
    assert not reach("new-pods-get-new-connections", "a scale-out pod gets a real server", post=state())


def test_7s_check_is_any_forwarded_packet() -> None:
    check = "a packet of an established connection is forwarded"
    assert reach("established-connections-stay-put", check, ((Ev.PKT_FORWARDED, 0, 1, 1),))
    assert not reach("established-connections-stay-put", check, ((Ev.SYN_FORWARDED, 0, 1, 0),))


def test_an_older_entrys_expiry_is_one_whose_key_a_newer_entry_shares() -> None:
    name, check = "live-conntrack-never-killed", "an older entry expires while a newer one shares its key"
    ev = ((Ev.ENTRY_EXPIRED, 0, 1, 0),)
    assert reach(name, check, ev, a=(Act.EXPIRE, 0, 1))
    assert not reach(name, check, ev, a=(Act.EXPIRE, 0, 0))  # the newest entry itself
    assert not reach(name, check, ev, a=(Act.CLIENT_TIMER, 0, 1))


def test_a_crash_is_the_control_plane_races_check() -> None:
    check = "a pod crashes while its real server has weight 1"
    assert reach("control-plane-race", check, ((Ev.POD_CRASHED, 1, 0, 0),), a=(Act.CRASH_POD, 1, 0))
    assert not reach("control-plane-race", check, ((Ev.POD_DELETED, 1, 0, 0),), a=(Act.DELETE_POD, 1, 0))


@pytest.mark.parametrize("w,status", list(itertools.product((0, 1), (DestStatus.LINKED, DestStatus.TRASH))))
def test_a_datagram_meets_a_removed_dest(w: int, status: DestStatus) -> None:
    name, check = "no-datagram-to-destroyed-pod", "a datagram arrives on an entry whose dest has weight 0 or is deleted"
    pre = state(weights=(1, w, 0), statuses=(DestStatus.LINKED, status, DestStatus.ABSENT), flows=(_conn(1),))
    ev = ((Ev.DGRAM_FORWARDED, 0, 1, 0),)
    assert reach(name, check, ev, pre=pre, a=(Act.DATAGRAM, 0, 0)) == (w == 0 or status == DestStatus.TRASH)
    assert not reach(name, check, ev, pre=pre, a=(Act.REQUEST, 0, 0))
    no_entry = pre._replace(flows=(BASE.flows[0]._replace(entries=()),))
    assert not reach(name, check, ev, pre=no_entry, a=(Act.DATAGRAM, 0, 0))
    for kind in Act:  # only a datagram's arrival
        want = kind == Act.DATAGRAM and (w == 0 or status == DestStatus.TRASH)
        assert reach(name, check, ev, pre=pre, a=(kind, 0, 0)) == want
    # the flow is the action's (a[1]): flow 1 has the entry, flow 0 none
    two = pre._replace(flows=(BASE.flows[0]._replace(entries=()), _conn(1)))
    assert reach(name, check, ev, pre=two, a=(Act.DATAGRAM, 1, 0)) == (w == 0 or status == DestStatus.TRASH)
    assert not reach(name, check, ev, pre=two, a=(Act.DATAGRAM, 0, 1))
    # the flow's newest entry is the one the datagram meets (ip_vs_conn_in_get: the head of its chain)
    older = Entry(TcpState.NONE, 0, True, False, 300, 0)
    newest_first = pre._replace(flows=(_conn(1)._replace(entries=(_conn(1).entries[0], older)),))
    assert reach(name, check, ev, pre=newest_first, a=(Act.DATAGRAM, 0, 0)) == (w == 0 or status == DestStatus.TRASH)


def test_scheduling_beside_a_weight_zero_dest() -> None:
    """11's check: a fresh scheduling (not through an old entry) or a refusal, while a listed dest has weight 0."""
    name, check = "no-refusal-with-a-usable-dest", "a new connection is scheduled while a real server has weight 0"
    w0, full = state(weights=(0, 1, 0)), state(weights=(1, 1, 0))
    outside = state(weights=(1, 1, 0), order=(1, 0))._replace(dests=(Dest(DestStatus.LINKED, 1),
                                                                      Dest(DestStatus.LINKED, 1),
                                                                      Dest(DestStatus.LINKED, 0)))
    for ev, fresh in (
        (((Ev.SYN_FORWARDED, 0, 1, 0),), True), (((Ev.SYN_FORWARDED, 0, 1, SF_REUSED),), False),
        (((Ev.SYN_FORWARDED, 0, 1, SF_POD_DEAD | SF_DEST_W0),), True),
        (((Ev.SYN_FORWARDED, 0, 1, SF_REUSED | SF_DEST_W0),), False),
        (((Ev.DGRAM_FORWARDED, 0, 1, 0),), True), (((Ev.DGRAM_FORWARDED, 0, 1, SF_REUSED),), False),
        (((Ev.REFUSED, 0, 0, 0),), True), (((Ev.CONNECTED, 0, 1, 0),), False),
    ):
        assert reach(name, check, ev, pre=w0) == fresh, ev
        assert not reach(name, check, ev, pre=full)
        assert not reach(name, check, ev, pre=outside)  # weight 0 outside the service's list


def test_terminating_pod_with_an_established_connection() -> None:
    name, check = "graceful-termination-kept", "an established connection to a terminating pod exists"
    for sock, phase in itertools.product(list(Sock), list(PodPhase)):
        flow = _conn(1)._replace(client=BASE.flows[0].client._replace(sock=sock, pod=1))
        post = state(phases=(PodPhase.RUNNING, phase, PodPhase.ABSENT), flows=(flow,))
        assert reach(name, check, post=post) == (sock == Sock.ESTABLISHED and phase == PodPhase.TERMINATING)


# ------------------------------------------------------------------ liveness: pending, discharge, fairness
@pytest.mark.parametrize("phase", list(PodPhase))
@pytest.mark.parametrize("listed", [True, False])
@pytest.mark.parametrize("status", list(DestStatus))
def test_5_is_pending_while_a_gone_endpoints_real_server_stays(phase: PodPhase, listed: bool,
                                                                status: DestStatus) -> None:
    live = BY_NAME["quiesced-dest-eventually-deleted"].liveness
    assert live is not None
    st = state(statuses=(status, DestStatus.LINKED, DestStatus.ABSENT), phases=(phase, PodPhase.RUNNING,
               PodPhase.ABSENT), listed=(listed, True, False))
    want = phase != PodPhase.ABSENT and not listed and status == DestStatus.LINKED
    assert live.pending(SYS, st, 0) == want


@pytest.mark.parametrize("w", [0, 1])
@pytest.mark.parametrize("phase", list(PodPhase))
@pytest.mark.parametrize("status", list(DestStatus))
def test_6_is_pending_for_a_serving_scale_out_pod_only(w: int, phase: PodPhase, status: DestStatus) -> None:
    live = BY_NAME["new-pods-get-new-connections"].liveness
    assert live is not None and live.discharges is not None
    new = len(SYS.scope.pods)  # the first scale-out pod's index
    assert new < len(BASE.pods)
    dests, pods = list(BASE.dests), list(BASE.pods)
    dests[new], pods[new] = Dest(status, w), Pod(phase, 0, True)
    st = BASE._replace(dests=tuple(dests), pods=tuple(pods))
    want = phase == PodPhase.RUNNING and status == DestStatus.LINKED and w > 0
    assert live.pending(SYS, st, new) == want
    assert not live.pending(SYS, BASE._replace(dests=(Dest(DestStatus.LINKED, 1),) * len(BASE.dests)), 0)


def test_6_is_discharged_by_a_connection_or_an_answer_from_that_pod() -> None:
    live = BY_NAME["new-pods-get-new-connections"].liveness
    assert live is not None and live.discharges is not None
    for kind in (Ev.CONNECTED, Ev.ANSWERED):
        assert live.discharges(((kind, 0, 2, 0),), 2)
        assert not live.discharges(((kind, 0, 1, 0),), 2)
        assert not live.discharges(((kind, 0, 3, 0),), 2)  # another pod's, after it in the list
    assert not live.discharges(((Ev.SYN_FORWARDED, 0, 2, 0),), 2)


def test_the_fairness_conditions() -> None:
    l5, l6 = BY_NAME["quiesced-dest-eventually-deleted"].liveness, BY_NAME["new-pods-get-new-connections"].liveness
    assert l5 is not None and l6 is not None
    time_passes = dict(l5.must_happen)["time passes"]
    untimed = System(_config(), "untimed")
    for kind in Act:
        a = (kind, 0, 0)
        assert time_passes(SYS, BASE, a, (), BASE) == (kind == Act.WAIT)
        assert time_passes(untimed, BASE, a, (), BASE) == (kind in (Act.WAIT, Act.CHECK))
    connects = dict(l6.must_happen)["a client connects"]
    for kind in Act:
        want = kind in (Act.REQUEST, Act.CONNECT, Act.DATAGRAM)
        assert connects(SYS, BASE, (kind, 0, 0), (), BASE) == want
    assert connects(SYS, BASE, (Act.CLIENT_TIMER, 0, 0), ((Ev.SYN_FORWARDED, 0, 1, 0),), BASE)
    no_conn = dict(l5.justice)["no client holds a connection open"]
    stale = dict(l5.justice)["the endpoints controller removes crashed pods' endpoints"]
    for sock in Sock:
        flow = BASE.flows[0]._replace(client=BASE.flows[0].client._replace(sock=sock))
        assert no_conn(SYS, BASE._replace(flows=(flow,))) == (sock != Sock.ESTABLISHED)
    for phase, listed in itertools.product(list(PodPhase), (True, False)):
        st = state(phases=(phase, PodPhase.RUNNING, PodPhase.ABSENT), listed=(listed, True, False))
        assert stale(SYS, st) == (not (phase == PodPhase.DESTROYED and listed))


# ------------------------------------------------------------------ the catalog as data
def test_numbers_names_kinds_and_trigger_masks() -> None:
    assert [p.number for p in PROPERTIES] == list(range(1, 13))
    assert len(BY_NAME) == len(PROPERTIES)
    assert {p.name for p in PROPERTIES if p.kind == "liveness"} == {"quiesced-dest-eventually-deleted",
                                                                     "new-pods-get-new-connections"}
    for p in PROPERTIES:
        assert (p.violated is None) == (p.kind == "liveness") == (p.liveness is not None), p.name
        assert p.sometimes, p.name  # no property without a vacuity check
    assert triggers(Ev.SYN_FORWARDED, Ev.REFUSED) == (1 << Ev.SYN_FORWARDED) | (1 << Ev.REFUSED)
    assert triggers() == 0
    assert event_mask(()) == ALWAYS
    assert event_mask(((Ev.CT_KILLED, 0, 1, 0), (Ev.REFUSED, 0, 0, 0))) == ALWAYS | triggers(Ev.CT_KILLED, Ev.REFUSED)


def test_needs_and_resolve() -> None:
    tcp, udp = _config().scope, _config("udp").scope
    assert missing_needs(BY_NAME["no-datagram-to-destroyed-pod"], tcp) == ["udp"]
    assert missing_needs(BY_NAME["no-datagram-to-destroyed-pod"], udp) == []
    assert missing_needs(BY_NAME["graceful-termination-kept"], udp) == ["tcp", "long_lived"]
    assert missing_needs(BY_NAME["no-refusal-with-a-usable-dest"], udp) == []
    # a protocol read from a file is an equal string, not the same object as the literal
    parsed = dataclasses.replace(tcp, protocol="".join(["t", "c", "p"]))
    assert missing_needs(BY_NAME["graceful-termination-kept"], parsed) == []
    assert missing_needs(BY_NAME["no-datagram-to-destroyed-pod"], parsed) == ["udp"]
    assert resolve(None) == PROPERTIES and resolve([]) == PROPERTIES
    assert resolve(["3", " control-plane-race "]) == (BY_NAME["no-syn-dropped-on-reuse"], BY_NAME["control-plane-race"])
    with pytest.raises(KeyError, match="unknown property 'frob'"):
        resolve(["frob"])
    with pytest.raises(KeyError, match="unknown property '13'"):
        resolve(["13"])
    # the read/delete window's property needs the scope that has the window (the SMT engines' has not)
    window = BY_NAME["no-packet-in-delete-window"]
    assert missing_needs(window, tcp) == ([] if tcp.kp_window else ["kp_window"])
    assert missing_needs(window, dataclasses.replace(tcp, kp_window=False)) == ["kp_window"]
    assert missing_needs(window, dataclasses.replace(udp, kp_window=True)) == []
