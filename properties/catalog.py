"""The properties the engines check, as named data.

A safety property is a predicate on one transition (pre-state, action, events, post-state): a violating
transition ends a counterexample. A liveness property names, per pod, the states in which an obligation
is pending and unmet, the transitions that would discharge it, and the fairness a cycle must satisfy;
a violation is a lasso: a reachable cycle inside the pending states that is fair and never discharges.
Every property carries "sometimes" reachability checks: if one is never reached the verdict is
"vacuous", never "holds".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ipvs_verify.model.config import Config, Scope
from ipvs_verify.model.events import SF_DEST_DELETED, SF_DEST_W0, SF_POD_DEAD, SF_REUSED, BrokenWhy, Ev, Event
from ipvs_verify.model.state import DestStatus, PodPhase, Sock, State, counters
from ipvs_verify.model.system import Act, Action, System
from ipvs_verify.model.tcp_states import TcpState

EdgePred = Callable[[System, State, Action, tuple[Event, ...], State], bool]
StatePred = Callable[[System, State, int], bool]  # (system, state, pod) -> bool


# Trigger masks: a predicate is evaluated only on transitions carrying one of its trigger events
# (bit = 1 << Ev kind). ALWAYS, set on every transition, is for predicates over states or actions.
ALWAYS = 1 << 62


def triggers(*kinds: Ev) -> int:
    mask = 0
    for k in kinds:
        mask |= 1 << k
    return mask


def event_mask(ev: tuple[Event, ...]) -> int:
    """The bits of a transition that trigger masks meet: ALWAYS, and one per kind of event it carries."""
    mask = ALWAYS
    for e in ev:
        mask |= 1 << e[0]
    return mask


@dataclass(frozen=True)
class Reach:
    """A "sometimes" check: some reachable transition satisfies it."""

    name: str
    holds: EdgePred
    trigger_mask: int = ALWAYS


@dataclass(frozen=True)
class Liveness:
    pending: StatePred  # obligation for this pod pending and unmet in this state
    # a transition (given its events and the pod) that meets the obligation: excluded from cycles
    discharges: Callable[[tuple[Event, ...], int], bool] | None = None
    must_happen: tuple[tuple[str, EdgePred], ...] = ()  # fairness: each happens on the cycle
    justice: tuple[tuple[str, Callable[[System, State], bool]], ...] = ()  # each holds somewhere on it


@dataclass(frozen=True)
class Property:
    number: int
    name: str
    kind: str  # "safety" | "liveness"
    meaning: str
    stands_for: str
    sometimes: tuple[Reach, ...]
    violated: EdgePred | None = None
    liveness: Liveness | None = None
    needs: tuple[str, ...] = field(default=())  # scope features it is about (see `applies`)
    trigger_mask: int = ALWAYS  # `violated` can only hold on a transition with one of these events


def _has(ev: tuple[Event, ...], kind: Ev) -> bool:
    for e in ev:
        if e[0] == kind:
            return True
    return False


# The edge predicates below read their event kind from a closure, not through the Ev class: they run on every
# transition the plain search makes, and an Enum member read through its class costs 80 ns in CPython 3.11.
def _syn_forwarded(pred: Callable[[int], bool]) -> EdgePred:
    kind = Ev.SYN_FORWARDED
    return lambda sys, pre, a, ev, post: any(e[0] == kind and pred(e[3]) for e in ev)


_QUIESCED = SF_DEST_W0 | SF_DEST_DELETED


def _dgram_forwarded(pred: Callable[[int], bool]) -> EdgePred:
    kind = Ev.DGRAM_FORWARDED
    return lambda sys, pre, a, ev, post: any(e[0] == kind and pred(e[3]) for e in ev)


def _datagram_meets_removed_dest(sys: System, pre: State, a: Action, ev: tuple[Event, ...], post: State) -> bool:
    """A datagram arrives on a flow whose newest entry points to a dest kube-proxy quiesced or deleted."""
    if a[0] != Act.DATAGRAM or not pre.flows[a[1]].entries:
        return False
    d = pre.dests[pre.flows[a[1]].entries[0].dest]
    return d.weight == 0 or d.status == DestStatus.TRASH


def _scheduled_beside_weight0(sys: System, pre: State, a: Action, ev: tuple[Event, ...], post: State) -> bool:
    """A new entry is scheduled (or refused) while a real server in the service's list has weight 0."""
    fresh = any((e[0] in (Ev.SYN_FORWARDED, Ev.DGRAM_FORWARDED) and not e[3] & SF_REUSED) or e[0] == Ev.REFUSED
                for e in ev)
    return fresh and any(pre.dests[d].weight == 0 for d in pre.order)


def _refused_while_usable(sys: System, pre: State, a: Action, ev: tuple[Event, ...], post: State) -> bool:
    return any(e[0] == Ev.REFUSED for e in ev) and any(post.dests[d].weight > 0 for d in post.order)


def _reuse_hit(pred: Callable[[State, int, int], bool]) -> EdgePred:
    kind = Ev.REUSE_HIT
    return lambda sys, pre, a, ev, post: any(e[0] == kind and pred(pre, e[2], e[3]) for e in ev)


def _state(pred: Callable[[System, State], bool]) -> EdgePred:
    return lambda sys, pre, a, ev, post: pred(sys, post)


def _dest_w0_with_conns(sys: System, st: State) -> bool:
    return any(
        d.status == DestStatus.LINKED and d.weight == 0 and sum(counters(st, p)) > 0 for p, d in enumerate(st.dests)
    )


def _endpoint_gone_dest_kept(sys: System, st: State, p: int) -> bool:
    pod = st.pods[p]
    return pod.phase != PodPhase.ABSENT and not pod.listed and st.dests[p].status == DestStatus.LINKED


def _new_pod_serving(sys: System, st: State, p: int) -> bool:
    # a scale-out pod, running, with a usable real server
    return (
        p >= len(sys.scope.pods) and st.pods[p].phase == PodPhase.RUNNING
        and st.dests[p].status == DestStatus.LINKED and st.dests[p].weight > 0
    )


def _time_passes(sys: System, pre: State, a: Action, ev: tuple[Event, ...], post: State) -> bool:
    # untimed search: no clock, but the 60 s graceful-deletion check firing means time went by
    return a[0] == Act.WAIT or (sys.untimed and a[0] == Act.CHECK)


def _client_connects(sys: System, pre: State, a: Action, ev: tuple[Event, ...], post: State) -> bool:
    if a[0] in (Act.SYNC, Act.CHECK) and a[1]:  # kube-proxy's read/delete window: its packet's connect
        return _client_connects(sys, pre, sys.racers[a[2]], ev, post)
    return a[0] in (Act.REQUEST, Act.CONNECT, Act.DATAGRAM) or (
        a[0] == Act.CLIENT_TIMER and _has(ev, Ev.SYN_FORWARDED))


def _no_conn_held(sys: System, st: State) -> bool:
    return all(fl.client.sock != Sock.ESTABLISHED for fl in st.flows)


def _no_stale_endpoint(sys: System, st: State) -> bool:
    # the endpoints controller eventually drops a crashed pod's endpoint
    return not any(p.phase == PodPhase.DESTROYED and p.listed for p in st.pods)


_ENV_FAIR = (("the endpoints controller removes crashed pods' endpoints", _no_stale_endpoint),)


PROPERTIES: tuple[Property, ...] = (
    Property(
        1, "no-new-conn-to-destroyed-pod", "safety",
        "No SYN of a new connection is forwarded to a destroyed pod whose real server kube-proxy had already "
        "quiesced (weight 0) or deleted. The client would get 'no route to host'. A pod that died before "
        "kube-proxy synced is a different fault: see control-plane-race.",
        "kubernetes #81775",
        (
            Reach("a SYN finds an entry whose dest has weight 0",
                  _reuse_hit(lambda pre, st, d: pre.dests[d].weight == 0), triggers(Ev.REUSE_HIT)),
            Reach("a pod is destroyed while its real server is still in IPVS",
                  _state(lambda sys, st: any(p.phase == PodPhase.DESTROYED and st.dests[i].status == DestStatus.LINKED
                                             for i, p in enumerate(st.pods)))),
        ),
        violated=_syn_forwarded(lambda fl: bool(fl & SF_POD_DEAD) and bool(fl & _QUIESCED)),
        trigger_mask=triggers(Ev.SYN_FORWARDED),
        needs=("tcp",),
    ),
    Property(
        2, "no-new-conn-to-quiesced-dest", "safety",
        "No new connection (SYN) is forwarded to a real server with weight 0 or a deleted one: quiescing a "
        "real server must stop new connections to it.",
        "kubernetes #81775 (its first phase, while the pod still runs)",
        (
            Reach("a dest has weight 0 while it has connections", _state(_dest_w0_with_conns)),
            Reach("a SYN finds an entry whose dest has weight 0",
                  _reuse_hit(lambda pre, st, d: pre.dests[d].weight == 0), triggers(Ev.REUSE_HIT)),
        ),
        violated=_syn_forwarded(lambda fl: bool(fl & _QUIESCED)),
        trigger_mask=triggers(Ev.SYN_FORWARDED),
        needs=("tcp",),
    ),
    Property(
        3, "no-syn-dropped-on-reuse", "safety",
        "IPVS never drops the SYN of a new connection, nor does the node drop the pod's answer to it as INVALID "
        "(Config.invalid_drop: a SYN rescheduled past a live conntrack entry); each drop costs the client a 1 s "
        "retransmission.",
        "kubernetes #70747, #93297",
        (
            Reach("a SYN finds an entry in TIME_WAIT", _reuse_hit(lambda pre, st, d: st == TcpState.TIME_WAIT),
                  triggers(Ev.REUSE_HIT)),
        ),
        violated=lambda sys, pre, a, ev, post: _has(ev, Ev.SYN_DROPPED) or _has(ev, Ev.REPLY_INVALID),
        trigger_mask=triggers(Ev.SYN_DROPPED, Ev.REPLY_INVALID),
        needs=("tcp",),
    ),
    Property(
        4, "graceful-termination-kept", "safety",
        "An established connection to a running or terminating pod is not broken by IPVS or kube-proxy "
        "before it closes: kube-proxy does not delete its real server, and its packets are not dropped by "
        "the server-status block. (An entry that expires after 900 s idle is not counted.)",
        "kube-proxy graceful termination (#66012)",
        (
            Reach("an established connection to a terminating pod exists",
                  _state(lambda sys, st: any(fl.client.sock == Sock.ESTABLISHED
                                             and st.pods[fl.client.pod].phase == PodPhase.TERMINATING
                                             for fl in st.flows))),
        ),
        violated=lambda sys, pre, a, ev, post: any(
            (e[0] == Ev.DEST_DELETED and e[2] > 0)
            # a close whose FIN the block dropped (the client's socket lives on as an orphan) is broken as well
            or (e[0] in (Ev.BROKEN, Ev.ORPHANED) and e[2] == BrokenWhy.DEST_DELETED
                and pre.pods[e[3]].phase != PodPhase.DESTROYED)
            for e in ev
        ),
        needs=("tcp", "long_lived"),
        trigger_mask=triggers(Ev.DEST_DELETED, Ev.BROKEN, Ev.ORPHANED),
    ),
    Property(
        5, "quiesced-dest-eventually-deleted", "liveness",
        "Once a pod's endpoint is gone, kube-proxy eventually deletes its real server, provided time passes "
        "and clients close their connections. Port reuse that keeps reviving the real server's entries "
        "forever violates it.",
        "kubernetes #81775 (the real server never drains)",
        (
            Reach("an endpoint is gone while its real server still has connections",
                  _state(lambda sys, st: any(_endpoint_gone_dest_kept(sys, st, p) and sum(counters(st, p)) > 0
                                             for p in range(len(st.pods))))),
        ),
        liveness=Liveness(
            pending=_endpoint_gone_dest_kept,
            must_happen=(("time passes", _time_passes),),
            justice=(("no client holds a connection open", _no_conn_held),) + _ENV_FAIR,
        ),
    ),
    Property(
        6, "new-pods-get-new-connections", "liveness",
        "After a scale-out, clients that keep connecting eventually reach the new pod (no permanent "
        "'solidification' of clients onto old pods by port reuse).",
        "d752c3645717's motivation; kubernetes #81775 discussion",
        (
            Reach("a scale-out pod gets a real server",
                  _state(lambda sys, st: any(_new_pod_serving(sys, st, p) for p in range(len(st.pods))))),
        ),
        liveness=Liveness(
            pending=_new_pod_serving,
            discharges=lambda ev, pod: any(e[0] in (Ev.CONNECTED, Ev.ANSWERED) and e[2] == pod for e in ev),
            must_happen=(("time passes", _time_passes), ("a client connects", _client_connects)),
            justice=_ENV_FAIR,
        ),
    ),
    Property(
        7, "established-connections-stay-put", "safety",
        "Every packet of an established connection goes to the real server it was scheduled to.",
        "IPVS connection affinity",
        (Reach("a packet of an established connection is forwarded",
               lambda sys, pre, a, ev, post: _has(ev, Ev.PKT_FORWARDED), triggers(Ev.PKT_FORWARDED)),),
        violated=lambda sys, pre, a, ev, post: any(e[0] == Ev.PKT_FORWARDED and e[2] != e[3] for e in ev),
        trigger_mask=triggers(Ev.PKT_FORWARDED),
        needs=("tcp",),
    ),
    Property(
        8, "live-conntrack-never-killed", "safety",
        "Expiring an old IPVS entry never kills the conntrack entry of a newer, live connection on the same "
        "tuple (ip_vs_conn_drop_conntrack kills by tuple).",
        "the reason for f719e3754ee2 and f0a5e4d7a594 (T14)",
        (Reach("an older entry expires while a newer one shares its key",
               lambda sys, pre, a, ev, post: a[0] == Act.EXPIRE and a[2] > 0, triggers(Ev.ENTRY_EXPIRED)),),
        violated=lambda sys, pre, a, ev, post: any(e[0] == Ev.CT_KILLED and e[2] == 1 for e in ev),
        trigger_mask=triggers(Ev.CT_KILLED),
        needs=("tcp",),
    ),
    Property(
        9, "control-plane-race", "safety",
        "No SYN is forwarded to a destroyed pod whose real server kube-proxy has not yet quiesced or deleted "
        "(the pod died before kube-proxy synced). Expected to be violated wherever pods can crash: it is "
        "reported apart so that it is never confused with #81775.",
        "pod crash before the endpoint update reaches kube-proxy",
        (Reach("a pod crashes while its real server has weight 1",
               lambda sys, pre, a, ev, post: a[0] == Act.CRASH_POD, triggers(Ev.POD_CRASHED)),),
        violated=_syn_forwarded(lambda fl: bool(fl & SF_POD_DEAD) and not fl & _QUIESCED),
        needs=("tcp", "crashes"),
        trigger_mask=triggers(Ev.SYN_FORWARDED),
    ),
    Property(
        10, "no-datagram-to-destroyed-pod", "safety",
        "No UDP datagram is forwarded to a destroyed pod whose real server kube-proxy had already quiesced "
        "(weight 0) or deleted. UDP has no port-reuse logic: a flow stays on its real server while its entry "
        "is refreshed (300 s), so a real server kept at weight 0 holds its flows until the pod is gone.",
        "kubernetes #76664 (kube-proxy #77802 deletes UDP real servers at once)",
        (Reach("a datagram arrives on an entry whose dest has weight 0 or is deleted",
               _datagram_meets_removed_dest, triggers(Ev.DGRAM_FORWARDED, Ev.DGRAM_DROPPED, Ev.RESCHEDULED)),),
        violated=_dgram_forwarded(lambda fl: bool(fl & SF_POD_DEAD) and bool(fl & _QUIESCED)),
        needs=("udp",),
        trigger_mask=triggers(Ev.DGRAM_FORWARDED),
    ),
    Property(
        11, "no-refusal-with-a-usable-dest", "safety",
        "A new connection is refused (ICMP port unreachable) only when no real server in the service can take "
        "it. sh without the sh-fallback flag breaks this: a weight-0 real server keeps its buckets, and a "
        "client hashing to one is refused although others are fine.",
        "ipvs-kernel.md T12 (ip_vs_sh_get)",
        (Reach("a new connection is scheduled while a real server has weight 0", _scheduled_beside_weight0,
               triggers(Ev.SYN_FORWARDED, Ev.DGRAM_FORWARDED, Ev.REFUSED)),),
        violated=_refused_while_usable,
        trigger_mask=triggers(Ev.REFUSED),
    ),
    Property(
        12, "no-packet-in-delete-window", "safety",
        "No packet reaches a real server between kube-proxy's read of its counters and its delete. "
        "deleteRsFunc reads them (GetRealServers) and then deletes (DeleteRealServer): a connection or "
        "datagram scheduled there between the two netlink calls, microseconds, is on a real server deleted "
        "with it, which no counter showed. What follows is this property's too, and is kept out of the others "
        "(a search stops at the window): its connection is broken on its next packet (4, 7), and before 5.9 "
        "the port's next SYN meets its TIME_WAIT entry on the deleted real server and is dropped (3).",
        "graceful_termination.go deleteRsFunc: GetRealServers, then DeleteRealServer",
        (Reach("kube-proxy deletes a real server it read the counters of, with a packet in between",
               lambda sys, pre, a, ev, post: any(e[0] == Ev.RS_READ for e in ev), triggers(Ev.RS_READ)),),
        violated=lambda sys, pre, a, ev, post: any(e[0] == Ev.RS_READ and e[2] > 0 for e in ev),
        needs=("kp_window",),
        trigger_mask=triggers(Ev.RS_READ),
    ),
)

BY_NAME = {p.name: p for p in PROPERTIES}


def missing_needs(prop: Property, scope: Scope) -> list[str]:
    """The scope features a property is about that this scope lacks (then its verdict is "n/a")."""
    have = {
        "tcp": scope.protocol == "tcp", "udp": scope.protocol == "udp",
        "long_lived": scope.long_lived and scope.protocol == "tcp", "crashes": scope.crashes,
        "kp_window": scope.kp_window,
    }
    return [n for n in prop.needs if not have[n]]


def searched_system(config: Config, timing: str, properties: tuple[Property, ...]) -> System:
    """The System a search of these properties runs. A read/delete window (Scope.kp_window) leads only to the
    judgement of the property about it (its events, System.window_end): without that property the windows
    are left out, which changes no other verdict."""
    sys = System(config, timing)
    sys.kp_window = sys.kp_window and any("kp_window" in p.needs for p in properties)
    return sys


def resolve(names: list[str] | None) -> tuple[Property, ...]:
    if not names:
        return PROPERTIES
    out = []
    for n in names:
        key = n.strip()
        if key.isdigit():
            match = [p for p in PROPERTIES if p.number == int(key)]
        else:
            match = [p for p in PROPERTIES if p.name == key]
        if not match:
            raise KeyError(f"unknown property '{n}' (expected one of: {', '.join(BY_NAME)} or their numbers)")
        out.append(match[0])
    return tuple(out)
