"""The transition system: one node's IPVS service, its kube-proxy, its pods and the clients calling it.

`System(config)` is the one interface every engine uses: `initial_states()`, `actions(state)`,
`step(state, action) -> (state, events)`. All kernel and kube-proxy decisions come from the pure
functions in ip_vs_in.py, scheduler.py, kube_proxy.py and tcp_states.py; the classes that sequence them,
in the order packets and timers meet them, are layered: core.py (the configuration and state updates),
scheduling.py, datapath.py (the packet path and IPVS timers), control_plane.py (destinations and
kube-proxy) and clock.py (deadlines, waits, the untimed abstraction). This module enumerates the actions
(actions.py names them) and dispatches each step.

Time is integer seconds (docs/time.md): an action happens at the current instant; `wait` moves
time by 1 s or straight to the next deadline, never past a timer that is due (due timers fire first).
"""

from __future__ import annotations

from collections.abc import Iterator

from ipvs_verify.model.actions import ACTION_NAMES, ACTORS, Act, Action, Part
from ipvs_verify.model.clock import Clock
from ipvs_verify.model.config import Config
from ipvs_verify.model.control_plane import ControlPlane
from ipvs_verify.model.core import EXPIRE_NOW, TIMINGS
from ipvs_verify.model.datapath import DataPath
from ipvs_verify.model.events import Ev, Event
from ipvs_verify.model.scheduler import HEAD
from ipvs_verify.model.state import (
    FREE_CLIENT,
    TIMED_SOCKS,
    Dest,
    DestStatus,
    Flow,
    Neigh,
    Plan,
    Pod,
    PodPhase,
    Sock,
    State,
    flow_counters,
)

__all__ = ["ACTION_NAMES", "ACTORS", "EXPIRE_NOW", "TIMINGS", "Act", "Action", "Part", "System", "replay_system"]


# Hot-path aliases: in CPython 3.11 reading an Enum member through its class costs about 80 ns (EnumType's
# __getattr__ hook slows every class attribute read), a module global about 15 ns. System.actions and
# System.step read them on every transition.
_ACT_ADD_DEST = Act.ADD_DEST
_ACT_ADD_POD = Act.ADD_POD
_ACT_CHECK = Act.CHECK
_ACT_CLIENT_TIMER = Act.CLIENT_TIMER
_ACT_CLOSE = Act.CLOSE
_ACT_CLIENT_CRASH = Act.CLIENT_CRASH
_ACT_CONNECT = Act.CONNECT
_ACT_CT_EXPIRE = Act.CT_EXPIRE
_ACT_NEIGH_FAILED = Act.NEIGH_FAILED
_ACT_NEIGH_STALE = Act.NEIGH_STALE
_ACT_CRASH_POD = Act.CRASH_POD
_ACT_DATAGRAM = Act.DATAGRAM
_ACT_DELETE_DEST = Act.DELETE_DEST
_ACT_DELETE_POD = Act.DELETE_POD
_ACT_ENDPOINT_GONE = Act.ENDPOINT_GONE
_ACT_EXPIRE = Act.EXPIRE
_ACT_FLUSH = Act.FLUSH
_ACT_GRACE_END = Act.GRACE_END
_ACT_REQUEST = Act.REQUEST
_ACT_SEND = Act.SEND
_ACT_SET_WEIGHT = Act.SET_WEIGHT
_ACT_SYNC = Act.SYNC
_ACT_TEMPLATE_EXPIRE = Act.TEMPLATE_EXPIRE
_ACT_WAIT = Act.WAIT
_EV_RS_READ = Ev.RS_READ
WINDOW_END = -2  # System.window_end's check timer
_NEIGH_LIVE = Neigh.LIVE
_NEIGH_STALE = Neigh.STALE
_POD_ABSENT = PodPhase.ABSENT
_POD_DESTROYED = PodPhase.DESTROYED
_POD_RUNNING = PodPhase.RUNNING
_POD_TERMINATING = PodPhase.TERMINATING
_SOCK_ESTABLISHED = Sock.ESTABLISHED
_SOCK_FREE = Sock.FREE
_SOCK_TIME_WAIT = Sock.TIME_WAIT
_SOCK_SYN_SENT = Sock.SYN_SENT


class System(DataPath, ControlPlane, Clock):
    """The model of one configuration."""

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
                if scope.client_crashes:
                    kinds.add(Act.CLIENT_CRASH)
        if scope.crashes:
            kinds.add(Act.CRASH_POD)
        if self.persistent:
            kinds.add(Act.TEMPLATE_EXPIRE)
        if self.nodest_work:
            kinds.add(Act.FLUSH)
        if self.neigh_tracked:
            kinds |= {Act.NEIGH_FAILED, Act.CT_EXPIRE, Act.NEIGH_STALE}
        return sorted(kinds)

    def footprint(self, a: Action) -> tuple[Part, ...] | None:
        """The parts of the state that step(state, a) reads and writes (None: it may touch any part).

        A claim about this module's code, used by the packed search to memoise a step on those parts alone;
        a write outside them stops that search, and tests compare it with the plain search transition by
        transition, so a claim that is too small cannot pass unnoticed.
        """
        kind = a[0]
        if kind in (Act.EXPIRE, Act.CT_EXPIRE, Act.CLIENT_CRASH):
            return (Part.FLOW,)  # _expire, _ct_expire, _client_crash: the flow's entries, conntrack and client
        if kind in (Act.SEND, Act.CLOSE):
            return (Part.FLOW, Part.STATUS)  # _packet: the flow, its dests' status, its pod's phase
        if kind in (Act.REQUEST, Act.CONNECT, Act.DATAGRAM, Act.CLIENT_TIMER):
            # _schedule reads dests, order and cursor; templates and lc/wlc's overheads reach other flows
            return None if self.persistent or self.sched.reads_load else (Part.FLOW, Part.SCHED)
        if kind in (Act.GRACE_END, Act.NEIGH_STALE):
            return (Part.SCHED,)  # the pod alone
        if kind in (Act.DELETE_POD, Act.ADD_POD, Act.CRASH_POD, Act.ENDPOINT_GONE):
            return (Part.SCHED, Part.KP)  # the pod, the change budget, a pending sync
        if kind in (Act.SYNC, Act.CHECK):
            if a[1]:
                return None  # a packet in the read/delete window: anything a client packet touches
            if not self.udp and self.config.kube_proxy.rs_deletable(False, 0, 1):
                # a real server deleted with an inactive entry (a release or patch that does not count InActConn):
                # its orphans' entries meet it (_delete_dest -> _orphan_fin), which writes their flows
                return (Part.FLOW, Part.SCHED, Part.KP, Part.FLOW_SUMMARY) if self.n_flows == 1 else None
            return (Part.SCHED, Part.KP, Part.FLOW_SUMMARY)  # the flows: only through counters and _delete_dest
        return None  # flush and templates walk the flows

    @staticmethod
    def status_view(dests: tuple[Dest, ...], pods: tuple[Pod, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Part.STATUS: all that a packet of an established connection reads beyond its own flow (_packet:
        whether the entry's dest was deleted, whether the pod is destroyed)."""
        return tuple(d.status for d in dests), tuple(p.phase for p in pods)

    def flow_summary(self, flow: Flow) -> tuple[int, ...]:
        """All that sync and check read of one flow, per pod: the entries it adds to ActiveConn and InActConn
        (the counters in _sync's and _check's views), and whether it is an established connection to the pod through
        one of its entries (the count of _delete_dest's event)."""
        out: list[int] = []
        c = flow.client
        for p in range(self.n_pods):
            active, inactive = flow_counters(flow, p)
            out += (active, inactive, int(c.sock == Sock.ESTABLISHED and c.pod == p and active + inactive > 0))
        return tuple(out)

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

    @property
    def window_end(self) -> State:
        """Where a search's read/delete window leads: a state with no successors (its check timer WINDOW_END, which
        no clock takes otherwise), the same one for every window, so that a search keeps one."""
        end = self._window_end
        if end is None:
            end = self._window_end = self.initial_states()[0]._replace(check_timer=WINDOW_END)
        return end

    def actions(self, st: State) -> list[Action]:
        if st.check_timer == WINDOW_END:
            return []
        acts: list[Action] = []
        due = False
        # untimed: an armed timer may fire at any moment, but never before a due one (its deadline is later)
        fires = 1 if self.untimed and not self._any_due(st) else 0
        for f, flow in enumerate(st.flows):
            for i, e in enumerate(flow.entries):
                if e.timer <= fires:
                    acts.append((_ACT_EXPIRE, f, i))
                    due = True
            c = flow.client
            if c.sock in TIMED_SOCKS and c.timer <= fires:
                acts.append((_ACT_CLIENT_TIMER, f, 0))
                due = True
            if 0 <= flow.ct_timer <= fires:
                acts.append((_ACT_CT_EXPIRE, f, 0))
                due = True
        for p, pod in enumerate(st.pods):
            if pod.phase == _POD_TERMINATING and pod.timer <= fires:
                for neigh in self.destroy_searched:
                    acts.append((_ACT_GRACE_END, p, neigh))
                due = True
            elif pod.phase == _POD_DESTROYED and pod.neigh:
                neigh = pod.neigh
                if neigh == _NEIGH_LIVE:  # goes STALE at any moment of its reachable time, at the latest at 0
                    # untimed: LIVE stands for REACHABLE, STALE and PROBING alike (packets lost, the entry fails
                    # at some moment, docs/time.md): only the step that ends them is taken, as "freed"
                    acts.append((_ACT_NEIGH_STALE, p, int(self.untimed)))
                    due = due or pod.timer == 0
                elif neigh != _NEIGH_STALE and pod.timer <= fires:  # PROBING, INCOMPLETE: the probes' end
                    acts.append((_ACT_NEIGH_FAILED, p, 0))
                    due = True
        for ci, tpl in enumerate(st.templates):
            if tpl is not None and tpl.timer <= fires:
                acts.append((_ACT_TEMPLATE_EXPIRE, ci, 0))
                due = True
        if st.flush_pending:
            acts.append((_ACT_FLUSH, 0, 0))
            due = True
        if st.sync_timer >= 0:
            acts.append((_ACT_SYNC, 0, 0))  # BoundedFrequencyRunner may run it any time up to the delay
            due = due or st.sync_timer == 0
        if st.check_timer <= fires:
            acts.append((_ACT_CHECK, 0, 0))
            due = True
        # an old entry's expire-now runs within a jiffy: before this port can complete a new connection; a bound
        # port's connect takes over its TIME_WAIT socket (Scope.bound_ports)
        bound = self.scope.bound_ports
        free = [(fl.client.sock == _SOCK_FREE or (bound and fl.client.sock == _SOCK_TIME_WAIT))
                and EXPIRE_NOW not in [e.timer for e in fl.entries] for fl in st.flows]
        for f, act in self._client_actions:
            if free[f]:
                acts.append(act)
        crashes = self.scope.client_crashes
        for f, flow in enumerate(st.flows):
            if flow.client.sock == _SOCK_ESTABLISHED:
                if crashes:
                    acts.append((_ACT_CLIENT_CRASH, f, 0))
                acts.append((_ACT_SEND, f, 0))
                acts.append((_ACT_CLOSE, f, Plan.CLIENT_CLOSES))
                if self.scope.client_resets:
                    acts.append((_ACT_CLOSE, f, Plan.CLIENT_RESETS))
                if st.pods[flow.client.pod].phase != _POD_DESTROYED:
                    acts.append((_ACT_CLOSE, f, Plan.SERVER_CLOSES))
        if st.budget > 0:
            for p, pod in enumerate(st.pods):
                if pod.phase == _POD_RUNNING and pod.listed:
                    acts.append((_ACT_DELETE_POD, p, 0))
                    if self.scope.crashes:
                        for neigh in self.destroy_searched:
                            acts.append((_ACT_CRASH_POD, p, neigh))
                elif pod.phase == _POD_ABSENT:
                    acts.append((_ACT_ADD_POD, p, 0))
        for p, pod in enumerate(st.pods):
            if pod.phase == _POD_DESTROYED and pod.listed:
                acts.append((_ACT_ENDPOINT_GONE, p, 0))
        if self.kp_window:
            acts += self._window_actions(st, acts)
        if not due and not self.untimed:
            nxt = self._next_deadline(st)
            acts.append((_ACT_WAIT, nxt, 0))
            if nxt > 1 and self.timing_mode == "exact":
                acts.append((_ACT_WAIT, 1, 0))
        return acts

    def _window_actions(self, st: State, acts: list[Action]) -> list[Action]:
        """Scope.kp_window: for each real server a sync or check reads and then deletes, each packet that can be
        sent now may pass between the read and the delete: (SYNC or CHECK, pod + 1, index into self.racers)."""
        windows = [(a[0], p) for a in acts if a[0] == _ACT_SYNC or a[0] == _ACT_CHECK
                   for p in self.window_pods(st, a[0] == _ACT_CHECK)]
        if not windows:  # most states: no real server is read and then deleted now
            return []
        racers = [self._racer_index[a] for a in acts if a in self._racer_index
                  and (a[0] != _ACT_CLIENT_TIMER or st.flows[a[1]].client.sock == _SOCK_SYN_SENT)]
        return [(kind, p + 1, r) for kind, p in windows for r in racers]

    def _client_packet(self, st: State, a: Action, ev: list[Event]) -> State:
        """A client's packet (a racer of the read/delete window): a new connection or datagram, or the SYN
        retransmission of a client timer."""
        kind, f, y = a
        if kind == _ACT_REQUEST or kind == _ACT_CONNECT:
            return self._send_syn(st, f, 0, Plan(y) if kind == _ACT_REQUEST else Plan.HOLD, ev)
        if kind == _ACT_DATAGRAM:
            return self._send_datagram(st, f, ev)
        return self._client_timer(st, f, ev)

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

    def successors(self, st: State) -> Iterator[tuple[Action, State, tuple[Event, ...]]]:
        for a in self.actions(st):
            nxt, ev = self.step(st, a)
            yield a, nxt, ev

    def step(self, st: State, a: Action) -> tuple[State, tuple[Event, ...]]:
        kind, x, y = a
        ev: list[Event] = []
        if kind == _ACT_REQUEST or kind == _ACT_CONNECT or kind == _ACT_DATAGRAM:
            st = self._client_packet(st, a, ev)
        elif kind == _ACT_TEMPLATE_EXPIRE:
            st = self._template_expire(st, x, ev)
        elif kind == _ACT_WAIT:
            st = self._advance(st, x)
            ev.append((Ev.TIME, 0, x, 0))
        elif kind == _ACT_EXPIRE:
            st = self._expire(st, x, y, ev)
        elif kind == _ACT_CLIENT_TIMER:
            st = self._client_timer(st, x, ev)
        elif kind == _ACT_SEND:
            st = self._send_data(st, x, ev)
        elif kind == _ACT_CLOSE:
            st = self._close(st, x, Plan(y), ev)
        elif kind == _ACT_GRACE_END:
            st = self._set_pod(st, x, self._destroyed(st.pods[x].listed, y))
            ev.append((Ev.POD_DESTROYED, x, 0, 0))
        elif kind == _ACT_NEIGH_FAILED:
            st = self._neigh_failed(st, x, ev)
        elif kind == _ACT_NEIGH_STALE:
            st = self._neigh_stale(st, x, y, ev)
        elif kind == _ACT_CT_EXPIRE:
            st = self._ct_expire(st, x, ev)
        elif kind == _ACT_CLIENT_CRASH:
            st = self._client_crash(st, x, ev)
        elif kind == _ACT_SYNC or kind == _ACT_CHECK:
            if x:  # Scope.kp_window: a packet between the read of pod x - 1's counters and its delete
                racer = self.racers[y]
                st = self._raced(st, kind == _ACT_CHECK, x - 1, racer[1],
                                 lambda s, e: self._client_packet(s, racer, e), ev)
                if not self.window_successors:
                    # a search stops here: the window is property 12's, and what follows from it too (docs/model.md)
                    return self.window_end, tuple(e for e in ev if e[0] == _EV_RS_READ)
            else:
                st = self._check(st, ev) if kind == _ACT_CHECK else self._sync(st, ev)
        elif kind == _ACT_FLUSH:
            st = self._flush(st, ev)
        elif kind == _ACT_DELETE_POD:
            # kubectl delete: deletionTimestamp -> endpoint removed (concurrently with the grace clock)
            st = self._set_pod(st, x, Pod(_POD_TERMINATING, self.timing.grace_period, False))
            st = self._endpoints_changed(st._replace(budget=st.budget - 1))
            ev.append((Ev.POD_DELETED, x, 0, 0))
        elif kind == _ACT_ADD_POD:
            st = self._set_pod(st, x, Pod(_POD_RUNNING, 0, True))
            st = self._endpoints_changed(st._replace(budget=st.budget - 1))
            ev.append((Ev.POD_ADDED, x, 0, 0))
        elif kind == _ACT_CRASH_POD:
            st = self._set_pod(st, x, self._destroyed(True, y))._replace(budget=st.budget - 1)
            ev.append((Ev.POD_CRASHED, x, 0, 0))
        elif kind == _ACT_ENDPOINT_GONE:
            st = self._endpoints_changed(self._set_pod(st, x, st.pods[x]._replace(listed=False)))
            ev.append((Ev.ENDPOINT_GONE, x, 0, 0))
        elif kind == _ACT_SET_WEIGHT:
            st = self._set_weight(st, x, y)
            ev.append((Ev.WEIGHT_SET, x, y, 0))
        elif kind == _ACT_DELETE_DEST:
            st = self._delete_dest(st, x, ev)
        elif kind == _ACT_ADD_DEST:
            st = self._add_dest(st, x, y)
            ev.append((Ev.DEST_ADDED, x, y, 0))
        else:  # pragma: no cover - Act is closed
            raise ValueError(f"unknown action {a}")
        if self.untimed:
            if self.reduce_neighbours:  # the untimed search's own reduction (plain search: no footprints to keep)
                for pod in st.pods:  # most states have no neighbour entry to reduce
                    if pod.neigh:
                        st = self._untimed_neighbours(st)
                        break
            st = self._forget_time(st)
        return st, tuple(ev)


def replay_system(config: Config, timing: str = "exact") -> System:
    """The System a trace is told and replayed with: past a read/delete window, what the kernel does next."""
    sys = System(config, timing)
    sys.window_successors = True
    return sys
