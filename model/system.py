"""The transition system: one node's IPVS service, its kube-proxy, its pods and the clients calling it.

`System(config)` is the one interface every engine uses: `initial_states()`, `actions(state)`,
`step(state, action) -> (state, events)`. All kernel and kube-proxy decisions come from the pure
functions in ip_vs_in.py, scheduler.py, kube_proxy.py and tcp_states.py; this module only sequences them
in the order packets and timers meet them.

Time is integer seconds (see README, "Time"): an action happens at the current instant; `wait` moves
time by 1 s or straight to the next deadline, never past a timer that is due (due timers fire first).
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import IntEnum
from functools import lru_cache

from model.config import Config
from model.events import (
    SF_DEST_DELETED,
    SF_DEST_W0,
    SF_POD_DEAD,
    SF_RETRANSMIT,
    SF_REUSED,
    BrokenWhy,
    DropWhy,
    Ev,
    Event,
)
from model.ip_vs_in import SkbCt, StatusVerdict, reuse_block, status_block
from model.scheduler import HEAD, SCHEDULERS
from model.state import (
    CONTROLLED,
    FREE_CLIENT,
    OLD_TEMPLATE,
    Client,
    Dest,
    DestStatus,
    Entry,
    Flow,
    Plan,
    Pod,
    PodPhase,
    Sock,
    State,
    Template,
    counters,
    flow_counters,
    with_timer,
)
from model.tcp_states import Dir, Seg, TcpState, tcp_transition
from model.variants import Feature


class Act(IntEnum):
    # clients
    REQUEST = 0  # (flow, plan): a short connection, connect + close in one step
    CONNECT = 1  # (flow): open a long-lived connection
    SEND = 2  # (flow): data on an established connection
    CLOSE = 3  # (flow, plan): close an established connection
    # time and timers
    WAIT = 4  # (seconds)
    EXPIRE = 5  # (flow, entry index): an IPVS entry's timer fires
    CLIENT_TIMER = 6  # (flow): SYN retransmission, or the end of the client's TIME_WAIT
    GRACE_END = 7  # (pod): the grace period ends, the pod is destroyed
    SYNC = 8  # kube-proxy syncProxyRules
    CHECK = 9  # kube-proxy graceful-deletion check
    FLUSH = 10  # 5.9+ expire_nodest_conn work
    # the environment (kubectl, controllers)
    DELETE_POD = 11  # (pod)
    ADD_POD = 12  # (pod)
    CRASH_POD = 13  # (pod)
    ENDPOINT_GONE = 14  # (pod): the endpoints controller drops a crashed pod's endpoint
    # operator (scenarios): ipvsadm by hand
    SET_WEIGHT = 15  # (pod, weight)
    DELETE_DEST = 16  # (pod)
    ADD_DEST = 17  # (pod, weight)
    # UDP clients
    DATAGRAM = 18  # (flow): a datagram to the service, answered by the pod (a DNS query, say)
    # persistence (sessionAffinity: ClientIP)
    TEMPLATE_EXPIRE = 19  # (client): a persistence template's timer fires


Action = tuple[int, int, int]


class Part(IntEnum):
    """The parts of a state that a step may be confined to (see System.footprint)."""

    FLOW = 0  # the action's own flow, flows[a[1]]
    SCHED = 1  # dests, order, cursor, pods, templates
    KP = 2  # kube-proxy and time: sync_timer, check_timer, graceful, flush_pending, budget
    FLOW_SUMMARY = 3  # read only: the sum over every flow of System.flow_summary
    STATUS = 4  # read only: of the scheduling side, System.status_view (each dest's status, each pod's phase)

ACTORS = {
    Act.REQUEST: "client", Act.CONNECT: "client", Act.SEND: "client", Act.CLOSE: "client",
    Act.WAIT: "time", Act.EXPIRE: "ipvs", Act.CLIENT_TIMER: "client", Act.GRACE_END: "kubelet",
    Act.SYNC: "kube-proxy", Act.CHECK: "kube-proxy", Act.FLUSH: "ipvs", Act.DELETE_POD: "user",
    Act.ADD_POD: "user", Act.CRASH_POD: "kubelet", Act.ENDPOINT_GONE: "endpoints-controller",
    Act.SET_WEIGHT: "operator", Act.DELETE_DEST: "operator", Act.ADD_DEST: "operator", Act.DATAGRAM: "client",
    Act.TEMPLATE_EXPIRE: "ipvs",
}

NO_EVENTS: tuple[Event, ...] = ()

# How time passes (README, "Time"):
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


def _disown(entries: tuple[Entry, ...]) -> tuple[Entry, ...]:
    """The flow's conntrack entry is gone or closed: no IPVS entry owns a live one any more."""
    if not any(e.owns_ct for e in entries):
        return entries
    return tuple(Entry(e.state, e.dest, e.nfct, False, e.timer, e.control) if e.owns_ct else e for e in entries)


class System:
    """The model of one configuration."""

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
        self.sched = SCHEDULERS[config.scheduler]
        self.pod_names = config.scope.all_pods
        self.n_pods = len(self.pod_names)
        self.n_flows = config.scope.flows
        self._timeout = dict(config.timing.ipvs_timeouts)
        v, s = self.v, self.s
        # the variant's decisions, memoised over their finite domains
        self.reuse = lru_cache(maxsize=None)(
            lambda st, w0, nfct, ct, controlled=False: reuse_block(v, s, st, controlled, False, nfct, w0, ct))
        self.status = lru_cache(maxsize=None)(lambda ct: status_block(v, s, ct))
        self.nodest_work = v.has(Feature.NODEST_WORK) and s.expire_nodest_conn
        self.udp = config.scope.protocol == "udp"
        self.persistent = config.scope.persistence > 0
        plans = []
        if config.scope.short_requests:
            plans += [Plan.CLIENT_CLOSES, Plan.SERVER_CLOSES]
        self._client_actions: list[tuple[int, Action]] = []
        for f in range(self.n_flows):
            if self.udp:
                self._client_actions.append((f, (Act.DATAGRAM, f, 0)))
                continue
            for p in plans:
                self._client_actions.append((f, (Act.REQUEST, f, p)))
            if config.scope.long_lived:
                self._client_actions.append((f, (Act.CONNECT, f, 0)))

    # ------------------------------------------------------------------ names
    def flow_name(self, f: int) -> str:
        c, p = divmod(f, self.scope.ports)
        return f"client-{c + 1}:port-{p + 1}"

    def pod_name(self, p: int) -> str:
        return f"pod-{self.pod_names[p]}" if 0 <= p < self.n_pods else "none"

    def search_action_kinds(self) -> list[Act]:
        """The kinds of action a search of this configuration can take (the operator's ipvsadm steps are
        scenario-only), for coverage reports: one that never fires hints at a model or scope mistake."""
        scope = self.scope
        kinds = {Act.WAIT, Act.EXPIRE, Act.GRACE_END, Act.SYNC, Act.CHECK, Act.DELETE_POD, Act.ADD_POD,
                 Act.ENDPOINT_GONE}
        kinds |= {Act(a[0]) for _, a in self._client_actions}
        if not self.udp:
            kinds.add(Act.CLIENT_TIMER)
            if scope.long_lived:
                kinds |= {Act.SEND, Act.CLOSE}
        if scope.crashes:
            kinds.add(Act.CRASH_POD)
        if self.persistent:
            kinds.add(Act.TEMPLATE_EXPIRE)
        if self.nodest_work:
            kinds.add(Act.FLUSH)
        return sorted(kinds)

    def footprint(self, a: Action) -> tuple[Part, ...] | None:
        """The parts of the state that step(state, a) reads and writes (None: it may touch any part).

        A claim about this module's code, used by the packed search to memoise a step on those parts alone;
        a write outside them stops that search, and tests compare it with the plain search transition by
        transition, so a claim that is too small cannot pass unnoticed.
        """
        kind = a[0]
        if kind == Act.EXPIRE:
            return (Part.FLOW,)  # _expire: the entry, and the flow's conntrack
        if kind in (Act.SEND, Act.CLOSE):
            return (Part.FLOW, Part.STATUS)  # _packet: the flow, its dests' status, its pod's phase
        if kind in (Act.REQUEST, Act.CONNECT, Act.DATAGRAM, Act.CLIENT_TIMER):
            # _schedule reads dests, order and cursor; templates and lc/wlc's overheads reach other flows
            return None if self.persistent or self.sched.reads_load else (Part.FLOW, Part.SCHED)
        if kind == Act.GRACE_END:
            return (Part.SCHED,)
        if kind in (Act.DELETE_POD, Act.ADD_POD, Act.CRASH_POD, Act.ENDPOINT_GONE):
            return (Part.SCHED, Part.KP)  # the pod, the change budget, a pending sync
        if kind in (Act.SYNC, Act.CHECK):
            return (Part.SCHED, Part.KP, Part.FLOW_SUMMARY)  # the flows: only through counters and _delete_dest
        return None  # flush and templates walk the flows

    @staticmethod
    def status_view(dests: tuple[Dest, ...], pods: tuple[Pod, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Part.STATUS: all that a packet of an established connection reads beyond its own flow (_packet:
        whether the entry's dest was deleted, whether the pod is destroyed)."""
        return tuple(d.status for d in dests), tuple(p.phase for p in pods)

    def flow_summary(self, flow: Flow) -> tuple[int, ...]:
        """All that sync and check read of one flow, per pod: the entries it adds to ActiveConn and InActConn
        (_graceful_delete, _check), and whether it is an established connection to the pod through one of
        its entries (the count of _delete_dest's event)."""
        out: list[int] = []
        c = flow.client
        for p in range(self.n_pods):
            active, inactive = flow_counters(flow, p)
            out += (active, inactive, int(c.sock == Sock.ESTABLISHED and c.pod == p and active + inactive > 0))
        return tuple(out)

    # ------------------------------------------------------------------ initial state
    def initial_states(self) -> list[State]:
        n = self.n_pods
        running = len(self.scope.pods)
        pods = tuple(
            Pod(PodPhase.RUNNING, 0, True) if i < running else Pod(PodPhase.ABSENT, 0, False) for i in range(n)
        )
        # kube-proxy's first sync added the pods' real servers in order; each add goes to the list head
        dests = tuple(Dest(DestStatus.LINKED, 1) if i < running else Dest(DestStatus.ABSENT, 0) for i in range(n))
        flows = tuple(Flow((), False, FREE_CLIENT) for _ in range(self.n_flows))
        st = State(
            flows=flows, dests=dests, order=tuple(reversed(range(running))), cursor=HEAD, pods=pods,
            sync_timer=-1, check_timer=self.timing.check_interval, graceful=(False,) * n,
            flush_pending=False, budget=self.scope.changes,
            templates=(None,) * self.scope.clients if self.persistent else (),
        )
        return [self._forget_time(st) if self.untimed else st]

    # ------------------------------------------------------------------ enabled actions
    def actions(self, st: State) -> list[Action]:
        acts: list[Action] = []
        due = False
        # untimed: an armed timer may fire at any moment, but never before a due one (its deadline is later)
        fires = 1 if self.untimed and not self._any_due(st) else 0
        for f, flow in enumerate(st.flows):
            for i, e in enumerate(flow.entries):
                if e.timer <= fires:
                    acts.append((Act.EXPIRE, f, i))
                    due = True
            c = flow.client
            if c.sock in (Sock.SYN_SENT, Sock.TIME_WAIT) and c.timer <= fires:
                acts.append((Act.CLIENT_TIMER, f, 0))
                due = True
        for p, pod in enumerate(st.pods):
            if pod.phase == PodPhase.TERMINATING and pod.timer <= fires:
                acts.append((Act.GRACE_END, p, 0))
                due = True
        for ci, tpl in enumerate(st.templates):
            if tpl is not None and tpl.timer <= fires:
                acts.append((Act.TEMPLATE_EXPIRE, ci, 0))
                due = True
        if st.flush_pending:
            acts.append((Act.FLUSH, 0, 0))
            due = True
        if st.sync_timer >= 0:
            acts.append((Act.SYNC, 0, 0))  # BoundedFrequencyRunner may run it any time up to the delay
            due = due or st.sync_timer == 0
        if st.check_timer <= fires:
            acts.append((Act.CHECK, 0, 0))
            due = True
        for f, act in self._client_actions:
            flow = st.flows[f]
            # an old entry's expire-now runs within a jiffy: before this port can complete a new connection
            if flow.client.sock == Sock.FREE and not any(e.timer == EXPIRE_NOW for e in flow.entries):
                acts.append(act)
        for f, flow in enumerate(st.flows):
            if flow.client.sock == Sock.ESTABLISHED:
                acts.append((Act.SEND, f, 0))
                acts.append((Act.CLOSE, f, Plan.CLIENT_CLOSES))
                if st.pods[flow.client.pod].phase != PodPhase.DESTROYED:
                    acts.append((Act.CLOSE, f, Plan.SERVER_CLOSES))
        if st.budget > 0:
            for p, pod in enumerate(st.pods):
                if pod.phase == PodPhase.RUNNING and pod.listed:
                    acts.append((Act.DELETE_POD, p, 0))
                    if self.scope.crashes:
                        acts.append((Act.CRASH_POD, p, 0))
                elif pod.phase == PodPhase.ABSENT:
                    acts.append((Act.ADD_POD, p, 0))
        for p, pod in enumerate(st.pods):
            if pod.phase == PodPhase.DESTROYED and pod.listed:
                acts.append((Act.ENDPOINT_GONE, p, 0))
        if not due and not self.untimed:
            nxt = self._next_deadline(st)
            acts.append((Act.WAIT, nxt, 0))
            if nxt > 1 and self.timing_mode == "exact":
                acts.append((Act.WAIT, 1, 0))
        return acts

    def enabled(self, st: State, a: Action) -> bool:
        """Is `a` a legal step here? A wait of any d up to the next deadline is (exact timing)."""
        if a[0] == Act.WAIT:
            return 1 <= a[1] <= self._next_deadline(st) and any(
                x[0] == Act.WAIT for x in self.actions(st)
            )
        if a[0] in (Act.SET_WEIGHT, Act.DELETE_DEST, Act.ADD_DEST):
            return self._operator_enabled(st, a)
        return a in self.actions(st)

    def _operator_enabled(self, st: State, a: Action) -> bool:
        kind, p, _ = a
        status = st.dests[p].status
        if kind == Act.ADD_DEST:
            return status != DestStatus.LINKED
        return status == DestStatus.LINKED

    @staticmethod
    def _any_due(st: State) -> bool:
        if st.flush_pending or st.check_timer == 0 or st.sync_timer == 0:
            return True
        for flow in st.flows:
            if any(e.timer <= 0 for e in flow.entries):
                return True
            if flow.client.sock in (Sock.SYN_SENT, Sock.TIME_WAIT) and flow.client.timer == 0:
                return True
        if any(t is not None and t.timer <= 0 for t in st.templates):
            return True
        return any(p.phase == PodPhase.TERMINATING and p.timer == 0 for p in st.pods)

    def _next_deadline(self, st: State) -> int:
        t = st.check_timer
        if st.sync_timer > 0:
            t = min(t, st.sync_timer)
        for flow in st.flows:
            for e in flow.entries:
                t = min(t, e.timer)
            c = flow.client
            if c.sock in (Sock.SYN_SENT, Sock.TIME_WAIT):
                t = min(t, c.timer)
        for pod in st.pods:
            if pod.phase == PodPhase.TERMINATING:
                t = min(t, pod.timer)
        for tpl in st.templates:
            if tpl is not None:
                t = min(t, tpl.timer)
        return t

    def successors(self, st: State) -> Iterator[tuple[Action, State, tuple[Event, ...]]]:
        for a in self.actions(st):
            nxt, ev = self.step(st, a)
            yield a, nxt, ev

    # ------------------------------------------------------------------ one step
    def step(self, st: State, a: Action) -> tuple[State, tuple[Event, ...]]:
        kind, x, y = a
        ev: list[Event] = []
        if kind == Act.REQUEST or kind == Act.CONNECT:
            plan = Plan(y) if kind == Act.REQUEST else Plan.HOLD
            st = self._send_syn(st, x, 0, plan, ev)
        elif kind == Act.DATAGRAM:
            st = self._send_datagram(st, x, ev)
        elif kind == Act.TEMPLATE_EXPIRE:
            st = self._template_expire(st, x, ev)
        elif kind == Act.WAIT:
            st = self._advance(st, x)
            ev.append((Ev.TIME, 0, x, 0))
        elif kind == Act.EXPIRE:
            st = self._expire(st, x, y, ev)
        elif kind == Act.CLIENT_TIMER:
            st = self._client_timer(st, x, ev)
        elif kind == Act.SEND:
            st = self._send_data(st, x, ev)
        elif kind == Act.CLOSE:
            st = self._close(st, x, Plan(y), ev)
        elif kind == Act.GRACE_END:
            st = self._set_pod(st, x, Pod(PodPhase.DESTROYED, 0, st.pods[x].listed))
            ev.append((Ev.POD_DESTROYED, x, 0, 0))
        elif kind == Act.SYNC:
            st = self._sync(st, ev)
        elif kind == Act.CHECK:
            st = self._check(st, ev)
        elif kind == Act.FLUSH:
            st = self._flush(st, ev)
        elif kind == Act.DELETE_POD:
            # kubectl delete: deletionTimestamp -> endpoint removed (concurrently with the grace clock)
            st = self._set_pod(st, x, Pod(PodPhase.TERMINATING, self.timing.grace_period, False))
            st = self._endpoints_changed(st._replace(budget=st.budget - 1))
            ev.append((Ev.POD_DELETED, x, 0, 0))
        elif kind == Act.ADD_POD:
            st = self._set_pod(st, x, Pod(PodPhase.RUNNING, 0, True))
            st = self._endpoints_changed(st._replace(budget=st.budget - 1))
            ev.append((Ev.POD_ADDED, x, 0, 0))
        elif kind == Act.CRASH_POD:
            st = self._set_pod(st, x, Pod(PodPhase.DESTROYED, 0, True))._replace(budget=st.budget - 1)
            ev.append((Ev.POD_CRASHED, x, 0, 0))
        elif kind == Act.ENDPOINT_GONE:
            st = self._endpoints_changed(self._set_pod(st, x, st.pods[x]._replace(listed=False)))
            ev.append((Ev.ENDPOINT_GONE, x, 0, 0))
        elif kind == Act.SET_WEIGHT:
            st = self._set_weight(st, x, y)
            ev.append((Ev.WEIGHT_SET, x, y, 0))
        elif kind == Act.DELETE_DEST:
            st = self._delete_dest(st, x, ev)
        elif kind == Act.ADD_DEST:
            st = self._add_dest(st, x, y)
            ev.append((Ev.DEST_ADDED, x, y, 0))
        else:  # pragma: no cover - Act is closed
            raise ValueError(f"unknown action {a}")
        if self.untimed:
            st = self._forget_time(st)
        return st, tuple(ev)

    @staticmethod
    def _forget_time(st: State) -> State:
        """Untimed: keep only whether a timer is due (0) or armed (1). This runs after every untimed step, most
        of which arm nothing: only the parts holding a timer above 1 are rebuilt (plain loops, not nested
        generators, and `with_timer`, not `_replace`: this is a fifth of the untimed search)."""
        flows = st.flows
        for f, fl in enumerate(flows):
            c = fl.client
            stale = c.timer > 1
            if not stale:
                for e in fl.entries:
                    if e.timer > 1:
                        stale = True
                        break
            if stale:
                fl = Flow(tuple([with_timer(e, 1) if e.timer > 1 else e for e in fl.entries]), fl.ct_live,
                          with_timer(c, 1) if c.timer > 1 else c)
                flows = flows[:f] + (fl,) + flows[f + 1:]
        pods = st.pods
        for p in pods:
            if p.timer > 1:
                pods = tuple([with_timer(q, 1) if q.timer > 1 else q for q in pods])
                break
        templates = st.templates
        for t in templates:
            if t is not None and t.timer > 1:
                templates = tuple([with_timer(u, 1) if u is not None and u.timer > 1 else u for u in templates])
                break
        if (flows is st.flows and pods is st.pods and templates is st.templates and st.check_timer <= 1
                and st.sync_timer <= 1):
            return st
        return st._replace(
            flows=flows, pods=pods, check_timer=min(st.check_timer, 1),
            sync_timer=min(st.sync_timer, 1), templates=templates,
        )

    # ------------------------------------------------------------------ small helpers
    @staticmethod
    def _set_flow(st: State, f: int, flow: Flow) -> State:
        # the hottest update of the search: built directly (NamedTuple._replace costs three times as much)
        flows = st.flows
        return _new_state(State, (flows[:f] + (flow,) + flows[f + 1:],) + st[1:])

    @staticmethod
    def _set_pod(st: State, p: int, pod: Pod) -> State:
        pods = list(st.pods)
        pods[p] = pod
        return st._replace(pods=tuple(pods))

    @staticmethod
    def _set_dest(st: State, p: int, dest: Dest) -> State:
        dests = list(st.dests)
        dests[p] = dest
        return st._replace(dests=tuple(dests))

    @staticmethod
    def _set_template(st: State, c: int, tpl: Template | None) -> State:
        templates = list(st.templates)
        templates[c] = tpl
        return st._replace(templates=tuple(templates))

    def _endpoints_changed(self, st: State) -> State:
        # informer event -> Sync() -> BoundedFrequencyRunner: runs within min-sync-period
        if st.sync_timer < 0:
            return st._replace(sync_timer=self.timing.sync_delay)
        return st

    def _skb_ct(self, flow: Flow) -> SkbCt:
        if not self.config.nf_conntrack:
            return SkbCt.NONE
        # nf_conntrack_proto_tcp.c: a live entry ignores the SYN (stays confirmed); a TIME_WAIT/CLOSE one
        # seen closing (CLOSE_INIT or RST) is killed and the SYN gets a new, unconfirmed entry
        return SkbCt.CONFIRMED if flow.ct_live else SkbCt.NEW

    def _ct_after(self, flow: Flow, cp: Entry) -> bool:
        """Is the flow's conntrack entry confirmed once a packet has gone through `cp`?

        ip_vs_nat_xmit: an entry without NFCT calls ip_vs_notrack(), so a new conntrack is never confirmed.
        """
        return flow.ct_live or (self.config.nf_conntrack and cp.nfct)

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

    # ------------------------------------------------------------------ scheduling (ip_vs_schedule)
    def _schedule(self, st: State, f: int, ev: list[Event]) -> tuple[State, int, int]:
        """A new entry's dest: (state, dest or -1 for none, the entry's control)."""
        c = f // self.scope.ports
        tpl = st.templates[c] if self.persistent else None
        if tpl is not None and not self._template_valid(st, tpl):
            # ip_vs_check_template(): dest deleted, or quiescent with expire_quiescent_template -> invalidate
            # (unhashed under ports 0xffff, timer not refreshed: no lookup finds it again)
            ev.append((Ev.TEMPLATE_INVALIDATED, c, tpl.dest, 0))
            st = self._drop_template(st, c)
            tpl = None
        if tpl is None:
            # the scheduler picks among usable dests (weight > 0; rr: ip_vs_rr_schedule)
            usable = tuple(st.dests[d].weight > 0 for d in st.order)
            if not self.sched.reads_load:
                dest, cursor = self.sched.schedule(st.order, usable, st.cursor)
            else:
                dest, cursor = self.sched.schedule(
                    st.order, usable, st.cursor, tuple(st.dests[d].weight for d in st.order),
                    tuple(self._overhead(st, d) for d in st.order), client_hash=c)
            if cursor != st.cursor:
                st = st._replace(cursor=cursor)
            if dest < 0 or not self.persistent:
                return st, dest, 0
            # ip_vs_sched_persist(): a new template, ct->timeout = svc->timeout
            tpl = Template(dest, self.scope.persistence, self.scope.persistence)
            ev.append((Ev.TEMPLATE_CREATED, c, dest, 0))
        # ip_vs_control_add(cp, ct), then ip_vs_conn_put(ct) re-arms the template's timer
        return self._set_template(st, c, Template(tpl.dest, tpl.timeout, tpl.timeout)), tpl.dest, CONTROLLED

    @staticmethod
    def _overhead(st: State, dest: int) -> int:
        # ip_vs.h ip_vs_dest_conn_overhead() in 6.1: activeconns * 256 + totalconns (active + inactive)
        active, inactive = counters(st, dest)
        return (active << 8) + active + inactive

    def _template_valid(self, st: State, tpl: Template) -> bool:
        # ip_vs_conn.c ip_vs_check_template(): dest AVAILABLE, and not (expire_quiescent_template and weight 0)
        d = st.dests[tpl.dest]
        return d.status == DestStatus.LINKED and not (self.s.expire_quiescent_template and d.weight == 0)

    def _drop_template(self, st: State, c: int) -> State:
        """The client's template leaves the table (or the lookup); its connections keep their `control`."""
        st = self._set_template(st, c, None)
        flows = list(st.flows)
        for f in range(c * self.scope.ports, (c + 1) * self.scope.ports):
            fl = flows[f]
            if any(e.control == CONTROLLED for e in fl.entries):
                flows[f] = fl._replace(entries=tuple(
                    e._replace(control=OLD_TEMPLATE) if e.control == CONTROLLED else e for e in fl.entries))
        return st._replace(flows=tuple(flows))

    def _template_expire(self, st: State, c: int, ev: list[Event]) -> State:
        # ip_vs_conn_expire() on a template: "do I control anybody?" -> expire_later, timeout = 60 s
        tpl = st.templates[c]
        assert tpl is not None
        flows = st.flows[c * self.scope.ports:(c + 1) * self.scope.ports]
        if any(e.control == CONTROLLED for fl in flows for e in fl.entries):
            ev.append((Ev.TEMPLATE_EXPIRED, c, tpl.dest, 1))
            return self._set_template(st, c, Template(tpl.dest, 60, 60))
        ev.append((Ev.TEMPLATE_EXPIRED, c, tpl.dest, 0))
        return self._drop_template(st, c)

    # ------------------------------------------------------------------ the SYN path (ip_vs_in)
    def _send_syn(self, st: State, f: int, tries: int, plan: Plan, ev: list[Event]) -> State:
        flow = st.flows[f]
        entries = list(flow.entries)
        skb_ct = self._skb_ct(flow)
        cp: Entry | None = entries[0] if entries else None  # ip_vs_conn_in_get: the newest entry wins
        reused = cp is not None
        retrans = SF_RETRANSMIT if tries else 0
        if cp is not None:
            ev.append((Ev.REUSE_HIT, f, int(cp.state), cp.dest))
            # ip_vs_core.c ip_vs_in(): the port-reuse block (SYN, entry found)
            d = st.dests[cp.dest]
            r = self.reuse(cp.state, d.weight == 0, cp.nfct, skb_ct, cp.control != 0)
            if r.resched:
                entries[0] = cp = Entry(cp.state, cp.dest, cp.nfct and not r.clear_nfct, cp.owns_ct,
                                        EXPIRE_NOW if r.expire_old else cp.timer, cp.control)
                ev.append((Ev.RESCHEDULED, f, cp.dest, 0))
                if r.drop:
                    ev.append((Ev.SYN_DROPPED, f, DropWhy.REUSE, 0))
                    return self._syn_dropped(st, f, entries, flow, tries, plan)
                cp = None
        if cp is not None and st.dests[cp.dest].status == DestStatus.TRASH:
            # the server-status block: the entry's dest was deleted (not AVAILABLE)
            entries[0], sv = self._server_status(cp, skb_ct)
            cp = entries[0]
            if sv.drop:
                ev.append((Ev.SYN_DROPPED, f, DropWhy.NODEST, 0))
                return self._syn_dropped(st, f, entries, flow, tries, plan)
            ev.append((Ev.RESCHEDULED, f, cp.dest, 0))
            cp = None
            reused = False
        if cp is None:
            reused = False
            # tcp_conn_schedule -> ip_vs_schedule
            st, dest, control = self._schedule(st, f, ev)
            if dest < 0:
                # ip_vs_leave(): ICMP port unreachable -> ECONNREFUSED; the SYN's conntrack is never confirmed
                ev.append((Ev.REFUSED, f, 0, 0))
                return self._set_flow(st, f, Flow(tuple(entries), flow.ct_live, FREE_CLIENT))
            # ip_vs_conn_new(): NFCT iff sysctl conntrack; hashed at the head of its chain
            cp = Entry(TcpState.NONE, dest, self.s.conntrack, False, 0, control)
            entries.insert(0, cp)
        pod = st.pods[cp.dest]
        ev.append((Ev.SYN_FORWARDED, f, cp.dest, retrans | self._forward_flags(st, cp.dest, reused)))
        # set_tcp_state(INPUT, SYN) runs before xmit; ip_vs_conn_put() re-arms the timer whatever xmit does
        state = tcp_transition(cp.state, Dir.INPUT, Seg.SYN)
        if pod.phase == PodPhase.DESTROYED:
            # ip_vs_nat_xmit: no route to the pod's IP -> ICMP host unreachable, translated back to the VIP;
            # the SYN's new conntrack entry is never confirmed (routed /32 pod network)
            entries[0] = Entry(state, cp.dest, cp.nfct, cp.owns_ct, self._timeout[state], cp.control)
            ev.append((Ev.NO_ROUTE, f, cp.dest, 0))
            return self._set_flow(st, f, Flow(tuple(entries), flow.ct_live, FREE_CLIENT))
        # SYN-ACK (OUTPUT), ACK (INPUT): the handshake completes through the same entry
        state = tcp_transition(tcp_transition(state, Dir.OUTPUT, Seg.SYN), Dir.INPUT, Seg.ACK)
        entries = list(_disown(tuple(entries)))
        ct_live = self._ct_after(flow, cp)
        entries[0] = Entry(state, cp.dest, cp.nfct, ct_live, self._timeout[state], cp.control)
        ev.append((Ev.CONNECTED, f, cp.dest, 0))
        client = Client(Sock.ESTABLISHED, cp.dest, 0, 0, plan)
        st = self._set_flow(st, f, Flow(tuple(entries), ct_live, client))
        if plan != Plan.HOLD:
            st = self._close(st, f, plan, ev)
        return st

    def _syn_dropped(
        self, st: State, f: int, entries: list[Entry], flow: Flow, tries: int, plan: Plan
    ) -> State:
        # the SYN's unconfirmed conntrack dies with it; the client retransmits after its RTO (1, 2, 4 .. s)
        client = Client(Sock.SYN_SENT, -1, self.timing.syn_rto << tries, tries, plan)
        return self._set_flow(st, f, Flow(tuple(entries), flow.ct_live, client))

    # ------------------------------------------------------------------ the datagram path (UDP, ip_vs_in)
    def _send_datagram(self, st: State, f: int, ev: list[Event]) -> State:
        flow = st.flows[f]
        entries = list(flow.entries)
        skb_ct = self._skb_ct(flow)  # a UDP conntrack entry is confirmed once a datagram has passed
        cp: Entry | None = entries[0] if entries else None  # ip_vs_conn_in_get: the newest entry wins
        reused = cp is not None
        # is_new_conn() is false for UDP: no port-reuse block, a weight-0 dest keeps its flows (T10)
        if cp is not None and st.dests[cp.dest].status == DestStatus.TRASH:
            # the server-status block (the same decision as for TCP: ip_vs_in / 5.9+ ip_vs_in_hook)
            entries[0], sv = self._server_status(cp, skb_ct)
            cp = entries[0]
            if sv.drop:
                # __ip_vs_conn_put: dropped without re-arming the timer; the application must retry
                ev.append((Ev.DGRAM_DROPPED, f, DropWhy.NODEST, 0))
                return self._set_flow(st, f, Flow(tuple(entries), flow.ct_live, flow.client))
            ev.append((Ev.RESCHEDULED, f, cp.dest, 0))
            cp = None
            reused = False
        if cp is None:
            # udp_conn_schedule(): any datagram without an entry is scheduled (no SYN test)
            st, dest, control = self._schedule(st, f, ev)
            if dest < 0:
                ev.append((Ev.REFUSED, f, 0, 0))  # ip_vs_leave(): ICMP port unreachable
                return self._set_flow(st, f, Flow(tuple(entries), flow.ct_live, flow.client))
            # ip_vs_conn_new(): NFCT iff sysctl conntrack; UDP entries stay INACTIVE (udp_state_transition)
            cp = Entry(TcpState.NORMAL, dest, self.s.conntrack, False, 0, control)
            entries.insert(0, cp)
        pod = st.pods[cp.dest]
        ev.append((Ev.DGRAM_FORWARDED, f, cp.dest, self._forward_flags(st, cp.dest, reused)))
        # udp_state_transition() sets the 300 s timeout; ip_vs_conn_put() re-arms it whatever xmit does
        timer = self._timeout[TcpState.NORMAL]
        if pod.phase == PodPhase.DESTROYED:
            # no route to the pod's IP: ICMP host unreachable; the datagram's new conntrack is never confirmed
            entries[0] = Entry(cp.state, cp.dest, cp.nfct, cp.owns_ct, timer, cp.control)
            ev.append((Ev.NO_ROUTE, f, cp.dest, 0))
            return self._set_flow(st, f, Flow(tuple(entries), flow.ct_live, flow.client))
        # the reply (handle_response) refreshes the same entry; the conntrack entry is now confirmed
        ct_live = self._ct_after(flow, cp)
        owns = cp.owns_ct if flow.ct_live else ct_live
        if owns and not cp.owns_ct:
            entries = list(_disown(tuple(entries)))
        entries[0] = Entry(cp.state, cp.dest, cp.nfct, owns, timer, cp.control)
        ev.append((Ev.ANSWERED, f, cp.dest, 0))
        return self._set_flow(st, f, Flow(tuple(entries), ct_live, flow.client))

    def _client_timer(self, st: State, f: int, ev: list[Event]) -> State:
        flow = st.flows[f]
        c = flow.client
        if c.sock == Sock.TIME_WAIT:
            ev.append((Ev.TIME_WAIT_OVER, f, 0, 0))
            return self._set_flow(st, f, flow._replace(client=FREE_CLIENT))
        if c.tries >= self.timing.syn_retries:
            ev.append((Ev.TIMED_OUT, f, 0, 0))  # tcp_syn_retries exhausted: connect() fails ETIMEDOUT
            return self._set_flow(st, f, flow._replace(client=FREE_CLIENT))
        return self._send_syn(st, f, c.tries + 1, c.plan, ev)

    # ------------------------------------------------------------------ packets of an established connection
    def _packet(self, st: State, flow: Flow, f: int, direction: Dir, seg: Seg, ev: list[Event]) -> tuple[Flow, int]:
        """One packet of flow `f` through IPVS; returns (flow, -1), or (flow, BrokenWhy) if the connection broke.

        Works on the flow alone (a packet changes nothing else), so a close's four packets build one new flow.
        """
        entries = flow.entries
        pod_of_conn = flow.client.pod
        if direction == Dir.OUTPUT:
            # handle_response: the reply is matched by its real-server address (ip_vs_conn_out_get)
            idx = next((i for i, e in enumerate(entries) if e.dest == pod_of_conn), -1)
            if idx < 0:
                return flow, BrokenWhy.RESET  # not NATed back: the client answers RST
        else:
            if not entries:
                # tcp_conn_schedule(): not a SYN, no entry -> ACCEPT to the node's stack, which answers RST
                return flow, BrokenWhy.RESET
            idx = 0
            cp = entries[0]
            if st.dests[cp.dest].status == DestStatus.TRASH:
                cp, sv = self._server_status(cp, self._skb_ct(flow))
                # dropped (pre-5.9, or confirmed conntrack) or rescheduled as a non-SYN -> RST
                return (Flow((cp,) + entries[1:], flow.ct_live, flow.client),
                        BrokenWhy.DEST_DELETED if sv.drop else BrokenWhy.RESET)
        cp = entries[idx]
        state = tcp_transition(cp.state, direction, seg)
        ct_live = self._ct_after(flow, cp)
        owns = cp.owns_ct if flow.ct_live else ct_live
        cp = Entry(state, cp.dest, cp.nfct, owns, self._timeout[state], cp.control)
        flow = Flow(entries[:idx] + (cp,) + entries[idx + 1:], ct_live, flow.client)
        if direction == Dir.INPUT:
            ev.append((Ev.PKT_FORWARDED, f, cp.dest, pod_of_conn))
            if st.pods[cp.dest].phase == PodPhase.DESTROYED:
                return flow, BrokenWhy.POD_GONE
        return flow, -1

    def _send_data(self, st: State, f: int, ev: list[Event]) -> State:
        flow, broken = self._packet(st, st.flows[f], f, Dir.INPUT, Seg.ACK, ev)
        if broken < 0:
            flow, broken = self._packet(st, flow, f, Dir.OUTPUT, Seg.ACK, ev)
        st = self._set_flow(st, f, flow)
        return self._broken(st, f, broken, ev) if broken >= 0 else st

    _CLOSE_SEQ = {
        Plan.CLIENT_CLOSES: ((Dir.INPUT, Seg.FIN), (Dir.OUTPUT, Seg.ACK), (Dir.OUTPUT, Seg.FIN), (Dir.INPUT, Seg.ACK)),
        Plan.SERVER_CLOSES: ((Dir.OUTPUT, Seg.FIN), (Dir.INPUT, Seg.ACK), (Dir.INPUT, Seg.FIN), (Dir.OUTPUT, Seg.ACK)),
    }

    def _close(self, st: State, f: int, plan: Plan, ev: list[Event]) -> State:
        flow = st.flows[f]
        for direction, seg in self._CLOSE_SEQ[plan]:
            flow, broken = self._packet(st, flow, f, direction, seg, ev)
            if broken >= 0:
                return self._broken(self._set_flow(st, f, flow), f, broken, ev)
        ev.append((Ev.CLOSED, f, plan, 0))
        # the conntrack entry is now TIME_WAIT with CLOSE_INIT: a new SYN reopens it
        entries = _disown(flow.entries)
        if plan == Plan.CLIENT_CLOSES:
            client = Client(Sock.TIME_WAIT, -1, self.timing.client_time_wait, 0, Plan.HOLD)
        else:
            client = FREE_CLIENT
        return self._set_flow(st, f, Flow(entries, False, client))

    def _broken(self, st: State, f: int, why: int, ev: list[Event]) -> State:
        flow = st.flows[f]
        ev.append((Ev.BROKEN, f, why, flow.client.pod))
        # the client gives up on the connection; its conntrack entry is treated as expired by then
        return self._set_flow(st, f, Flow(_disown(flow.entries), False, FREE_CLIENT))

    # ------------------------------------------------------------------ IPVS timers
    def _expire(self, st: State, f: int, i: int, ev: list[Event]) -> State:
        # ip_vs_conn.c ip_vs_conn_expire(): unhash; NFCT -> ip_vs_conn_drop_conntrack (by original tuple,
        # i.e. whatever conntrack entry now has this tuple); unbind the dest (its counters)
        flow = st.flows[f]
        e = flow.entries[i]
        entries = flow.entries[:i] + flow.entries[i + 1:]
        ct_live = flow.ct_live
        ev.append((Ev.ENTRY_EXPIRED, f, e.dest, 0))
        if e.nfct and ct_live:
            ev.append((Ev.CT_KILLED, f, 0 if e.owns_ct else 1, 0))
            ct_live = False
            entries = _disown(entries)
        return self._set_flow(st, f, Flow(entries, ct_live, flow.client))

    def _flush(self, st: State, ev: list[Event]) -> State:
        # ip_vs_conn.c ip_vs_expire_nodest_conn_flush(): delete every entry whose dest is not AVAILABLE
        st = st._replace(flush_pending=False)
        removed = 0
        for f in range(len(st.flows)):
            i = 0
            while i < len(st.flows[f].entries):
                if st.dests[st.flows[f].entries[i].dest].status == DestStatus.TRASH:
                    st = self._expire(st, f, i, ev)
                    removed += 1
                else:
                    i += 1
        for c, tpl in enumerate(st.templates):
            if tpl is not None and st.dests[tpl.dest].status == DestStatus.TRASH:
                st = self._drop_template(st, c)  # "del controlling connection" once it controls none
        ev.append((Ev.FLUSHED, removed, 0, 0))
        return st

    def _advance(self, st: State, d: int) -> State:
        flows = tuple(
            Flow(
                tuple(e._replace(timer=e.timer - d) for e in fl.entries),
                fl.ct_live,
                fl.client._replace(timer=fl.client.timer - d)
                if fl.client.sock in (Sock.SYN_SENT, Sock.TIME_WAIT) else fl.client,
            )
            for fl in st.flows
        )
        pods = tuple(p._replace(timer=p.timer - d) if p.phase == PodPhase.TERMINATING else p for p in st.pods)
        templates = tuple(t._replace(timer=t.timer - d) if t is not None else t for t in st.templates)
        return st._replace(
            flows=flows, pods=pods, check_timer=st.check_timer - d,
            sync_timer=st.sync_timer - d if st.sync_timer >= 0 else -1, templates=templates,
        )

    # ------------------------------------------------------------------ destinations (ip_vs_ctl.c)
    def _add_dest(self, st: State, p: int, weight: int) -> State:
        # ip_vs_add_dest: a dest in the trash is restored (same object: its entries resume);
        # __ip_vs_update_dest(add=1) sets AVAILABLE and links it at the head of the list
        st = self._set_dest(st, p, Dest(DestStatus.LINKED, weight))
        return st._replace(order=(p,) + st.order)

    def _set_weight(self, st: State, p: int, weight: int) -> State:
        # ip_vs_edit_dest: weight 0 keeps AVAILABLE (quiescent); existing entries untouched
        return self._set_dest(st, p, st.dests[p]._replace(weight=weight))

    def _delete_dest(self, st: State, p: int, ev: list[Event]) -> State:
        # __ip_vs_unlink_dest: clear AVAILABLE, unlink, scheduler del_dest; __ip_vs_del_dest: to the trash
        live = sum(
            1
            for fl in st.flows
            if fl.client.sock == Sock.ESTABLISHED and fl.client.pod == p and fl.entries
            and any(e.dest == p for e in fl.entries) and st.pods[p].phase != PodPhase.DESTROYED
        )
        ev.append((Ev.DEST_DELETED, p, live, 0))
        cursor = self.sched.del_dest(st.order, st.cursor, p)
        st = self._set_dest(st, p, st.dests[p]._replace(status=DestStatus.TRASH))
        st = st._replace(order=tuple(d for d in st.order if d != p), cursor=cursor)
        if self.nodest_work:
            st = st._replace(flush_pending=True)  # 35dfb013149f: work queued with a 1-jiffy delay
        return st

    # ------------------------------------------------------------------ kube-proxy
    def _sync(self, st: State, ev: list[Event]) -> State:
        """proxier.go syncEndpoint(): add desired real servers first, then quiesce or delete the rest."""
        st = st._replace(sync_timer=-1)
        ev.append((Ev.SYNCED, 0, 0, 0))
        graceful = list(st.graceful)
        for p, pod in enumerate(st.pods):
            if not pod.listed:
                continue
            if graceful[p]:
                # MoveRSOutofGracefulDeleteList: desired again -> deleted and re-added
                graceful[p] = False
                st = self._delete_dest(st, p, ev)
            if st.dests[p].status != DestStatus.LINKED:
                st = self._add_dest(st, p, 1)
                ev.append((Ev.DEST_ADDED, p, 1, 0))
        st = st._replace(graceful=tuple(graceful))
        for p, pod in enumerate(st.pods):
            if not pod.listed and st.dests[p].status == DestStatus.LINKED and not st.graceful[p]:
                st = self._graceful_delete(st, p, ev)
        return st

    def _graceful_delete(self, st: State, p: int, ev: list[Event]) -> State:
        # graceful_termination.go GracefulDeleteRS: try to delete; else weight 0 and queue for re-checks
        active, inactive = counters(st, p)
        if self.config.kube_proxy.rs_deletable(self.udp, active, inactive):
            return self._delete_dest(st, p, ev)
        ev.append((Ev.DEST_QUIESCED, p, active + inactive, 0))
        st = self._set_weight(st, p, 0)
        graceful = list(st.graceful)
        graceful[p] = True
        return st._replace(graceful=tuple(graceful))

    def _check(self, st: State, ev: list[Event]) -> State:
        # graceful_termination.go tryDeleteRs, every rsCheckDeleteInterval (wait.Until)
        st = st._replace(check_timer=self.timing.check_interval)
        ev.append((Ev.CHECKED, 0, 0, 0))
        for p in range(self.n_pods):
            if st.graceful[p]:
                active, inactive = counters(st, p)
                if self.config.kube_proxy.rs_deletable(self.udp, active, inactive):
                    graceful = list(st.graceful)
                    graceful[p] = False
                    st = self._delete_dest(st._replace(graceful=tuple(graceful)), p, ev)
        return st

