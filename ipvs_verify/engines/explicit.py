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

from model.state import State
from model.system import Act, Action, System
from properties.catalog import Property


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
    violations: dict[str, Found] = field(default_factory=dict)
    reached: dict[str, set[str]] = field(default_factory=dict)  # property -> sometimes-checks reached
    coverage: Counter[str] = field(default_factory=Counter)
    complete: bool = True  # False when the state cap stopped the search
    bound: str = ""
    seconds: float = 0.0

    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def n_edges(self) -> int:
        return len(self.edge_src)

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
    ex = Exploration(system, states, parent, via, depth, array("i"), array("i"), [])
    safety = [p for p in properties if p.violated is not None]
    pending_reach = {p.name: list(p.sometimes) for p in properties}
    ex.reached = {p.name: set() for p in properties}
    open_reach = sum(len(v) for v in pending_reach.values())
    names = {k: k.name.lower().replace("_", "-") for k in Act}
    coverage = ex.coverage
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
            coverage[names[Act(a[0])]] += 1
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
                ex.edge_src.append(i)
                ex.edge_dst.append(j)
                ex.edge_act.append(a)
            for p in safety:
                if p.name not in ex.violations and p.violated(system, s, a, ev, n):  # type: ignore[misc]
                    ex.violations[p.name] = Found(i, a)
            if open_reach:
                for name, checks in pending_reach.items():
                    for r in checks:
                        if r.name not in ex.reached[name] and r.holds(system, s, a, ev, n):
                            ex.reached[name].add(r.name)
                            open_reach -= 1
        if progress is not None and head % 20000 == 0:
            progress(len(states), len(ex.edge_src), d, time.perf_counter() - t0)
    ex.seconds = time.perf_counter() - t0
    if progress is not None:
        progress(len(states), len(ex.edge_src), ex.max_depth, ex.seconds)
    return ex
