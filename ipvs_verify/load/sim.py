"""A seeded discrete-event simulation of one node under load, stepped by the model's own `System.step`.

The model's State holds every flow (client address x port) as a tuple; a run has tens of thousands of client
ports, so a full State per step would be far too slow. The simulation keeps instead, per flow, the model's `Flow`
(its IPVS entries, conntrack entry and client socket) with its timers as absolute deadlines, and once the
parts every flow shares (dests, service list, rr cursor, pods, kube-proxy's timers and lists). To apply a model
action it builds a **window**: a State whose flows are only those the action reads or writes, its timers made
relative placeholders, plus the shared parts; it calls `System.step` on it, and writes the window's flows and
shared parts back. A one-flow window's step is memoised on (flow, shared parts, action): distinct windows are
few, so most steps are a dict lookup. There is no second copy of the semantics: every outcome is a step's.

What a window leaves out, and why that cannot change an outcome:

* Other flows. A client's REQUEST, CONNECT, CLOSE, CLIENT_TIMER and an entry's EXPIRE, CT_EXPIRE read and
  write their own flow and the scheduling side only: `System.footprint` says so for rr without persistence
  (FLOW, SCHED, STATUS), and the packed search relies on the same claim, tested transition by transition.
  Schedulers whose pick reads other flows (lc, wlc: ActiveConn over every flow; sh's client hash; persistence
  templates) are refused (config.check_model). kube-proxy's SYNC and CHECK read every flow's counters
  (ActiveConn/InActConn, and DEST_DELETED's count of live connections), FLUSH deletes every flow's entries to
  a deleted dest, NEIGH_FAILED tells every SYN_SENT socket: their window holds every flow that is not in the
  initial empty state (no entry, a FREE client), so nothing they read is missing; an empty flow adds nothing
  to a counter, has no entry to flush and no socket to tell. Pod changes read no flow (footprint SCHED, KP):
  their window has none.
* Timer values. The simulation fires every timer itself, at its deadline, from an event queue (heapq), so no
  step needs WAIT, and time passing touches no flow. In a window an armed timer is a placeholder (a large
  number naming its slot): the steps compare timers only with 0 (armed or not: a pod's neighbour timer, the
  pending sync, a flow's conntrack timer) and otherwise pass them through or set fresh ones, so a placeholder
  in the output says "unchanged" and any other value is a new timer, in seconds from now. An entry's
  ip_vs_conn_expire_now (-1) fires at once, before anything else at this instant, as the model's actions()
  requires (a client port with such an entry cannot start a connection first).
* The client index. A window's one flow is flow 0 of client 0; rr reads neither (the scheduler's client_hash
  is sh's), so a flow of any client address steps alike.
* Sub-second time. The model counts whole seconds; the simulation's clock counts microseconds, and the
  model's timers (whole seconds) are deadlines on it. Events at the same microsecond run in a fixed order
  (flush, then flows' timers, then kube-proxy and pods, then pod changes, then clients): one of the orders the
  model allows.

tests/test_load.py proves it: short runs (2 to 4 ports, one client) are replayed action by action through the
full System with every flow, and each step must be enabled there and give the same events and the same State.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ipvs_verify.load.client_ports import PortAllocator
from ipvs_verify.load.config import LoadSpec, check_model
from ipvs_verify.model.actions import Act, Action
from ipvs_verify.model.config import Config
from ipvs_verify.model.events import SF_DEST_W0, SF_POD_DEAD, Ev, Event
from ipvs_verify.model.state import FREE_CLIENT, Client, Entry, Flow, Neigh, Plan, Pod, PodPhase, Sock, State
from ipvs_verify.model.system import System

US = 1_000_000  # clock ticks per second (microseconds)
INF = 1 << 62

# placeholders of armed timers in a window (far beyond any timeout the model sets)
PH = 1 << 40
PH_ENTRY = PH  # + entry index
PH_CLIENT = PH + 64
PH_CT = PH + 65
PH_SHARED = PH + 128  # + shared timer slot: 0 sync, 1 check, 2 + p pod p

# a plan's code for one timer slot: KEEP its deadline, NONE (disarmed), or >= 0: a fresh timer, ticks from now
KEEP = -2
NONE = -1

# event kinds whose subject is a flow (mapped from window index to the run's flow index)
FLOW_EVENTS = frozenset({
    Ev.SYN_FORWARDED, Ev.SYN_DROPPED, Ev.REFUSED, Ev.CONNECTED, Ev.NO_ROUTE, Ev.TIMED_OUT, Ev.REUSE_HIT,
    Ev.RESCHEDULED, Ev.PKT_FORWARDED, Ev.BROKEN, Ev.CLOSED, Ev.CT_KILLED, Ev.ENTRY_EXPIRED, Ev.TIME_WAIT_OVER,
    Ev.DGRAM_FORWARDED, Ev.DGRAM_DROPPED, Ev.ANSWERED, Ev.SYN_QUEUED, Ev.CT_EXPIRED, Ev.CLIENT_CRASHED,
    Ev.CHALLENGED, Ev.TIME_WAIT_TAKEN_OVER, Ev.ORPHANED, Ev.ORPHAN_GONE, Ev.SYN_LOST, Ev.REPLY_INVALID,
})

# queue priorities within one microsecond
P_FLUSH, P_FLOW, P_SHARED, P_CHANGE, P_CLIENT = 0, 1, 2, 3, 4
_WID_BITS = 24
_WID_MASK = (1 << _WID_BITS) - 1

_SHARED_FIELDS = State._fields[1:]
_S_DESTS, _S_ORDER, _S_CURSOR, _S_PODS, _S_SYNC, _S_CHECK, _S_GRACEFUL, _S_FLUSH, _S_BUDGET, _S_TEMPLATES = range(10)
_new = tuple.__new__


@dataclass
class Summary:
    """What one step did to one flow's connection attempt, from its events."""

    connected: int = -1  # the pod it connected to
    dropped: int = 0  # SYNs dropped
    no_route: bool = False
    refused: bool = False
    timed_out: bool = False
    broken: bool = False
    closed: bool = False
    flags: int = 0  # SF_* of the SYNs forwarded

    @property
    def trivial(self) -> bool:
        """Nothing for the attempt's accounting (an old entry's expiry, a packet that changed no outcome)."""
        return (self.connected < 0 and not self.dropped and not self.flags and not self.no_route and not self.refused
                and not self.timed_out and not self.broken and not self.closed)


def summarise(events: tuple[Event, ...], f: int) -> Summary:
    s = Summary()
    for kind, subject, a, b in events:
        if subject != f or kind not in FLOW_EVENTS:
            continue
        if kind == Ev.CONNECTED:
            s.connected = a
        elif kind == Ev.SYN_DROPPED:
            s.dropped += 1
        elif kind == Ev.NO_ROUTE:
            s.no_route = True
        elif kind == Ev.REFUSED:
            s.refused = True
        elif kind == Ev.TIMED_OUT:
            s.timed_out = True
        elif kind == Ev.BROKEN or kind == Ev.ORPHANED:  # an orphan's close is a broken connection too
            s.broken = True
        elif kind == Ev.CLOSED:
            s.closed = True
        elif kind == Ev.SYN_FORWARDED:
            s.flags |= b
    return s


@dataclass
class Stats:
    """The run's counts; report.py turns them into the table and the JSON."""

    attempted: int = 0
    connected: int = 0
    completed: int = 0
    broken: int = 0
    no_route: int = 0
    refused: int = 0
    timed_out: int = 0
    no_port: int = 0  # EADDRNOTAVAIL: every port of the client busy
    to_dead_pod: int = 0  # connections whose SYN reached a destroyed pod
    to_weight0: int = 0  # connections whose SYN went to a quiesced (weight 0) real server
    drops: Counter[int] = field(default_factory=Counter)  # SYNs lost before the connection ended -> connections
    latency: Counter[int] = field(default_factory=Counter)  # connect latency (ticks) -> connections
    per_pod: dict[int, list[int]] = field(default_factory=dict)  # bucket -> new connections per pod
    completions: dict[int, int] = field(default_factory=dict)  # second -> completed connections
    quiesced: dict[int, int] = field(default_factory=dict)  # pod -> tick its real server got weight 0
    deleted: dict[int, int] = field(default_factory=dict)  # pod -> tick its real server was deleted
    steps: int = 0  # model steps applied
    memo_hits: int = 0
    memo_size: int = 0
    ports_scanned: int = 0


class Simulation:
    """One run of a LoadSpec. `run()` returns its Stats; with `record`, every step is kept in `log` as
    (tick, action with the run's flow index, events with the run's flow indices)."""

    def __init__(self, spec: LoadSpec, record: bool = False,
                 on_step: Callable[[Simulation, Action, tuple[Event, ...]], None] | None = None) -> None:
        self.spec = spec
        cfg: Config = check_model(spec)
        self.system = System(cfg, "exact")
        self.config = cfg
        self.rng = random.Random(spec.seed)
        self.record = record
        self.on_step = on_step
        self.log: list[tuple[int, Action, tuple[Event, ...]]] = []
        self.n_pods = self.system.n_pods
        self.bridge = self.system.bridge
        self.nports = spec.n_ports
        self.replicas = spec.clients.replicas
        n = self.n_flows = self.nports * self.replicas
        lo, hi = spec.clients.port_range
        self.allocators = [PortAllocator(lo, hi, spec.clients.port_selection, random.Random(self.rng.getrandbits(64)))
                           for _ in range(self.replicas)]
        # interned window flows and shared parts (timers as placeholders)
        self.flow_table: list[Flow] = []
        self.flow_index: dict[Flow, int] = {}
        self.flow_free: list[bool] = []  # its client socket is FREE: the port may be picked
        self.shared_table: list[tuple[Any, ...]] = []
        self.shared_index: dict[tuple[Any, ...], int] = {}
        empty = Flow((), False, FREE_CLIENT)
        self.empty_fid = self._intern_flow(empty)
        self.fid = [self.empty_fid] * n
        self.free_ports = [self.nports] * self.replicas  # per client address: ports whose socket is FREE
        self.edl: list[tuple[int, ...]] = [()] * n  # entries' deadlines, aligned with the flow's entries
        self.cdl = [INF] * n  # client timer (SYN retransmission, TIME_WAIT end)
        self.ctdl = [INF] * n  # conntrack SYN_SENT timeout
        self.adl = [INF] * n  # the application's: the end of the connection's hold
        self.t0 = [0] * n  # the attempt's first SYN
        self.drops = [0] * n
        self.flags = [0] * n
        self.owner = [-2] * n  # -2 no attempt; -1 open loop; else the closed-loop worker
        self.memo: dict[tuple[int, int, int, int], tuple[Any, ...]] = {}
        self.flow_steps = 0  # one-flow steps (memo hits: this less the memo's size)
        self.logging = record or on_step is not None
        # special wake ids after the flows: shared timer slots, flush, changes, arrivals, then workers
        self.n_slots = 2 + self.n_pods
        self.w_shared = n
        self.w_flush = n + self.n_slots
        self.w_change = self.w_flush + 1
        self.w_arrival = self.w_change + 1
        self.w_worker = self.w_arrival + 1
        workers = spec.load.workers if spec.load.mode == "closed" else 0
        if self.w_worker + workers > _WID_MASK:
            raise ValueError("too many client ports and workers for one run")
        self.wake_at = [INF] * (self.w_worker + workers)
        self.heap: list[int] = []
        self.now = 0
        self.stats = Stats()
        st = self.system.initial_states()[0]
        shared, splan = self._canon_shared(st[1:], None)
        self.sid = self._intern_shared(shared)
        self.sdl = [INF] * self.n_slots
        self._apply_shared_plan(splan)
        self.changes = [(round(at * US), kind, self.system.pod_names.index(pod)) for at, kind, pod in spec.changes]
        self.next_change = 0
        self.end = round(spec.duration * US)
        self.bucket = max(1, round(spec.bucket * US))
        self.hold = round(spec.load.hold * US)
        self.think = round(spec.load.think * US)
        self.retry = round(spec.load.retry_after * US)
        self.plan = Plan.CLIENT_CLOSES if spec.load.closer == "client" else Plan.SERVER_CLOSES
        self.arrivals = 0
        if self.changes:
            self._schedule(self.w_change, self.changes[0][0], P_CHANGE)
        if spec.load.mode == "open":
            self._schedule(self.w_arrival, 0, P_CLIENT)
        for w in range(workers):
            self._schedule(self.w_worker + w, 0, P_CLIENT)  # all at once, in order (no load tester's ramp)

    # ------------------------------------------------------------------ interning and canonical forms
    def _intern_flow(self, flow: Flow) -> int:
        i = self.flow_index.get(flow)
        if i is None:
            i = self.flow_index[flow] = len(self.flow_table)
            self.flow_table.append(flow)
            self.flow_free.append(flow.client.sock == Sock.FREE)
        return i

    def _intern_shared(self, shared: tuple[Any, ...]) -> int:
        i = self.shared_index.get(shared)
        if i is None:
            i = self.shared_index[shared] = len(self.shared_table)
            self.shared_table.append(shared)
        return i

    @staticmethod
    def _code(t: int, placeholder: int) -> int:
        """A timer of a step's output: KEEP (its placeholder came back) or a fresh timer in ticks from now
        (ip_vs_conn_expire_now's -1: one tick before now, so it sorts first)."""
        if t == placeholder:
            return KEEP
        if t >= PH:
            raise AssertionError(f"a timer moved to another slot ({t - PH}): the window's decode would be wrong")
        return -1 if t < 0 else t * US

    def _canon_flow(self, flow: Flow) -> tuple[int, tuple[tuple[int, int], ...], int, int]:
        """A step's output flow as (interned canonical flow, entries' plan, client timer code, ct timer code).
        An entries' plan item is (input slot kept, -1) or (-1, fresh ticks)."""
        entries = []
        eplan = []
        for j, e in enumerate(flow.entries):
            t = e.timer
            if t >= PH:
                eplan.append((t - PH_ENTRY, 0))
            else:
                eplan.append((-1, -1 if t < 0 else t * US))
            entries.append(Entry(e.state, e.dest, e.nfct, e.owns_ct, PH_ENTRY + j, e.control))
        c = flow.client
        if c.sock == Sock.SYN_SENT or c.sock == Sock.TIME_WAIT or c.sock == Sock.ORPHAN:
            ccode = self._code(c.timer, PH_CLIENT)
            c = Client(c.sock, c.pod, PH_CLIENT, c.tries, c.plan)
        else:
            ccode = NONE
        if flow.ct_timer >= 0:
            ctcode = self._code(flow.ct_timer, PH_CT)
            ct = PH_CT
        else:
            ctcode, ct = NONE, -1
        fid = self._intern_flow(Flow(tuple(entries), flow.ct_live, c, ct))
        return fid, tuple(eplan), ccode, ctcode

    def _armed_pod(self, pod: Pod) -> bool:
        return pod.phase == PodPhase.TERMINATING or (self.bridge and pod.phase == PodPhase.DESTROYED
                                                     and pod.timer >= 0)

    def _canon_shared(self, shared: tuple[Any, ...], before: tuple[Any, ...] | None
                      ) -> tuple[tuple[Any, ...], tuple[int, ...] | None]:
        """A step's output shared parts as (canonical shared parts, plan per timer slot or None if no slot moved)."""
        codes = []
        sync = shared[_S_SYNC]
        if sync >= 0:
            codes.append(self._code(sync, PH_SHARED))
            sync = PH_SHARED
        else:
            codes.append(NONE)
        codes.append(self._code(shared[_S_CHECK], PH_SHARED + 1))
        pods = []
        for p, pod in enumerate(shared[_S_PODS]):
            if self._armed_pod(pod):
                codes.append(self._code(pod.timer, PH_SHARED + 2 + p))
                pod = Pod(pod.phase, PH_SHARED + 2 + p, pod.listed, pod.neigh)
            else:
                codes.append(NONE)
            pods.append(pod)
        canon = list(shared)
        canon[_S_SYNC], canon[_S_CHECK], canon[_S_PODS] = sync, PH_SHARED + 1, tuple(pods)
        out = tuple(canon)
        if before is not None and all(c == KEEP for c in codes if c != NONE) and self._same_armed(before, out):
            return out, None
        return out, tuple(codes)

    @staticmethod
    def _same_armed(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
        """The same shared timer slots are armed in both (so a plan of KEEP/NONE moves nothing)."""
        return ((a[_S_SYNC] >= 0) == (b[_S_SYNC] >= 0)
                and all((x.timer >= PH) == (y.timer >= PH) for x, y in zip(a[_S_PODS], b[_S_PODS], strict=True)))

    # ------------------------------------------------------------------ the queue
    def _schedule(self, wid: int, t: int, prio: int) -> None:
        if t < self.wake_at[wid]:
            self.wake_at[wid] = t
            heapq.heappush(self.heap, (((t << 3) + prio) << _WID_BITS) + wid)

    def _flow_wake(self, f: int) -> None:
        t = min(self.cdl[f], self.ctdl[f], self.adl[f], *self.edl[f]) if self.edl[f] else min(
            self.cdl[f], self.ctdl[f], self.adl[f])
        if t < INF:
            self._schedule(f, t, P_FLOW)

    def _apply_shared_plan(self, splan: tuple[int, ...] | None) -> None:
        if splan is None:
            return
        for i, code in enumerate(splan):
            if code == KEEP:
                continue
            self.sdl[i] = INF if code == NONE else self.now + code
            if code != NONE:
                self._schedule(self.w_shared + i, self.sdl[i], P_SHARED)

    # ------------------------------------------------------------------ applying model steps
    def _step_flow(self, f: int, kind: int, y: int) -> Summary | None:
        """One model action on flow f through its memoised one-flow window (the hot path: locals, no helpers)."""
        fid = self.fid
        key = (fid[f], self.sid, kind, y)
        out = self.memo.get(key)
        if out is None:
            out = self.memo[key] = self._window_step(key)
        new_fid, new_sid, eplan, ccode, ctcode, splan, summary, events = out
        now = self.now
        if eplan:
            old = self.edl[f]
            self.edl[f] = tuple([old[k] if k >= 0 else now + off for k, off in eplan])
        else:
            self.edl[f] = ()
        if ccode != KEEP:
            self.cdl[f] = INF if ccode == NONE else now + ccode
        if ctcode != KEEP:
            self.ctdl[f] = INF if ctcode == NONE else now + ctcode
        free = self.flow_free
        if free[new_fid] != free[fid[f]]:
            self.free_ports[f // self.nports] += 1 if free[new_fid] else -1
        fid[f] = new_fid
        if splan is not None or new_sid != self.sid:
            self.sid = new_sid
            self._apply_shared_plan(splan)
            if self.shared_table[new_sid][_S_FLUSH]:
                self._schedule(self.w_flush, now, P_FLUSH)
        self.flow_steps += 1
        if self.logging:
            self._logged((kind, f, y), tuple((k, f if k in FLOW_EVENTS else s, a, b) for k, s, a, b in events))
        return summary  # type: ignore[no-any-return]

    def _window_step(self, key: tuple[int, int, int, int]) -> tuple[Any, ...]:
        fid, sid, kind, y = key
        shared = self.shared_table[sid]
        window = _new(State, ((self.flow_table[fid],),) + shared)
        nxt, events = self.system.step(window, (kind, 0, y))
        if len(nxt.flows) != 1 or nxt[5:10] != window[5:10]:
            # footprint (FLOW, SCHED[, STATUS]): kube-proxy's side (timers, graceful list, flush, budget) is untouched
            raise AssertionError(f"action {Act(kind).name} wrote outside its window")
        new_fid, eplan, ccode, ctcode = self._canon_flow(nxt.flows[0])
        canon, splan = self._canon_shared(nxt[1:], shared)
        new_sid = self._intern_shared(canon)
        self.stats.memo_size += 1
        summary = summarise(events, 0)
        return new_fid, new_sid, eplan, ccode, ctcode, splan, None if summary.trivial else summary, events

    def _step_window(self, flows: list[int], action: Action) -> tuple[Event, ...]:
        """One model action on a window of several flows (or none): kube-proxy, flush, the neighbour layer, pods."""
        kind, x, y = action
        window = _new(State, (tuple(self.flow_table[self.fid[f]] for f in flows),) + self.shared_table[self.sid])
        if kind in (Act.EXPIRE, Act.CLIENT_TIMER, Act.CT_EXPIRE, Act.CLOSE, Act.REQUEST, Act.CONNECT):
            raise AssertionError("a flow's own action goes through _step_flow")
        nxt, events = self.system.step(window, action)
        if len(nxt.flows) != len(flows):
            raise AssertionError(f"{Act(kind).name} changed the number of flows")
        now = self.now
        for k, f in enumerate(flows):
            if nxt.flows[k] is window.flows[k]:
                continue
            new_fid, eplan, ccode, ctcode = self._canon_flow(nxt.flows[k])
            old = self.edl[f]
            self.edl[f] = tuple([old[i] if i >= 0 else now + off for i, off in eplan])
            if ccode != KEEP:
                self.cdl[f] = INF if ccode == NONE else now + ccode
            if ctcode != KEEP:
                self.ctdl[f] = INF if ctcode == NONE else now + ctcode
            if self.flow_free[new_fid] != self.flow_free[self.fid[f]]:
                self.free_ports[f // self.nports] += 1 if self.flow_free[new_fid] else -1
            self.fid[f] = new_fid
            summary = summarise(events, k)
            self._account(f, None if summary.trivial else summary)
            self._flow_wake(f)
        before = self.shared_table[self.sid]
        canon, splan = self._canon_shared(nxt[1:], before)
        self.sid = self._intern_shared(canon)
        self._apply_shared_plan(splan)
        if canon[_S_FLUSH]:
            self._schedule(self.w_flush, now, P_FLUSH)
        for ev in events:
            if ev[0] == Ev.DEST_QUIESCED:
                self.stats.quiesced.setdefault(ev[1], now)
            elif ev[0] == Ev.DEST_DELETED:
                self.stats.deleted.setdefault(ev[1], now)
        self.stats.steps += 1
        mapped = tuple((e[0], flows[e[1]] if e[0] in FLOW_EVENTS else e[1], e[2], e[3]) for e in events)
        if self.logging:
            self._logged(action, mapped)  # these actions name no flow
        return mapped

    def _logged(self, action: Action, events: tuple[Event, ...]) -> None:
        if self.record:
            self.log.append((self.now, action, events))
        if self.on_step is not None:
            self.on_step(self, action, events)

    def _busy_flows(self) -> list[int]:
        empty = self.empty_fid
        return [f for f, i in enumerate(self.fid) if i != empty]

    # ------------------------------------------------------------------ connections
    def _start(self, replica: int, worker: int) -> None:
        """A connect() from the client address `replica`: pick its port, then the model's first SYN."""
        st = self.stats
        st.attempted += 1
        base = replica * self.nports
        fid, free = self.fid, self.flow_free
        if self.free_ports[replica]:
            k = self.allocators[replica].pick(lambda i: not free[fid[base + i]])
        else:
            k = -1  # the scan would find every port busy (counted as scanned)
            self.allocators[replica].scanned += self.nports
        if k < 0:
            st.no_port += 1
            self._attempt_over(-1, worker, failed=True)
            return
        f = base + k
        self.t0[f] = self.now
        self.drops[f] = 0
        self.flags[f] = 0
        self.owner[f] = worker
        if self.hold:
            self._account(f, self._step_flow(f, Act.CONNECT, 0))
        else:
            self._account(f, self._step_flow(f, Act.REQUEST, self.plan))
        self._wake_flow(f)  # an old entry's expire-now fires at once, as it would next from the queue

    def _account(self, f: int, s: Summary | None) -> None:
        """A step's effect on flow f's connection attempt: counts, latency, and its end."""
        if s is None or self.owner[f] == -2:
            return  # no attempt on this port (an old entry's expiry)
        st = self.stats
        self.drops[f] += s.dropped
        self.flags[f] |= s.flags
        now = self.now
        if s.connected >= 0:
            st.connected += 1
            st.latency[now - self.t0[f]] += 1
            b = now // self.bucket
            row = st.per_pod.get(b)
            if row is None:
                row = st.per_pod[b] = [0] * self.n_pods
            row[s.connected] += 1
            if self.hold and not s.closed and not s.broken:
                self.adl[f] = now + self.hold
        failed = s.no_route or s.refused or s.timed_out
        if s.no_route:
            st.no_route += 1
        if s.refused:
            st.refused += 1
        if s.timed_out:
            st.timed_out += 1
        if s.broken:
            st.broken += 1
        if s.closed:
            st.completed += 1
            b = now // US
            st.completions[b] = st.completions.get(b, 0) + 1
        if failed or s.broken or s.closed:
            if self.drops[f]:
                st.drops[self.drops[f]] += 1
            if self.flags[f] & SF_POD_DEAD:
                st.to_dead_pod += 1
            if self.flags[f] & SF_DEST_W0:
                st.to_weight0 += 1
            worker = self.owner[f]
            self.owner[f] = -2
            self.adl[f] = INF
            self._attempt_over(f, worker, failed or s.broken)

    def _attempt_over(self, f: int, worker: int, failed: bool) -> None:
        if worker >= 0:
            self._schedule(self.w_worker + worker, self.now + (self.retry if failed else self.think), P_CLIENT)

    # ------------------------------------------------------------------ wakes
    def _wake_flow(self, f: int) -> None:
        """Fire flow f's due timers, one model step each: entries first (earliest, then lowest index), then its
        conntrack entry, then the client's timer, then the end of the connection's hold."""
        now = self.now
        while True:
            ed = self.edl[f]
            i, best = -1, INF
            for j, d in enumerate(ed):
                if d <= now and d < best:
                    i, best = j, d
            if i >= 0:
                self._account(f, self._step_flow(f, Act.EXPIRE, i))
            elif self.ctdl[f] <= now:
                self._account(f, self._step_flow(f, Act.CT_EXPIRE, 0))
            elif self.cdl[f] <= now:
                self._account(f, self._step_flow(f, Act.CLIENT_TIMER, 0))
            elif self.adl[f] <= now:
                self.adl[f] = INF
                flow = self.flow_table[self.fid[f]]
                plan = self.plan
                if plan == Plan.SERVER_CLOSES and self._pod_phase(flow.client.pod) == PodPhase.DESTROYED:
                    plan = Plan.CLIENT_CLOSES  # a destroyed pod closes nothing: the client gives up (model actions())
                self._account(f, self._step_flow(f, Act.CLOSE, plan))
            else:
                break
        self._flow_wake(f)

    def _pod_phase(self, p: int) -> PodPhase:
        return self.shared_table[self.sid][_S_PODS][p].phase  # type: ignore[no-any-return]

    @property
    def _neigh_left(self) -> Neigh:
        """A pod destroyed under load leaves a live neighbour entry on a bridge: the node has been sending to it."""
        return Neigh.LIVE if self.system.neigh_tracked else Neigh.NONE

    def _wake_shared(self, slot: int) -> None:
        if self.sdl[slot] > self.now:
            return
        self.sdl[slot] = INF
        if slot == 0:
            self._step_window(self._busy_flows(), (Act.SYNC, 0, 0))
        elif slot == 1:
            self._step_window(self._busy_flows(), (Act.CHECK, 0, 0))
        else:
            p = slot - 2
            pod = self.shared_table[self.sid][_S_PODS][p]
            if pod.phase == PodPhase.TERMINATING:
                self._step_window([], (Act.GRACE_END, p, self._neigh_left))
            elif pod.neigh == Neigh.LIVE:  # a load takes the latest moment of its reachable time
                self._step_window([], (Act.NEIGH_STALE, p, 0))
            else:
                self._step_window(self._busy_flows(), (Act.NEIGH_FAILED, p, 0))

    def _wake_change(self) -> None:
        while self.next_change < len(self.changes) and self.changes[self.next_change][0] <= self.now:
            _, kind, p = self.changes[self.next_change]
            self.next_change += 1
            self._step_window([], (kind, p, self._neigh_left if kind == Act.CRASH_POD else 0))
        if self.next_change < len(self.changes):
            self._schedule(self.w_change, self.changes[self.next_change][0], P_CHANGE)

    def _wake_arrival(self) -> None:
        load = self.spec.load
        self._start(self.arrivals % self.replicas, -1)
        self.arrivals += 1
        if load.arrivals == "poisson":
            nxt = self.now + max(1, round(self.rng.expovariate(load.rate) * US))
        else:
            nxt = round(self.arrivals * US / load.rate)
        self._schedule(self.w_arrival, max(nxt, self.now), P_CLIENT)

    # ------------------------------------------------------------------ the run
    def run(self, progress: Callable[[float], None] | None = None) -> Stats:
        heap = self.heap
        wake_at = self.wake_at
        n = self.n_flows
        end = self.end
        pops = 0
        while heap:
            key = heap[0]
            wid = key & _WID_MASK
            t = key >> (_WID_BITS + 3)
            if t >= end:
                break  # the run covers [0, duration)
            heapq.heappop(heap)
            if wake_at[wid] != t:
                continue  # superseded by an earlier wake
            wake_at[wid] = INF
            if t > self.now:
                self.now = t
            if wid < n:
                self._wake_flow(wid)
            elif wid < self.w_flush:
                self._wake_shared(wid - self.w_shared)
            elif wid == self.w_flush:
                if self.shared_table[self.sid][_S_FLUSH]:
                    self._step_window(self._busy_flows(), (Act.FLUSH, 0, 0))
            elif wid == self.w_change:
                self._wake_change()
            elif wid == self.w_arrival:
                self._wake_arrival()
            else:
                w = wid - self.w_worker
                self._start(w % self.replicas, w)
            pops += 1
            if progress is not None and not pops & 0xFFFF:
                progress(self.now / US)
        self.now = max(self.now, end)
        self.stats.ports_scanned = sum(a.scanned for a in self.allocators)
        self.stats.steps += self.flow_steps
        self.stats.memo_hits = self.flow_steps - self.stats.memo_size
        return self.stats

    # ------------------------------------------------------------------ the full model State (for tests)
    def full_state(self) -> State:
        """The run's State as the full model has it now (every flow, timers in whole seconds from now)."""
        now = self.now

        def rel(d: int) -> int:
            return -1 if d < now else (d - now) // US

        flows = []
        for f in range(self.n_flows):
            fl = self.flow_table[self.fid[f]]
            entries = tuple(e._replace(timer=rel(d)) for e, d in zip(fl.entries, self.edl[f], strict=True))
            c = fl.client
            if c.timer >= PH:
                c = c._replace(timer=rel(self.cdl[f]))
            flows.append(Flow(entries, fl.ct_live, c, rel(self.ctdl[f]) if fl.ct_timer >= 0 else -1))
        shared = list(self.shared_table[self.sid])
        if shared[_S_SYNC] >= 0:
            shared[_S_SYNC] = rel(self.sdl[0])
        shared[_S_CHECK] = rel(self.sdl[1])
        shared[_S_PODS] = tuple(pod._replace(timer=rel(self.sdl[2 + p])) if pod.timer >= PH else pod
                                for p, pod in enumerate(shared[_S_PODS]))
        return _new(State, (tuple(flows),) + tuple(shared))
