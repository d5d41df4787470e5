"""Packed states and memoised transitions for the explicit search.

A state is split into its skeleton (the state with every non-negative clock replaced by a slot) and the values
in those slots. Apart from `wait`, a step of the model never reads a clock's value, only whether it is due,
which decides what is enabled; it copies clocks or sets them to constants. So a step computed once on a
skeleton whose slots hold distinct markers is a transform of the clock values that holds for every state with
that skeleton: each new clock is a copy of an old one or a constant. `wait` subtracts the nearest deadline
from the running clocks (the slots that a 1 s wait decrements).

A skeleton is itself made of parts (each flow, the scheduling side, kube-proxy's side: model.system.Part), and
a step that `System.footprint` confines to some parts (and read-only views: the flows' counters, the dests'
statuses and pods' phases) is memoised on those alone: a connection's step is computed once for a flow and a
scheduling side, whatever kube-proxy's timers and graceful list hold.

The search's state is a flat tuple of ints, (skeleton id, slot values...): cheap to hash and compare. Its
successors are memoised records, each applied by gathering the state's values and the record's constants in the
record's order (explicit.py's loop, compiled in _packed_loop.c). All semantics stay in `System`: every record
comes from `System.actions` and `System.step` on a representative, and what
the packing assumes is checked as records are built: a new clock that is neither a copy nor a constant, an
event that carries a clock, or a write outside the footprint raises PackingError. Tests compare the packed
search with the plain one, state by state and edge by edge, and `verify=True` recomputes every memoised
step on the state it is applied to (tests/test_packed_search.py).

Timed systems only (event or exact timing). An untimed system's clocks keep their value (1: armed, it may
fire) until they fire, so every untimed state is its own skeleton; packed, its search was 1.6 times slower
than the plain one (measured), so `explore` runs the plain search for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import count
from operator import itemgetter
from typing import Any

from ipvs_verify.engines.checks import PendingChecks, ReachCheck, SafetyCheck
from ipvs_verify.model.events import Ev, Event
from ipvs_verify.model.state import Client, Entry, Flow, Pod, State, Template
from ipvs_verify.model.system import Act, Action, Part, System
from ipvs_verify.properties.catalog import event_mask

SLOT = -(1 << 30)  # a clock's place in a skeleton
MARK = 1 << 40  # the marker of slot k is MARK + k * STRIDE: far above every constant of the model
STRIDE = 1 << 20
HALF = MARK // 2  # a clock this high came from a marker

Packed = tuple[int, ...]
Hits = tuple[tuple[str, ...], tuple[tuple[str, str], ...]]  # (safety properties violated, (property, check) reached)
# a part's new clocks: (j, k) copies slot k of the footprint's j-th part; (-1, v) is the constant v
Transform = tuple[tuple[int, int], ...]
Footprint = tuple[tuple[int, ...], tuple[Part, ...], Callable[[tuple[int, ...]], Any]]  # see Packer._footprint
_FLOW_SUMMARY = Part.FLOW_SUMMARY
VIEWS = (Part.FLOW_SUMMARY, Part.STATUS)  # footprint parts that are read-only views, not parts of the skeleton
Shape = tuple[Callable[[Packed], Packed] | None, tuple[int, ...], tuple[int, ...] | None]  # see Packer._shape
PartResult = tuple[tuple[tuple[int, Transform], ...], tuple[Event, ...]]  # per footprint part (new id, clocks)
# a memoised step: its PartResult, the footprint's new part ids, its trigger mask, its Shape per layout
StepMemo = tuple[tuple[tuple[int, Transform], ...], tuple[Event, ...], tuple[int, ...], int,
                 dict[tuple[tuple[int, ...], int], Shape]]


class PackingError(RuntimeError):
    """A step did what the packed search cannot represent: it would be unsound, so it stops."""


# One memoised transition of a skeleton: (action, get, consts, events, hits, order). The successor of packed
# state p is get(p + consts), or consts itself when get is None (it copies no clock); consts is (successor
# skeleton, constants...); `order` is get's positions (what the compiled loop gathers), None with get. `hits` is
# () or a list, emptied once reported: a property's first violation is all the search keeps.
Record = tuple[Action, Callable[[Packed], Packed] | None, Packed, tuple[Event, ...], list[Any] | tuple[()],
               tuple[int, ...] | None]

Successors = tuple[tuple[Record, ...], bool, list[int]]  # see Packer.successors
_WAIT = Act.WAIT  # a module constant: an Enum member read through its class costs 80 ns in CPython 3.11
WAIT_1: Action = (Act.WAIT, 1, 0)
WAIT_1_EVENTS: tuple[Event, ...] = ((Ev.TIME, 0, 1, 0),)
WAIT_1_MASK = event_mask(WAIT_1_EVENTS)


class Skeleton:
    __slots__ = ("parts", "offsets", "n", "layout", "rep", "rep_parts", "running", "run_part", "clocks", "no_zeros",
                 "lists", "memo", "wait_hits", "summary", "marks", "dec", "waits")

    def __init__(self, parts: tuple[int, ...], offsets: tuple[int, ...], n: int, rep: State, marks: list[int],
                 rep_parts: tuple[Any, ...]) -> None:
        self.parts = parts  # part ids: each flow, then SCHED, then KP
        self.offsets = offsets  # the packed position of each part's first slot
        self.n = n  # slots: packed positions 1 .. n
        self.layout = (offsets, n)  # where each part's slots are: what a step's clock shape depends on
        self.rep = rep  # the representative: slot k holds the marker MARK + (k - 1) * STRIDE
        self.marks = marks  # _timers(rep)
        self.rep_parts = rep_parts  # _split(rep)
        self.dec: tuple[int, ...] = ()  # 1 at the running positions of a packed state, else 0
        # w -> a wait of w s: its action, its events, and w * dec (what it subtracts from a packed state)
        self.waits: dict[int, tuple[Action, tuple[Event, ...], tuple[int, ...]]] = {}
        self.running: tuple[int, ...] = ()  # packed positions a wait decrements
        self.run_part: tuple[int, ...] = ()  # the part position of each of them
        self.clocks: Callable[[Packed], tuple[int, ...]] = _none  # packed state -> its running clocks
        self.no_zeros: tuple[bool, ...] = ()
        self.lists: dict[tuple[bool, ...], Successors] = {}  # which running clocks are 0 -> successors
        self.memo: dict[Action, Record] = {}
        self.wait_hits: list[Any] = []  # the hits of a wait (filled when the skeleton is created)
        self.summary: tuple[int, ...] | None = None  # the flows' summary (System.flow_summary), summed


def _none(p: Packed) -> tuple[int, ...]:
    return ()


def _getter(positions: tuple[int, ...]) -> Callable[[Packed], tuple[int, ...]]:
    """An itemgetter that always returns a tuple (itemgetter of one position returns the item itself)."""
    if not positions:
        return _none
    if len(positions) == 1:
        (k,) = positions
        return lambda p: (p[k],)
    return itemgetter(*positions)


def _split(st: State) -> tuple[Any, ...]:
    """The parts of a state: each flow, (dests, order, cursor, pods, templates), (sync, check, graceful, ...)."""
    return st.flows + ((st.dests, st.order, st.cursor, st.pods, st.templates),
                       (st.sync_timer, st.check_timer, st.graceful, st.flush_pending, st.budget))


def _join(parts: tuple[Any, ...] | list[Any]) -> State:
    dests, order, cursor, pods, templates = parts[-2]
    sync_timer, check_timer, graceful, flush_pending, budget = parts[-1]
    return _new(State, (tuple(parts[:-2]), dests, order, cursor, pods, sync_timer, check_timer, graceful,
                        flush_pending, budget, templates))


# Each part's clocks in order (a flow: its entries, then its client; the scheduling side: its pods, then its
# hashed templates; kube-proxy's side: sync, then check), and the part with f applied to each of them. Parts are
# plain tuples here (tuple.__new__ skips NamedTuple's Python-level constructor: this is the packer's hot path).
_new = tuple.__new__


def _flow_clocks(fl: Flow) -> list[int]:
    return [e.timer for e in fl.entries] + [fl.client.timer, fl.ct_timer]


def _sched_clocks(sc: tuple[Any, ...]) -> list[int]:
    return [p.timer for p in sc[3]] + [t.timer for t in sc[4] if t is not None]


def _kp_clocks(kp: tuple[Any, ...]) -> list[int]:
    return [kp[0], kp[1]]


def _fill_flow(fl: Flow, f: Callable[[int], int]) -> Flow:
    c = fl.client
    entries = tuple(_new(Entry, (e[0], e[1], e[2], e[3], f(e[4]), e[5])) for e in fl.entries)
    client = _new(Client, (c[0], c[1], f(c[2]), c[3], c[4]))
    return _new(Flow, (entries, fl.ct_live, client, f(fl[3])))  # in order: entries, client, conntrack


def _fill_sched(sc: tuple[Any, ...], f: Callable[[int], int]) -> tuple[Any, ...]:
    pods = tuple(_new(Pod, (p[0], f(p[1]), p[2], p[3])) for p in sc[3])
    templates = tuple(_new(Template, (t[0], f(t[1]), t[2])) if t is not None else None for t in sc[4])
    return (sc[0], sc[1], sc[2], pods, templates)


def _fill_kp(kp: tuple[Any, ...], f: Callable[[int], int]) -> tuple[Any, ...]:
    sync = f(kp[0])  # in order
    return (sync, f(kp[1]), kp[2], kp[3], kp[4])


CLOCKS: tuple[Callable[[Any], list[int]], ...] = (_flow_clocks, _sched_clocks, _kp_clocks)  # by part kind
FILL: tuple[Callable[[Any, Callable[[int], int]], Any], ...] = (_fill_flow, _fill_sched, _fill_kp)  # f per clock


def _zero_at(markers: frozenset[int]) -> Callable[[int], int]:
    """A fill that sets the clocks holding these markers to 0."""
    return lambda v: 0 if v in markers else v


def _slot(v: int) -> int:
    """A part's clock in its skeleton: a slot, unless it is negative (due at once, or none)."""
    return SLOT if v >= 0 else v


def _kinds(st: State) -> list[int]:
    return [0] * len(st.flows) + [1, 2]


def _timers(st: State) -> list[int]:
    """Every clock of the state, part by part, in the order above."""
    out: list[int] = []
    for kind, part in zip(_kinds(st), _split(st), strict=True):
        out += CLOCKS[kind](part)
    return out


def _with_timers(st: State, values: list[int]) -> State:
    """The state with its clocks, in the order of _timers, replaced by `values`."""
    it = iter(values)

    def take(_v: int) -> int:
        return next(it)

    state = _join([FILL[kind](part, take) for kind, part in zip(_kinds(st), _split(st), strict=True)])
    if next(it, None) is not None:
        raise ValueError("more values than the state has clocks")
    return state


class Packer:
    """Skeletons and parts of one system, and the memoised successor lists of the search."""

    def __init__(self, system: System, pending: PendingChecks, verify: bool = False) -> None:
        self.system = system
        if system.untimed:
            raise ValueError("the packed search is for timed systems: explore() runs untimed ones plainly")
        self.verify = verify
        self.pending = pending  # what the search has not reported yet needs evaluating on each new record
        self.n_flows = system.n_flows
        self.part_index: list[dict[Any, int]] = [{}, {}, {}]  # by kind: flow, SCHED, KP
        self.part_values: list[list[Any]] = [[], [], []]
        self.part_slots: list[list[int]] = [[], [], []]
        self.part_running: list[dict[int, tuple[int, ...]]] = [{}, {}, {}]  # part id -> its running slots
        self.kind = [0] * self.n_flows + [1, 2]  # part position -> kind
        self.index: dict[tuple[int, ...], int] = {}
        self.skeletons: list[Skeleton] = []
        self.part_memo: dict[tuple[Any, ...], StepMemo] = {}
        self.summaries: dict[int, tuple[int, ...]] = {}  # flow part id -> System.flow_summary
        self.statuses: dict[int, Any] = {}  # SCHED part id -> System.status_view
        self.interned: dict[Any, Any] = {}
        self._marked: dict[tuple[int, int, int], tuple[Any, list[int]]] = {}  # see _mark
        self._zero_parts: dict[tuple[int, ...], Any] = {}  # see _zeroed
        self._footprints: dict[Action, Footprint] = {}

    # ------------------------------------------------------------------ states <-> packed
    def pack(self, st: State) -> Packed:
        ids = []
        vals: list[int] = []
        for pos, part in enumerate(_split(st)):
            kind = self.kind[pos]
            clocks = [v for v in CLOCKS[kind](part) if v >= 0]
            ids.append(self._part(pos, FILL[kind](part, _slot), len(clocks)))
            vals += clocks
        return (self._composite(tuple(ids)), *vals)

    def unpack(self, p: Packed) -> State:
        sk = self.skeletons[p[0]]
        return _with_timers(sk.rep, [p[1 + (v - MARK) // STRIDE] if v >= HALF else v for v in sk.marks])

    def timeless(self, p: Packed) -> State:
        """The state up to its clock values: its skeleton's representative (markers in the slots)."""
        return self.skeletons[p[0]].rep

    def _part(self, pos: int, value: Any, slots: int) -> int:
        kind = self.kind[pos]
        index = self.part_index[kind]
        i = index.get(value)
        if i is None:
            i = index[value] = len(self.part_values[kind])
            self.part_values[kind].append(value)
            self.part_slots[kind].append(slots)
        return i

    def _composite(self, ids: tuple[int, ...]) -> int:
        i = self.index.get(ids)
        if i is not None:
            return i
        i = self.index[ids] = len(self.skeletons)
        offsets = []
        n = 0
        marks: list[int] = []
        rep_parts = []
        for pos, pid in enumerate(ids):
            offsets.append(1 + n)
            kind = self.kind[pos]
            key = (kind, pid, n)
            marked = self._marked.get(key)
            if marked is None:
                marked = self._marked[key] = self._mark(kind, pid, n)
            rep_parts.append(marked[0])
            marks += marked[1]
            n += self.part_slots[kind][pid]
        sk = Skeleton(ids, tuple(offsets), n, _join(rep_parts), marks, tuple(rep_parts))
        self.skeletons.append(sk)
        local: Sequence[tuple[int, ...] | None] = [self.part_running[self.kind[pos]].get(pid)
                                                   for pos, pid in enumerate(ids)]
        if any(r is None for r in local):
            local = self._running(sk, marks)
        sk.running = tuple(offsets[pos] + k for pos, r in enumerate(local) if r is not None for k in r)
        sk.run_part = tuple(pos for pos, r in enumerate(local) if r is not None for _ in r)
        sk.clocks = _getter(sk.running)
        sk.no_zeros = (False,) * len(sk.running)
        dec = [0] * (1 + n)
        for k in sk.running:
            dec[k] = 1
        sk.dec = tuple(dec)
        # a wait changes only clocks, and no property reads one: the representative stands for the state after
        safety, reach = self.pending.due(WAIT_1_MASK)
        if safety or reach:
            sk.wait_hits = list(self._hits(sk.rep, WAIT_1, WAIT_1_EVENTS, safety, reach, sk.rep) or ())
        return i

    def _mark(self, kind: int, pid: int, first: int) -> tuple[Any, list[int]]:
        """A part with a marker in each slot, the first one being the skeleton's slot `first` (0-based, in
        _timers order), and the part's clocks so marked."""
        marks: list[int] = []
        slot = count(first)

        def mark(v: int) -> int:
            m = MARK + STRIDE * next(slot) if v == SLOT else v
            marks.append(m)
            return m

        return FILL[kind](self.part_values[kind][pid], mark), marks

    def _running(self, sk: Skeleton, marks: list[int]) -> list[tuple[int, ...]]:
        """Each part's running clocks (slots within the part): those a 1 s wait decrements. Learnt once per
        part, from a wait on the representative, which must change nothing but clocks."""
        after, _ = self.system.step(sk.rep, WAIT_1)
        running = []
        for v, w in zip(marks, _timers(after), strict=True):
            if w == v - 1 and v >= MARK:
                running.append((v - MARK) // STRIDE)
            elif w != v and v >= 0:  # a negative clock is due: no wait happens while it is there
                raise PackingError(f"a wait changed a clock from {v} to {w}")
        if _with_timers(after, marks) != sk.rep:
            raise PackingError("a wait changed more than the clocks")
        local = []
        for pos, pid in enumerate(sk.parts):
            first = sk.offsets[pos] - 1
            width = self.part_slots[self.kind[pos]][pid]
            mine = tuple(k - first for k in running if first <= k < first + width)
            self.part_running[self.kind[pos]][pid] = mine
            local.append(mine)
        return local

    # ------------------------------------------------------------------ successors
    def successors(self, sk: Skeleton, zeros: tuple[bool, ...]) -> Successors:
        """The records of a skeleton whose running clocks are 0 where `zeros` says, in System.actions order,
        whether a wait follows them, and a count of the states that used them (for coverage)."""
        rep = sk.rep if True not in zeros else self._zeroed(sk, zeros)
        out: list[Record] = []
        waits = False
        for a in self.system.actions(rep):
            if a[0] == _WAIT:
                waits = True  # built per state: its length is the state's nearest deadline
                continue
            rec = sk.memo.get(a)
            if rec is None:
                rec = sk.memo[a] = self._record(sk, a)
            out.append(rec)
        entry = sk.lists[zeros] = (tuple(out), waits, [0])
        return entry

    def _zeroed(self, sk: Skeleton, zeros: tuple[bool, ...]) -> State:
        """The representative with the running clocks that `zeros` marks set to 0: only the parts holding one
        are refilled, each once per marked part and zeroed slots."""
        slots: dict[int, list[int]] = {}  # part position -> its zeroed markers
        for k, pos, z in zip(sk.running, sk.run_part, zeros, strict=True):
            if z:
                slots.setdefault(pos, []).append(MARK + (k - 1) * STRIDE)
        parts = list(sk.rep_parts)
        for pos, zero in slots.items():
            kind = self.kind[pos]
            key = (kind, sk.parts[pos], sk.offsets[pos], *zero)
            part = self._zero_parts.get(key)
            if part is None:
                part = self._zero_parts[key] = FILL[kind](parts[pos], _zero_at(frozenset(zero)))
            parts[pos] = part
        return _join(parts)

    def _record(self, sk: Skeleton, a: Action) -> Record:
        fp, views, parts_of = self._footprints.get(a) or self._footprint(a)
        key = (a, parts_of(sk.parts), *[self._view(sk, v) for v in views]) if views else (a, parts_of(sk.parts))
        memo = self.part_memo.get(key)
        if memo is None:
            changed, ev = self._part_result(sk, a, fp)
            memo = self.part_memo[key] = (changed, ev, tuple(pid for pid, _ in changed), event_mask(ev), {})
        elif self.verify and self._part_result(sk, a, fp) != memo[:2]:
            raise PackingError(f"{a} is not confined to its footprint {[Part(p).name for p in fp]}")
        changed, ev, new_ids, mask, shapes = memo
        if len(fp) == len(sk.parts):
            ids = new_ids
        else:
            parts = list(sk.parts)
            for pos, pid in zip(fp, new_ids, strict=True):
                parts[pos] = pid
            ids = tuple(parts)
        target = self._composite(ids)
        # how the successor's clocks come from the source's: the same for every skeleton of this layout
        shape = shapes.get(sk.layout)
        if shape is None:
            shape = shapes[sk.layout] = self._shape(sk, fp, changed)
        get, consts, order = shape
        safety, reach = self.pending.due(mask)
        hits = self._hits(sk.rep, a, ev, safety, reach, self.skeletons[target].rep) if safety or reach else None
        return (a, get, (target, *consts), ev, list(hits) if hits else (), order)

    @staticmethod
    def _shape(sk: Skeleton, fp: tuple[int, ...], changed: tuple[tuple[int, Transform], ...]) -> Shape:
        """The getter, the constants and the getter's positions that build a successor from the source's packed
        state."""
        new = {pos: clocks for pos, (_, clocks) in zip(fp, changed, strict=True)}
        width = 1 + sk.n  # the source's packed length; the target id and the constants come after it
        order = [width]
        consts: list[int] = []
        offsets = sk.offsets
        last = len(offsets) - 1
        for pos in range(len(offsets)):
            transform = new.get(pos)
            if transform is None:  # an untouched part: its clocks are copied
                order.extend(range(offsets[pos], offsets[pos + 1] if pos < last else width))
                continue
            for j, k in transform:
                if j < 0:
                    order.append(width + 1 + len(consts))
                    consts.append(k)
                else:
                    order.append(offsets[fp[j]] + k)
        if len(order) == 1 + len(consts):  # no clock is copied: the successor is the constants
            return None, tuple(consts), None
        return itemgetter(*order), tuple(consts), tuple(order)

    def _footprint(self, a: Action) -> Footprint:
        """Part positions (into a skeleton's parts) that step(_, a) reads and writes, whether it reads the
        read-only views it reads, and a getter of those parts' ids (with the views: the memo key; of one part,
        the id itself)."""
        claim = self.system.footprint(a)
        if claim is None:
            fp = tuple(range(self.n_flows + 2))
        else:
            fp = tuple(a[1] if p == Part.FLOW else self.n_flows + p - 1 for p in claim if p not in VIEWS)
        views = tuple(p for p in claim or () if p in VIEWS)
        out = self._footprints[a] = (fp, views, itemgetter(*fp))
        return out

    def _view(self, sk: Skeleton, view: Part) -> Any:
        if view == _FLOW_SUMMARY:
            return self._summary(sk)
        sched = sk.parts[self.n_flows]
        out = self.statuses.get(sched)
        if out is None:
            value = self.part_values[1][sched]
            out = self.statuses[sched] = self.system.status_view(value[0], value[3])
        return out

    def _summary(self, sk: Skeleton) -> tuple[int, ...]:
        if sk.summary is None:
            per = []
            for pid in sk.parts[:self.n_flows]:
                one = self.summaries.get(pid)
                if one is None:
                    one = self.summaries[pid] = self.system.flow_summary(self.part_values[0][pid])
                per.append(one)
            sk.summary = tuple(map(sum, zip(*per, strict=True)))
        return sk.summary

    def _part_result(self, sk: Skeleton, a: Action, fp: tuple[int, ...]) -> PartResult:
        """step(a) on the skeleton's representative, as new footprint parts and their clock transforms."""
        n_state, ev = self.system.step(sk.rep, a)
        for e in ev:
            if e[1] >= HALF or e[2] >= HALF or e[3] >= HALF:
                raise PackingError(f"the events of {a} carry a clock value: {e}")
        parts = _split(n_state)
        if len(parts) != len(sk.rep_parts):
            raise PackingError(f"{a} changed the number of flows")
        for pos, (before, after) in enumerate(zip(sk.rep_parts, parts, strict=True)):
            if before is not after and pos not in fp and before != after:
                raise PackingError(f"{a} wrote part {pos} outside its footprint")
        rep_parts = sk.rep_parts
        spans: list[tuple[int, int, int]] = []  # the footprint's source slots (j, first, width), when needed
        changed: list[tuple[int, Transform]] = []
        for j, pos in enumerate(fp):
            part = parts[pos]
            kind = self.kind[pos]
            if part is rep_parts[pos] or part == rep_parts[pos]:  # untouched: the same part, its clocks kept
                width = self.part_slots[kind][sk.parts[pos]]
                changed.append((sk.parts[pos], tuple((j, k) for k in range(width))))
                continue
            transform: list[tuple[int, int]] = []
            for v in CLOCKS[kind](part):
                if v < 0:
                    continue
                if v < HALF:
                    transform.append((-1, v))
                    continue
                k, r = divmod(v - MARK, STRIDE)
                if not spans:
                    spans = [(jj, sk.offsets[p] - 1, self.part_slots[self.kind[p]][sk.parts[p]])
                             for jj, p in enumerate(fp)]
                src = None
                for jj, first, width in spans:
                    if first <= k < first + width:
                        src = (jj, k - first)
                        break
                if r or src is None:
                    raise PackingError(f"{a} computed a clock from another one, or read one outside its "
                                       f"footprint ({v - MARK})")
                transform.append(src)
            changed.append((self._part(pos, FILL[kind](part, _slot), len(transform)), tuple(transform)))
        return tuple(changed), self._intern(ev)

    def _hits(self, s: State, a: Action, ev: tuple[Event, ...], safety: list[SafetyCheck], reach: list[ReachCheck],
              n: State) -> Hits | None:
        """What the due checks (PendingChecks.due) find on the transition s -a-> n."""
        sys = self.system
        viol = tuple(name for name, violated, _ in safety if violated(sys, s, a, ev, n))
        got = tuple((pn, rn) for pn, rn, holds, _ in reach if holds(sys, s, a, ev, n))
        return (viol, got) if viol or got else None

    def _intern(self, x: Any) -> Any:
        return self.interned.setdefault(x, x)
