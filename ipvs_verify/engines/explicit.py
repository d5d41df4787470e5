"""Explicit-state breadth-first search: shortest counterexamples, coverage, reachability checks.

Single-threaded and deterministic: states are numbered in BFS order, so the first violating transition
found for a safety property ends a shortest trace. Edges are recorded as flat integer arrays for the
liveness pass (a networkx graph is built only afterwards, from the states that matter).
"""

from __future__ import annotations

import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from model.events import Event
from model.state import State
from model.system import Act, Action, System
from properties.catalog import ALWAYS, Property


@dataclass
class Found:
    """A violating transition: the path to `src`, then `action`."""

    src: int
    action: Action


@dataclass
class Exploration:
    system: System
    states: list[State]
    parent: array  # state index -> parent index (-1 for initial states)
    via: list[Action | None]  # action from the parent
    depth: array
    edge_src: array
    edge_dst: array
    edge_act: list[Action]
    edge_ev: list[tuple[Event, ...]]  # the events of each edge (interned), for the liveness pass
    violations: dict[str, Found] = field(default_factory=dict)
    reached: dict[str, set[str]] = field(default_factory=dict)  # property -> sometimes-checks reached
    coverage: Counter[str] = field(default_factory=Counter)
    complete: bool = True  # False when the state cap stopped the search
    bound: str = ""
    seconds: float = 0.0
    _out: list[list[int]] | None = None

    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def n_edges(self) -> int:
        return len(self.edge_src)

    @property
    def max_depth(self) -> int:
        return max(self.depth) if len(self.depth) else 0

    def adjacency(self) -> list[list[int]]:
        """The edge numbers leaving each state, computed once (for the liveness pass)."""
        if self._out is None:
            self._out = [[] for _ in range(self.n_states)]
            for k, i in enumerate(self.edge_src):
                self._out[i].append(k)
        return self._out

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


def explore(
    system: System,
    properties: tuple[Property, ...],
    max_states: int = 2_000_000,
    progress: Progress | None = None,
    keep_edges: bool = True,
) -> Exploration:
    t0 = time.perf_counter()
    index: dict[State, int] = {}
    states: list[State] = []
    parent = array("i")
    depth = array("i")
    via: list[Action | None] = []
    for s in system.initial_states():
        if s not in index:
            index[s] = len(states)
            states.append(s)
            parent.append(-1)
            depth.append(0)
            via.append(None)
    ex = Exploration(system, states, parent, via, depth, array("i"), array("i"), [], [])
    # a property is evaluated only on transitions whose events can matter to it (its trigger mask)
    safety = [(p.name, p.violated, p.trigger_mask) for p in properties if p.violated is not None]
    reach = [(p.name, r.name, r.holds, r.trigger_mask) for p in properties for r in p.sometimes]
    ex.reached = {p.name: set() for p in properties}
    fired = [0] * (max(Act) + 1)
    interned: dict[tuple[Event, ...], tuple[Event, ...]] = {}
    edge_src, edge_dst, edge_act, edge_ev = ex.edge_src, ex.edge_dst, ex.edge_act, ex.edge_ev
    violations = ex.violations
    head = 0
    step = system.step
    actions = system.actions
    while head < len(states):
        i = head
        head += 1
        s = states[i]
        d = depth[i]
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
            if keep_edges:
                edge_src.append(i)
                edge_dst.append(j)
                edge_act.append(a)
                edge_ev.append(interned.setdefault(ev, ev))
            mask = ALWAYS  # the "always" bit, then one bit per event kind
            for e in ev:
                mask |= 1 << e[0]
            if safety:
                for k in range(len(safety) - 1, -1, -1):
                    name, violated, trig = safety[k]
                    if trig & mask and violated(system, s, a, ev, n):
                        violations[name] = Found(i, a)
                        del safety[k]
            if reach:
                for k in range(len(reach) - 1, -1, -1):
                    pname, rname, holds, trig = reach[k]
                    if trig & mask and holds(system, s, a, ev, n):
                        ex.reached[pname].add(rname)
                        del reach[k]
        if progress is not None and head % 20000 == 0:
            progress(len(states), len(ex.edge_src), d, time.perf_counter() - t0)
    names = {k: k.name.lower().replace("_", "-") for k in Act}
    ex.coverage.update({names[Act(k)]: c for k, c in enumerate(fired) if c})
    ex.seconds = time.perf_counter() - t0
    if progress is not None:
        progress(len(states), len(ex.edge_src), ex.max_depth, ex.seconds)
    return ex
