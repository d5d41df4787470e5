"""What every part of the transition system shares: the configuration it models (the variant's memoised
decisions, the scope, the timeouts), the encodings of time, and the small updates of a state.
"""

from __future__ import annotations

from functools import lru_cache

from ipvs_verify.model.actions import Act, Action
from ipvs_verify.model.config import Config
from ipvs_verify.model.events import SF_DEST_DELETED, SF_DEST_W0, SF_POD_DEAD, SF_REUSED, Ev, Event
from ipvs_verify.model.ip_vs_ctl import flushes_deleted_dest
from ipvs_verify.model.ip_vs_in import SkbCt, StatusVerdict, reuse_block, status_block
from ipvs_verify.model.scheduler import scheduler_for
from ipvs_verify.model.state import (
    FREE_CLIENT,
    Dest,
    DestStatus,
    Entry,
    Flow,
    Neigh,
    Plan,
    Pod,
    PodPhase,
    Sock,
    State,
    Template,
    disown,
)
from ipvs_verify.model.tcp_states import Dir, Seg, tcp_transition

# How time passes (docs/time.md):
#   exact:   integer seconds; `wait` by 1 s or to the next deadline (digitization of the real timers)
#   event:   `wait` only to the next deadline: actions happen at instants when some timer fires.
#            Every run is an exact run (an under-approximation): its violations are real.
#   untimed: no clock; an armed timer may fire at any moment (an over-approximation): what holds here
#            holds for every timing. Armed timers are kept as 1, due ones as 0.
TIMINGS = ("exact", "event", "untimed")

# ip_vs_conn_expire_now(): the timer fires at the next jiffy, before this client port can complete
# another connection; a natural deadline (timer 0) instead ties with whatever else happens at that second
EXPIRE_NOW = -1


_new_state = tuple.__new__
_DESTS, _PODS, _TEMPLATES = (State._fields.index(name) for name in ("dests", "pods", "templates"))


class Core:
    """The model of one configuration: its parameters, and the updates every part of it uses."""

    def __init__(self, config: Config, timing: str = "exact") -> None:
        if timing not in TIMINGS:
            raise ValueError(f"unknown timing '{timing}' (expected one of {', '.join(TIMINGS)})")
        self.timing_mode = timing
        self.untimed = timing == "untimed"
        self.config = config
        self.v = config.variant
        self.s = config.sysctls
        self.scope = config.scope
        self.timing = config.timing
        self.sched = scheduler_for(config.variant, config.scheduler)  # a patch may replace its choice
        self.pod_names = config.scope.all_pods
        self.n_pods = len(self.pod_names)
        self.n_flows = config.scope.flows
        self._timeout = dict(config.timing.ipvs_timeouts)
        v, s = self.v, self.s
        # the variant's decisions, memoised over their finite domains
        self.reuse = lru_cache(maxsize=None)(
            lambda st, w0, nfct, ct, controlled=False: reuse_block(v, s, st, controlled, False, nfct, w0, ct))
        self.status = lru_cache(maxsize=None)(lambda ct: status_block(v, s, ct))
        self.nodest_work = flushes_deleted_dest(v, s)
        self.udp = config.scope.protocol == "udp"
        self.bridge = config.pod_network == "bridge"
        # the pod a confirmed conntrack entry names is kept only where it decides something (Config.invalid_drop)
        self.ct_pods = config.invalid_drop
        # a destroyed pod's timer: on a bridge, its neighbour entry's (-1: none running); routed, unused (0)
        self.dead_pod_timer = -1 if self.bridge else 0
        # TCP on a bridge: a destroyed pod's neighbour entry is tracked (UDP datagrams do not drive it: see
        # docs/model.md). Destroyed, its entry is LIVE if the node had resolved the address (it forwarded to
        # the pod, or the kubelet's probes did) and NONE if not. The untimed search destroys with LIVE only:
        # there LIVE ends "freed" at any moment (_neigh_stale), and LIVE freed at once is NONE
        self.neigh_tracked = self.bridge and not self.udp
        # LIVE first: a search's shortest trace then shows the usual case (a fixed-MAC bridge, a pod in use)
        self.destroy_neigh = (Neigh.LIVE, Neigh.NONE) if self.neigh_tracked else (Neigh.NONE,)
        self.destroy_searched = (Neigh.LIVE,) if self.untimed and self.neigh_tracked else self.destroy_neigh
        self.reduce_neighbours = self.neigh_tracked  # untimed: DataPath._untimed_neighbours (tests turn it off)
        self.persistent = config.scope.persistence > 0
        plans = []
        if config.scope.short_requests:
            plans += [Plan.CLIENT_CLOSES, Plan.SERVER_CLOSES]
            if config.scope.client_resets:
                plans.append(Plan.CLIENT_RESETS)
        self._client_actions: list[tuple[int, Action]] = []
        for f in range(self.n_flows):
            if self.udp:
                self._client_actions.append((f, (Act.DATAGRAM, f, 0)))
                continue
            for p in plans:
                self._client_actions.append((f, (Act.REQUEST, f, p)))
            if config.scope.long_lived:
                self._client_actions.append((f, (Act.CONNECT, f, 0)))
        # the packets that may pass in kube-proxy's read/delete window (Scope.kp_window): a client's new
        # connection or datagram, a SYN's retransmission; a window action (SYNC or CHECK, pod + 1, i) names one
        self.kp_window = config.scope.kp_window
        # a search ends a window at System.window_end (property 12 judges it); replays and the trace's story go on
        # with what the kernel does next (presentation, tests)
        self.window_successors = False
        self._window_end: State | None = None
        self.racers: tuple[Action, ...] = tuple(a for _, a in self._client_actions) + (
            () if self.udp else tuple((Act.CLIENT_TIMER, f, 0) for f in range(self.n_flows)))
        self._racer_index = {a: i for i, a in enumerate(self.racers)}

    @staticmethod
    def _set_flow(st: State, f: int, flow: Flow) -> State:
        # the hottest update of the search: built directly (NamedTuple._replace costs three times as much)
        flows = st.flows
        return _new_state(State, (flows[:f] + (flow,) + flows[f + 1:],) + st[1:])

    # the same, for the other per-index updates: a third of NamedTuple._replace's cost (measured)
    @staticmethod
    def _set_pod(st: State, p: int, pod: Pod) -> State:
        pods = st.pods
        return _new_state(State, st[:_PODS] + (pods[:p] + (pod,) + pods[p + 1:],) + st[_PODS + 1:])

    def _destroyed(self, listed: bool, neigh: int) -> Pod:
        """A pod whose containers and address are gone, with the node's neighbour entry for it (bridge)."""
        if neigh == Neigh.LIVE:
            return Pod(PodPhase.DESTROYED, self.timing.neigh_reachable_max, listed, Neigh.LIVE)
        return Pod(PodPhase.DESTROYED, self.dead_pod_timer, listed)

    @staticmethod
    def _set_dest(st: State, p: int, dest: Dest) -> State:
        dests = st.dests
        return _new_state(State, st[:_DESTS] + (dests[:p] + (dest,) + dests[p + 1:],) + st[_DESTS + 1:])

    @staticmethod
    def _set_template(st: State, c: int, tpl: Template | None) -> State:
        templates = st.templates
        return _new_state(State, st[:_TEMPLATES] + (templates[:c] + (tpl,) + templates[c + 1:],) + st[_TEMPLATES + 1:])

    def _skb_ct(self, flow: Flow) -> SkbCt:
        if not self.config.nf_conntrack:
            return SkbCt.NONE
        # nf_conntrack_proto_tcp.c: a live entry ignores the SYN (stays confirmed); a TIME_WAIT/CLOSE one
        # seen closing (CLOSE_INIT or RST) is killed and the SYN gets a new, unconfirmed entry
        return SkbCt.CONFIRMED if flow.ct_live else SkbCt.NEW

    def _ct_after(self, flow: Flow, cp: Entry) -> int:
        """The flow's confirmed conntrack entry once a packet has gone through `cp` (Flow.ct_live), 0 if none.

        A live entry stays as it was: ip_vs_nfct.c ip_vs_update_conntrack alters only an unconfirmed entry, so
        its reply tuple keeps the pod it named (6.1). A new one is confirmed naming cp's pod, unless cp has no
        NFCT: ip_vs_nat_xmit then calls ip_vs_notrack(), and nothing is confirmed.
        """
        if flow.ct_live:
            return flow.ct_live
        if self.config.nf_conntrack and cp.nfct:
            return self.ct_naming(cp.dest)
        return 0

    def ct_naming(self, pod: int) -> int:
        """Flow.ct_live of a confirmed conntrack entry whose reply tuple names `pod`."""
        return 1 + pod if self.ct_pods else 1

    def _server_status(self, cp: Entry, skb_ct: SkbCt) -> tuple[Entry, StatusVerdict]:
        """The server-status block on an entry whose dest was deleted: the entry after it, and the verdict."""
        sv = self.status(skb_ct)
        return Entry(cp.state, cp.dest, cp.nfct and not sv.clear_nfct, cp.owns_ct,
                     EXPIRE_NOW if sv.expire else cp.timer, cp.control), sv

    @staticmethod
    def _forward_flags(st: State, dest: int, reused: bool) -> int:
        """What a forwarded SYN or datagram meets: a reused entry, weight 0, a deleted dest, a destroyed pod."""
        d = st.dests[dest]
        return ((SF_REUSED if reused else 0) | (SF_POD_DEAD if st.pods[dest].phase == PodPhase.DESTROYED else 0)
                | (SF_DEST_W0 if d.weight == 0 else 0) | (SF_DEST_DELETED if d.status == DestStatus.TRASH else 0))

    # ------------------------------------------------------------------ the client's orphaned FIN_WAIT1 socket
    def _orphan_fin(self, st: State, f: int, ev: list[Event], dest_deleted: bool = False) -> State:
        """The next FIN of flow f's orphan (Sock.ORPHAN) once what it meets has changed: its entry was removed, or
        that entry's dest deleted (`dest_deleted`). Its FINs come every 1-1.6 s (measured on UML 6.1, C33: 71 in
        102 s, each answered by ICMP host unreachable, whose RTO revert, tcp_ipv4.c tcp_v4_err, RFC 6069, keeps
        the backoff from growing), so "the next one" is taken as now. Left out: the up-to-1.6 s wait for it; after
        FINs start being dropped the backoff grows (0.4, 0.8 .. s) and the orphan may outlive orphan_life by the
        last interval (tcp_write_timeout checks only when its timer fires)."""
        flow = st.flows[f]
        c = flow.client
        if not flow.entries:
            # tcp_conn_schedule(): not a SYN and no entry -> NF_ACCEPT to the node's own stack, which has no socket
            # for VIP:port and answers RST (tcp_v4_send_reset); the orphan's tcp_reset frees the port
            return self._orphan_gone(st, f, True, ev)
        cp = flow.entries[0]
        if st.dests[cp.dest].status == DestStatus.TRASH:
            cp, sv = self._server_status(cp, self._skb_ct(flow))
            if not sv.drop:
                # rescheduled (5.9+): a FIN cannot make a new connection -> the node's stack answers RST
                st = self._set_flow(st, f, Flow((cp,) + flow.entries[1:], flow.ct_live, c, flow.ct_timer))
                return self._orphan_gone(st, f, True, ev)
            if dest_deleted and cp.timer != EXPIRE_NOW:
                # dropped without re-arming (__ip_vs_conn_put): the entry runs out from the last FIN that passed
                cp = Entry(cp.state, cp.dest, cp.nfct, cp.owns_ct, self._timeout[cp.state], cp.control)
            return self._set_flow(st, f, Flow((cp,) + flow.entries[1:], flow.ct_live, c, flow.ct_timer))
        if st.pods[cp.dest].phase != PodPhase.DESTROYED:
            # forwarded to a live pod that has no socket for this 4-tuple: it answers RST (tcp_v4_send_reset)
            return self._orphan_gone(st, f, True, ev)
        # the FINs now re-arm this older entry until the orphan gives up (c.timer from now). Armed instead for a
        # whole orphan_life: a clock is never computed from another (the packed search copies or sets clocks).
        # The entry may so outlive the kernel's by up to orphan_life - c.timer, after the port is free again:
        # a SYN then meets it later than the kernel allows, which it also meets within its real lifetime.
        return self._set_flow(st, f, self._orphan_forwarded(flow, self.timing.orphan_life))

    def _orphan_forwarded(self, flow: Flow, life: int) -> Flow:
        """The orphan's FINs through the flow's newest entry to a destroyed pod: each re-arms the entry (ip_vs_conn_put
        after set_tcp_state), so it expires its state's timeout after the orphan's last FIN, `life` from now."""
        cp = flow.entries[0]
        state = tcp_transition(cp.state, Dir.INPUT, Seg.FIN)
        ct_live = self._ct_after(flow, cp)
        owns = cp.owns_ct if flow.ct_live else ct_live != 0
        cp = Entry(state, cp.dest, cp.nfct, owns, life + self._timeout[state], cp.control)
        return Flow((cp,) + flow.entries[1:], ct_live, flow.client, flow.ct_timer if flow.ct_live else -1)

    def _orphan_gone(self, st: State, f: int, reset: bool, ev: list[Event]) -> State:
        """The orphan ends: a RST reached it (its conntrack entry is then CLOSE: a SYN reopens it), or it timed out
        without a packet (tcp_write_err; its conntrack entry stays FIN_WAIT until the IPVS entry's expiry kills it)."""
        flow = st.flows[f]
        ev.append((Ev.ORPHAN_GONE, f, int(reset), 0))
        if reset:
            return self._set_flow(st, f, Flow(disown(flow.entries), False, FREE_CLIENT, -1))
        return self._set_flow(st, f, Flow(flow.entries, flow.ct_live, FREE_CLIENT, flow.ct_timer))

    def _orphans_of(self, st: State, p: int) -> list[int]:
        """The flows whose orphan's FINs go through an entry to pod p."""
        return [f for f, fl in enumerate(st.flows)
                if fl.client.sock == Sock.ORPHAN and fl.entries and fl.entries[0].dest == p]

