"""The model's state: a compact, immutable value (nested tuples), hashable and cheap to copy.

Everything keyed by one (client address, client port) towards the service VIP:port is a `Flow`: the IPVS
connection entries with that lookup key, the conntrack entry of that tuple, and the client's socket.
Counters (ActiveConn/InActConn) are not stored: they are a function of the entries (see `counters`), as
in the kernel, where only bind/unbind and state changes touch them.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple, TypeVar

from ipvs_verify.model.tcp_states import TcpState, is_active


class Entry(NamedTuple):
    """One ip_vs_conn. Several entries may share a key: the newest (first) shadows the rest."""

    state: TcpState
    dest: int  # pod index (a pod's IP:port is its real server)
    nfct: bool  # IP_VS_CONN_F_NFCT
    owns_ct: bool  # the flow's live conntrack entry was made by a packet this entry forwarded
    timer: int  # seconds until the expiry timer fires (0: fires at this instant)
    control: int = 0  # cp->control: 0 none, CONTROLLED by its client's template, OLD_TEMPLATE by an invalidated one


CONTROLLED = 1  # linked to the client's current persistence template (ip_vs_control_add)
OLD_TEMPLATE = 2  # linked to a template that was invalidated since (unhashed, waiting for its timer)


class Template(NamedTuple):
    """A persistence template (IP_VS_CONN_F_TEMPLATE) of one client address: which dest it pins."""

    dest: int
    timer: int
    timeout: int  # svc->timeout; 60 s once it expired while still controlling connections (expire_later)


class Sock(IntEnum):
    FREE = 0  # the port may be used for a new connection
    SYN_SENT = 1  # a SYN was dropped: waiting for the retransmission timer
    ESTABLISHED = 2
    TIME_WAIT = 3  # the client closed first: the port is blocked for TCP_TIMEWAIT_LEN
    # the client closed (close() returned) but its FIN is unanswered: the orphaned FIN_WAIT1 socket keeps the
    # 4-tuple, so a connect from the port fails EADDRNOTAVAIL (inet_hashtables.c __inet_check_established), until
    # tcp_write_timeout gives up on it or a RST reaches it (tcp_timer.c, tcp_input.c tcp_reset; 6.1)
    ORPHAN = 4


TIMED_SOCKS = (Sock.SYN_SENT, Sock.TIME_WAIT, Sock.ORPHAN)  # the client sockets whose timer runs


class Plan(IntEnum):
    """What the client does once connected."""

    HOLD = 0  # long-lived: later `send` and `close` actions
    CLIENT_CLOSES = 1  # short request, the client closes first (its own TIME_WAIT)
    SERVER_CLOSES = 2  # short request, the server closes first (no client TIME_WAIT)
    # short request, the client aborts: close() with SO_LINGER 0 sends a RST instead of a FIN (tcp_close ->
    # tcp_disconnect, net/ipv4/tcp.c), and the port is free at once (no TIME_WAIT), as load testers do
    CLIENT_RESETS = 3


class Client(NamedTuple):
    sock: Sock
    # ESTABLISHED: the pod it talks to (ORPHAN: talked to); SYN_SENT on a bridge: the pod whose neighbour its SYN
    # waits on; FREE after a client crash: the pod that still holds the old connection's socket (-1: none)
    pod: int
    timer: int  # SYN_SENT: seconds to the retransmission; TIME_WAIT, ORPHAN: seconds left
    tries: int  # SYN_SENT: retransmissions already sent
    plan: Plan


FREE_CLIENT = Client(Sock.FREE, -1, 0, 0, Plan.HOLD)


class Flow(NamedTuple):
    entries: tuple[Entry, ...]
    # a confirmed conntrack entry that a SYN does not reopen (SYN_SENT, ESTABLISHED .. LAST_ACK): 0 none; else,
    # where the pod its reply tuple names matters (Config.invalid_drop), 1 + that pod, otherwise 1 (True)
    ct_live: int
    client: Client
    # seconds until a confirmed SYN_SENT conntrack entry times out (nf_conntrack_proto_tcp.c tcp_timeouts[]:
    # 2 min, not renewed by a retransmitted SYN while unreplied); -1: none, or one that outlives the model's
    # horizon (ESTABLISHED: 5 days, 24 h as kube-proxy sets it)
    ct_timer: int = -1


class DestStatus(IntEnum):
    ABSENT = 0  # never added (or freed from the trash)
    LINKED = 1  # in the service's list, IP_VS_DEST_F_AVAILABLE set
    TRASH = 2  # deleted: unlinked, AVAILABLE cleared, kept in dest_trash while entries point to it


class Dest(NamedTuple):
    status: DestStatus
    weight: int


class PodPhase(IntEnum):
    ABSENT = 0  # not created yet (a scale-out may add it)
    RUNNING = 1
    TERMINATING = 2  # deletionTimestamp set: endpoint removed, still serving until the grace period ends
    DESTROYED = 3  # containers gone, IP gone: a packet to it gets "no route to host"


class Neigh(IntEnum):
    """Bridge pod network: the node's neighbour entry (ARP, cni0) for a destroyed pod's address
    (net/core/neighbour.c, 6.1). The bridge keeps its MAC when a port leaves (the cni bridge plugin sets it:
    containernetworking/plugins bridge.go ensureAddr; br_stp_recalculate_bridge_id skips NET_ADDR_SET), so
    nothing flushes the entry when the pod's veth goes (neigh_changeaddr runs only on NETDEV_CHANGEADDR)."""

    NONE = 0  # no entry, or FAILED: the next packet starts a resolution (__neigh_event_send -> INCOMPLETE)
    LIVE = 1  # REACHABLE on the dead pod's MAC: packets go out and are lost, no ICMP (neigh_hh_output)
    STALE = 2  # its reachable_time ran out (neigh_timer_handler): the next packet is sent, lost, and starts DELAY
    PROBING = 3  # DELAY (delay_first_probe_time 5 s), then PROBE (ucast_solicit 3 x retrans_time 1 s): still lost
    INCOMPLETE = 4  # resolving: packets are queued, each gets ICMP host unreachable when it fails (3 s)


class Pod(NamedTuple):
    phase: PodPhase
    # TERMINATING: seconds until the grace period ends; DESTROYED on a bridge pod network: seconds until its
    # neighbour entry changes on its own (LIVE: goes STALE at the latest; PROBING, INCOMPLETE: fails), -1: never
    timer: int
    listed: bool  # a ready endpoint in the EndpointSlice: kube-proxy wants its real server
    neigh: Neigh = Neigh.NONE  # DESTROYED on a bridge pod network: the node's neighbour entry for its address


def disown(entries: tuple[Entry, ...]) -> tuple[Entry, ...]:
    """The flow's conntrack entry is gone or closed: no IPVS entry owns a live one any more."""
    for owner in entries:  # a plain loop, not any(): this runs on most packets
        if owner.owns_ct:
            return tuple(Entry(e.state, e.dest, e.nfct, False, e.timer, e.control) if e.owns_ct else e
                         for e in entries)
    return entries


class State(NamedTuple):
    flows: tuple[Flow, ...]  # index = client * ports + port
    dests: tuple[Dest, ...]  # index = pod index
    order: tuple[int, ...]  # the service's dest list, head first (new dests go to the head)
    cursor: int  # scheduler state (rr: the last dest chosen, or HEAD)
    pods: tuple[Pod, ...]
    sync_timer: int  # kube-proxy: seconds until a pending syncProxyRules runs, -1 if none is pending
    check_timer: int  # kube-proxy: seconds until the next graceful-deletion check (every 60 s)
    graceful: tuple[bool, ...]  # per pod: its real server is in the graceful-deletion list
    flush_pending: bool  # 5.9+: expire_nodest_conn work queued (runs one jiffy after the delete)
    budget: int  # environment changes (pod delete / add / crash) still allowed in this scope
    templates: tuple[Template | None, ...] = ()  # persistent service: per client, its hashed template


def counters(state: State, dest: int) -> tuple[int, int]:
    """(ActiveConn, InActConn) of a dest, as ipvsadm -ln shows them."""
    active = inactive = 0
    for flow in state.flows:
        a, i = flow_counters(flow, dest)
        active += a
        inactive += i
    return active, inactive


def flow_counters(flow: Flow, dest: int) -> tuple[int, int]:
    """What one flow's entries add to a dest's (ActiveConn, InActConn)."""
    active = inactive = 0
    for e in flow.entries:
        if e.dest == dest:
            if is_active(e.state):
                active += 1
            else:
                inactive += 1
    return active, inactive


Timed = TypeVar("Timed", Entry, Client, Pod, Template)


def with_timer(x: Timed, timer: int) -> Timed:
    """x with its `timer` field set: what `x._replace(timer=timer)` gives, at a third of its cost (the
    untimed search rewrites timers after every step)."""
    k = _TIMER_FIELD[type(x)]
    return tuple.__new__(type(x), x[:k] + (timer,) + x[k + 1:])


_TIMER_FIELD = {cls: cls._fields.index("timer") for cls in (Entry, Client, Pod, Template)}
