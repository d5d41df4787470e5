"""Explicit-state breadth-first search: shortest counterexamples, coverage, reachability checks.

Single-threaded and deterministic: states are numbered in BFS order, so the first violating transition
found for a safety property ends a shortest trace. Edges are recorded as flat integer arrays for the
liveness pass (its graph arrays are built only afterwards, from the states that matter).

Two searches give the same exploration: `explore` over packed states with memoised transitions
(engines/packed.py), the one every command uses, and `explore_plain` over whole `State` values with one
`System.step` per transition, the reference it is tested against (`matrix --search plain`).
"""

from __future__ import annotations

import gc
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from operator import itemgetter, sub
from types import ModuleType
from typing import Any

from ipvs_verify.engines.checks import GOAL_MET, Goal, PendingChecks
from ipvs_verify.engines.packed import Packer
from ipvs_verify.model.events import Ev, Event
from ipvs_verify.model.state import State
from ipvs_verify.model.system import ACTION_NAMES, Act, Action, System
from ipvs_verify.properties.catalog import Property, event_mask

_packed_loop: ModuleType | None
try:  # the packed search's loop in C, when the install could build it (pyproject.toml, ext-modules)
    from ipvs_verify.engines import _packed_loop
except ImportError:  # pragma: no cover - depends on the build
    _packed_loop = None
if array("i").itemsize != 4:  # pragma: no cover - the compiled loop hands back int32 arrays
    _packed_loop = None


@dataclass
class Found:
    """A violating transition: the path to `src`, then `action`."""

    src: int
    action: Action


@dataclass
class Exploration:
    system: System
    keys: list[Any]  # state index -> the search's key of the state (packed, or the State itself)
    decode: Callable[[Any], State]  # key -> State
    parent: array  # state index -> parent index (-1 for initial states)
    via: list[Action | None]  # action from the parent
    depth: array
    # the edges, grouped by source in BFS order: state i's are edge_start[i] .. edge_start[i + 1] - 1
    edge_start: array
    edge_dst: array
    # each edge's label: an object holding its action and its events (interned), read with label_parts
    edge_label: list[Any]
    label_parts: Callable[[Any], tuple[Action, tuple[Event, ...]]]
    violations: dict[str, Found] = field(default_factory=dict)
    reached: dict[str, set[str]] = field(default_factory=dict)  # property -> sometimes-checks reached
    coverage: Counter[str] = field(default_factory=Counter)
    complete: bool = True  # False when the state cap stopped the search
    bound: str = ""
    seconds: float = 0.0
    # the loop that ran: the packed search's "compiled" one (engines/_packed_loop.c) or its "python" one, or the
    # "plain" search's
    loop: str = "python"
    _src: array | None = None
    _acts: list[Action] | None = None
    _evs: list[tuple[Event, ...]] | None = None
    _states: list[State] | None = None
    # key -> a State equal to the key's up to clock values, shared by all keys with the same skeleton: what
    # reads no clock (the properties' predicates, the lasso's fairness) may read it instead of decoding
    timeless: Callable[[Any], State] | None = None

    @property
    def states(self) -> list[State]:
        """Every state, in BFS order (decoded once, on first use)."""
        if self._states is None:
            decode = self.decode
            self._states = [decode(k) for k in self.keys]
        return self._states

    def timeless_states(self) -> list[State]:
        """Every state up to its clocks, in BFS order (one shared object per skeleton: no decoding)."""
        if self.timeless is None:
            return self.states
        timeless = self.timeless
        return [timeless(k) for k in self.keys]

    @property
    def n_states(self) -> int:
        return len(self.keys)

    @property
    def n_edges(self) -> int:
        return len(self.edge_dst)

    @property
    def edge_src(self) -> array:
        """Each edge's source state (built once, on first use)."""
        if self._src is None:
            start = self.edge_start
            self._src = array("i")
            for i in range(len(start) - 1):
                self._src.extend([i] * (start[i + 1] - start[i]))
        return self._src

    @property
    def edge_act(self) -> list[Action]:
        """Each edge's action (built once, on first use)."""
        if self._acts is None:
            self._label_lists()
        assert self._acts is not None
        return self._acts

    @property
    def edge_ev(self) -> list[tuple[Event, ...]]:
        """Each edge's events, for the liveness pass (built once, on first use)."""
        if self._evs is None:
            self._label_lists()
        assert self._evs is not None
        return self._evs

    def _label_lists(self) -> None:
        parts = self.label_parts
        pairs = [parts(x) for x in self.edge_label]
        self._acts = [a for a, _ in pairs]
        self._evs = [ev for _, ev in pairs]

    @property
    def max_depth(self) -> int:
        return max(self.depth) if len(self.depth) else 0

    def path_to(self, i: int) -> list[Action]:
        out: list[Action] = []
        while self.parent[i] >= 0:
            a = self.via[i]
            assert a is not None
            out.append(a)
            i = self.parent[i]
        out.reverse()
        return out


Progress = Callable[[int, int, int, float], None]  # (states, edges, depth, seconds)


def explore_plain(
    system: System,
    properties: tuple[Property, ...],
    max_states: int = 2_000_000,
    progress: Progress | None = None,
    keep_edges: bool = True,
    goal: Goal | None = None,
) -> Exploration:
    """The search on whole `State` values, one `System.step` per transition: the reference that the packed
    search (`explore`) is tested against, state by state and edge by edge. With a `goal`, it stops after the
    state at which the goal is met (checks.Goal)."""
    t0 = time.perf_counter()
    ex, index = _start(system, _same, _same, {}, {p.name: set() for p in properties}, _pair)
    ex.loop = "plain"
    states, parent, depth, via = ex.keys, ex.parent, ex.depth, ex.via
    pending = PendingChecks(properties, ex.violations, ex.reached)
    fired = [0] * (max(Act) + 1)
    masks: dict[tuple[Event, ...], tuple[tuple[Event, ...], int]] = {}  # events -> (interned, event_mask)
    edge_start, edge_dst, edge_label = ex.edge_start, ex.edge_dst, ex.edge_label
    violations = ex.violations
    head = 0
    stop = goal is not None and goal.met(violations, ex.reached)  # an empty goal: nothing to search for
    if stop:
        ex.complete, ex.bound = False, GOAL_MET
        head = len(states)
    step = system.step
    actions = system.actions
    with _no_gc():
        while head < len(states):
            i = head
            head += 1
            s = states[i]
            d = depth[i]
            if keep_edges:
                edge_start.append(len(edge_dst))
            for a in actions(s):
                n, ev = step(s, a)
                fired[a[0]] += 1
                j = index.get(n)
                if j is None:
                    if len(states) >= max_states:
                        ex.complete = False
                        ex.bound = f"state cap {max_states}"
                        continue
                    j = len(states)
                    index[n] = j
                    states.append(n)
                    parent.append(i)
                    depth.append(d + 1)
                    via.append(a)
                known = masks.get(ev)
                if known is None:
                    known = masks[ev] = (ev, event_mask(ev))
                ev, mask = known
                due_safety, due_reach = pending.due(mask)
                if keep_edges:
                    edge_dst.append(j)
                    edge_label.append((a, ev))
                reported = False
                for name, violated, _ in due_safety:
                    if violated(system, s, a, ev, n):
                        violations[name] = Found(i, a)
                        reported = True
                for pname, rname, holds, _ in due_reach:
                    if holds(system, s, a, ev, n):
                        ex.reached[pname].add(rname)
                        reported = True
                if reported:
                    pending.reported()
                    if goal is not None and goal.met(violations, ex.reached):
                        stop = True
            if progress is not None and head % 20000 == 0:
                progress(len(states), len(edge_dst), d, time.perf_counter() - t0)
            if stop:
                ex.complete, ex.bound = False, GOAL_MET
                break
    _finish(ex, fired, t0, progress)
    return ex


@contextmanager
def _no_gc() -> Iterator[None]:
    """The searches build no reference cycles, so the cyclic collector would only walk their live tuples: it
    is off while they run, and afterwards what they built is frozen (gc.freeze: never walked again, still
    freed by reference counting). Re-enabled without that, its first pass walked every object of the search:
    0.15 s of a 0.9 s search (measured). Garbage already pending is collected first, so none is frozen."""
    was_on = gc.isenabled()
    if was_on:
        gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.freeze()
            gc.enable()


def freeze_before_fork() -> None:
    """Before forking worker processes: collect, then freeze what this process holds, so that a collection in a
    worker (each search starts with one, see _no_gc) never walks the objects it inherited (the gc module's
    advice for fork without exec). Unfrozen, that walk cost each search about 20 ms (measured)."""
    gc.collect()
    gc.freeze()


def _same(st: State) -> State:
    return st


def _pair(label: tuple[Action, tuple[Event, ...]]) -> tuple[Action, tuple[Event, ...]]:
    return label  # the plain search's edge label is (action, events)


def _start(system: System, key: Callable[[State], Any], decode: Callable[[Any], State],
           violations: dict[str, Found], reached: dict[str, set[str]],
           label_parts: Callable[[Any], tuple[Action, tuple[Event, ...]]]) -> tuple[Exploration, dict[Any, int]]:
    """An exploration holding the initial states (keyed by `key`), and the index of their keys."""
    ex = Exploration(system, [], decode, array("i"), [], array("i"), array("i"), array("i"), [], label_parts,
                     violations, reached)
    index: dict[Any, int] = {}
    for s in system.initial_states():
        k = key(s)
        if k not in index:
            index[k] = len(ex.keys)
            ex.keys.append(k)
            ex.parent.append(-1)
            ex.depth.append(0)
            ex.via.append(None)
    return ex, index


def _finish(ex: Exploration, fired: list[int], t0: float, progress: Progress | None) -> None:
    if ex.edge_start:
        ex.edge_start.append(len(ex.edge_dst))
    else:  # edges were not kept
        ex.edge_start.extend([0] * (ex.n_states + 1))
    ex.coverage.update({ACTION_NAMES[Act(k)]: c for k, c in enumerate(fired) if c})
    ex.seconds = time.perf_counter() - t0
    if progress is not None:
        progress(ex.n_states, ex.n_edges, ex.max_depth, ex.seconds)


def explore(
    system: System,
    properties: tuple[Property, ...],
    max_states: int = 2_000_000,
    progress: Progress | None = None,
    keep_edges: bool = True,
    verify: bool = False,
    compiled: bool = True,
    goal: Goal | None = None,
) -> Exploration:
    """Breadth-first search over packed states (engines/packed.py): the same states, in the same order, with
    the same edges, violations and coverage as `explore_plain`, from memoised transitions. `verify`
    recomputes every memoised step where it is applied (slow: for tests). `compiled` runs the loop in C
    (engines/_packed_loop.c) when that module was built, else `_python_loop`: the same loop, and the same
    exploration (`Exploration.loop` says which ran). An untimed system runs the plain search (engines/packed.py
    says why). With a `goal`, it stops after the state at which the goal is met (checks.Goal)."""
    if system.untimed:
        return explore_plain(system, properties, max_states, progress, keep_edges, goal)
    t0 = time.perf_counter()
    violations: dict[str, Found] = {}
    reached: dict[str, set[str]] = {p.name: set() for p in properties}
    pending = PendingChecks(properties, violations, reached)
    packer = Packer(system, pending, verify)
    ex, index = _start(system, packer.pack, packer.unpack, violations, reached, _record_label)
    ex.timeless = packer.timeless

    def report(i: int, a: Action, hits: list[Any]) -> bool:
        """A record's hits, the first time it fires: what they violate or reach is kept, then they are gone.
        True: the goal is met (the loop stops after this state)."""
        viol, reach = hits
        for name in viol:
            if name not in violations:
                violations[name] = Found(i, a)
        for pname, rname in reach:
            reached[pname].add(rname)
        hits.clear()  # reported: any later occurrence adds nothing
        pending.reported()
        return goal is not None and goal.met(violations, reached)

    def tick(states: int, edges: int, depth: int) -> None:
        assert progress is not None
        progress(states, edges, depth, time.perf_counter() - t0)

    run = _compiled_loop if compiled and _packed_loop is not None else _python_loop
    exact = system.timing_mode == "exact"
    if goal is not None and goal.met(violations, reached):  # an empty goal: nothing to search for
        ex.complete, ex.bound = False, GOAL_MET
        _finish(ex, [0] * (max(Act) + 1), t0, progress)
        return ex
    with _no_gc():
        fired_waits, flags = run(ex, index, packer, max_states, keep_edges, exact, report,
                                 tick if progress is not None else None)
    if flags & 1:
        ex.complete = False
        ex.bound = f"state cap {max_states}"
    if flags & 2:  # the goal settled first (a cap reached on the way weakens nothing: the goal is met)
        ex.complete, ex.bound = False, GOAL_MET
    fired = [0] * (max(Act) + 1)
    fired[Act.WAIT] += fired_waits
    for sk in packer.skeletons:  # every record of a list fired once per state that used it
        for recs, _, used in sk.lists.values():
            for rec in recs:
                fired[rec[0][0]] += used[0]
    _finish(ex, fired, t0, progress)
    return ex


Report = Callable[[int, Action, list[Any]], bool]
Tick = Callable[[int, int, int], None]


def _python_loop(ex: Exploration, index: dict[Any, int], packer: Packer, max_states: int, keep_edges: bool,
                 exact: bool, report: Report, tick: Tick | None) -> tuple[int, int]:
    """The packed search's breadth-first loop: (waits taken, flags: 1 the state cap was reached, 2 report()
    said the goal is met, and the loop stopped after that state)."""
    keys, parent, depth, via = ex.keys, ex.parent, ex.depth, ex.via
    edge_start, edge_dst, edge_label = ex.edge_start, ex.edge_dst, ex.edge_label
    skeletons = packer.skeletons
    count = len(keys)
    fired_waits = 0
    capped = False
    stop = False
    head = 0
    while head < count:
        i = head
        head += 1
        p = keys[i]
        d = depth[i]
        sk = skeletons[p[0]]
        vals = sk.clocks(p)  # the running clocks
        zeros = tuple([v == 0 for v in vals]) if 0 in vals else sk.no_zeros
        entry = sk.lists.get(zeros)
        if entry is None:
            entry = packer.successors(sk, zeros)
        recs, waits_here, used = entry
        used[0] += 1
        if keep_edges:
            edge_start.append(len(edge_dst))
        if waits_here:
            # wait to the nearest deadline (and, in exact timing, by 1 s too): built per state
            t = min(vals)
            for w in (t, 1) if exact and t > 1 else (t,):
                wa = sk.waits.get(w)
                if wa is None:
                    wa = sk.waits[w] = (*_wait(w), tuple([w * m for m in sk.dec]))
                recs = recs + ((wa[0], None, tuple(map(sub, p, wa[2])), wa[1], sk.wait_hits, None),)
                fired_waits += 1
        for rec in recs:
            a, get, consts, _, hits, _ = rec
            n = consts if get is None else get(p + consts)
            j = index.setdefault(n, count)
            if j == count:
                if count >= max_states:
                    del index[n]
                    capped = True
                    continue
                count += 1
                keys.append(n)
                parent.append(i)
                depth.append(d + 1)
                via.append(a)
            if keep_edges:
                edge_dst.append(j)
                edge_label.append(rec)
            if hits:
                stop |= report(i, a, hits)
        if tick is not None and head % 20000 == 0:
            tick(count, len(edge_dst), d)
        if stop:
            break
    return fired_waits, int(capped) | int(stop) << 1


def _compiled_loop(ex: Exploration, index: dict[Any, int], packer: Packer, max_states: int, keep_edges: bool,
                   exact: bool, report: Report, tick: Tick | None) -> tuple[int, int]:
    """`_python_loop` in C (engines/_packed_loop.c): its int arrays come back as bytes."""
    assert _packed_loop is not None
    parent, depth, start, dst, fired_waits, capped = _packed_loop.run(
        ex.keys, index, ex.via, ex.edge_label, packer.skeletons, packer.successors, _wait, report, tick,
        ex.parent, ex.depth, max_states, exact, keep_edges)
    ex.parent, ex.depth, ex.edge_start, ex.edge_dst = (_int_array(b) for b in (parent, depth, start, dst))
    ex.loop = "compiled"
    return fired_waits, capped


def _int_array(raw: bytes) -> array:
    out = array("i")
    out.frombytes(raw)  # the compiled loop's int32, in this machine's byte order
    return out


@cache
def _wait(w: int) -> tuple[Action, tuple[Event, ...]]:
    """A wait of w seconds: its action and events (one shared pair per length)."""
    return (Act.WAIT, w, 0), ((Ev.TIME, 0, w, 0),)


_record_label = itemgetter(0, 3)  # a packed search's edge label is its Record: (action, get, consts, events, ...)


def explore_packed_python(system: System, properties: tuple[Property, ...], max_states: int = 2_000_000,
                          progress: Progress | None = None, keep_edges: bool = True,
                          goal: Goal | None = None) -> Exploration:
    """The packed search with its loop in Python, even where the compiled one was built."""
    return explore(system, properties, max_states, progress, keep_edges, compiled=False, goal=goal)


# the explicit searches by name (`matrix --search`, benchmarks): they give the same explorations
SEARCHES: dict[str, Callable[..., Exploration]] = {"packed": explore, "packed-python": explore_packed_python,
                                                   "plain": explore_plain}
