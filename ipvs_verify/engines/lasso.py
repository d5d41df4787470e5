"""Liveness by lasso search over an explored state graph.

For a liveness property and a pod, keep the states where the obligation is pending and unmet and the
transitions between them that do not discharge it; take that subgraph's strongly connected components
(scipy's csgraph, over numpy arrays of the explored graph), and look for one that is fair: it contains
every transition the fairness conditions require (time passes; a client connects ...), a state for each
justice condition, and no timer that stays armed around the whole cycle without firing. A fair component
yields a lasso: the shortest path to it, then a cycle through the witnesses.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ipvs_verify.engines.explicit import Exploration
from ipvs_verify.model.state import Neigh, PodPhase, Sock, State
from ipvs_verify.model.system import Act, Action, System
from ipvs_verify.properties.catalog import Property


@dataclass
class Lasso:
    pod: int
    prefix: list[Action]
    cycle: list[Action]

    @property
    def actions(self) -> list[Action]:
        return self.prefix + self.cycle


_TIMED_NEIGH = (Neigh.LIVE, Neigh.PROBING, Neigh.INCOMPLETE)  # the entries whose timer runs (a STALE one waits)


def armed(st: State) -> set[tuple[str, int]]:
    slots: set[tuple[str, int]] = set()
    for f, fl in enumerate(st.flows):
        if fl.entries:
            slots.add(("entries", f))
        if fl.client.sock in (Sock.SYN_SENT, Sock.TIME_WAIT, Sock.ORPHAN):
            slots.add(("client", f))
    for p, pod in enumerate(st.pods):
        if pod.phase == PodPhase.TERMINATING:
            slots.add(("pod", p))
        elif pod.neigh in _TIMED_NEIGH:  # bridge: the neighbour entry of a destroyed pod changes on its own
            slots.add(("neigh", p))
    if st.sync_timer >= 0:
        slots.add(("sync", 0))
    if st.flush_pending:
        slots.add(("flush", 0))
    for c, tpl in enumerate(st.templates):
        if tpl is not None:
            slots.add(("template", c))
    return slots


def _services(sys: System, a: Action) -> set[tuple[str, int]]:
    kind = a[0]
    if (kind == Act.SYNC or kind == Act.CHECK) and a[1]:  # a packet in kube-proxy's read/delete window
        return _services(sys, (kind, 0, 0)) | _services(sys, sys.racers[a[2]])
    # a client's packets may re-arm its persistence template (ip_vs_sched_persist): counting every one of
    # them weakens fairness, so that no real cycle is ever ruled out as unfair
    if kind in (Act.EXPIRE, Act.REQUEST, Act.CONNECT, Act.SEND, Act.CLOSE, Act.DATAGRAM):
        return {("entries", a[1]), ("template", a[1] // sys.scope.ports)}  # fires, or re-armed by a packet
    if kind == Act.CLIENT_TIMER:
        return {("client", a[1]), ("entries", a[1]), ("template", a[1] // sys.scope.ports)}
    if kind == Act.TEMPLATE_EXPIRE:
        return {("template", a[1])}
    if kind == Act.GRACE_END:
        return {("pod", a[1])}
    if kind == Act.NEIGH_STALE or kind == Act.NEIGH_FAILED:
        return {("neigh", a[1])}
    if kind == Act.SYNC:
        return {("sync", 0)}
    if kind == Act.FLUSH:
        return {("flush", 0)}
    return set()


def find_lasso(ex: Exploration, prop: Property) -> Lasso | None:
    live = prop.liveness
    assert live is not None
    sys: System = ex.system
    n = ex.n_states
    evs = ex.edge_ev
    discharges = live.discharges
    # the graph as arrays, once: SCCs by scipy's csgraph (C), the edge filters by numpy; only the small
    # components found go back to Python (tests/test_packed_search.py and the manifest pin the lassos)
    src, dst, crash, ev_id, distinct = _graph_arrays(ex)
    # no property predicate reads a clock: they read states up to their clocks (one object per skeleton of
    # the packed search, evaluated once; tests/test_packed_search.py checks the two readings agree)
    states = ex.timeless_states()
    for pod in range(sys.n_pods):
        memo: dict[int, bool] = {}
        flags = []
        for s in states:
            v = memo.get(id(s))
            if v is None:
                v = memo[id(s)] = bool(live.pending(sys, s, pod))
            flags.append(v)
        pending = np.array(flags, dtype=bool)
        if not pending.any():
            continue
        keep = pending[src] & pending[dst] & ~crash  # edges inside the pending states
        if discharges is not None:
            discharged = np.array([discharges(ev, pod) for ev in distinct], dtype=bool)
            keep &= ~discharged[ev_id]  # ... that do not discharge the obligation
        kept = np.nonzero(keep)[0]
        if not len(kept):
            continue
        ks, kd = src[kept], dst[kept]
        graph = csr_matrix((np.ones(len(kept), dtype=np.int8), (ks, kd)), shape=(n, n))
        _, labels = connected_components(graph, directed=True, connection="strong")
        sizes = np.bincount(labels)
        looped = np.zeros(len(sizes), dtype=bool)
        looped[labels[ks[ks == kd]]] = True
        wanted = (sizes > 1) | looped
        members = np.nonzero(wanted[labels] & pending)[0]
        if not len(members):
            continue
        by_label: dict[int, set[int]] = {}
        for i in members.tolist():
            by_label.setdefault(int(labels[i]), set()).add(i)
        comps = list(by_label.values())
        # the kept edges among the components' states: successors and each pair's edges (number, events)
        inside = wanted[labels[ks]] & (labels[ks] == labels[kd])
        succ: dict[int, list[int]] = {}
        edge_info: dict[tuple[int, int], list[tuple[int, tuple]]] = {}
        for k, i, j in zip(kept[inside].tolist(), ks[inside].tolist(), kd[inside].tolist(), strict=True):
            if (i, j) not in edge_info:
                succ.setdefault(i, []).append(j)
            edge_info.setdefault((i, j), []).append((k, evs[k]))
        for lst in succ.values():
            lst.sort()
        for comp in sorted(comps, key=min):
            lasso = _fair_lasso(ex, states, prop, pod, comp, succ, edge_info)
            if lasso is not None:
                return lasso
    return None


def _graph_arrays(ex: Exploration) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[tuple, int]]:
    """The explored graph as arrays (built once per exploration, shared by its liveness properties): each
    edge's source, destination, whether it is a client crash, and the number of its distinct event tuple."""
    cache = vars(ex)
    if "_lasso_arrays" not in cache:
        n = ex.n_edges
        src = np.asarray(ex.edge_src, dtype=np.int64)
        dst = np.asarray(ex.edge_dst, dtype=np.int64)
        # a client host crashes only finitely often (a failure, like the pod changes the scope budgets): no
        # fair cycle contains a crash
        crash = np.fromiter((a[0] == Act.CLIENT_CRASH for a in ex.edge_act), dtype=bool, count=n)
        distinct: dict[tuple, int] = {}
        ev_id = np.fromiter((distinct.setdefault(ev, len(distinct)) for ev in ex.edge_ev), dtype=np.int64, count=n)
        cache["_lasso_arrays"] = (src, dst, crash, ev_id, distinct)
    return cache["_lasso_arrays"]  # type: ignore[no-any-return]


def _fair_lasso(
    ex: Exploration, states: list[State], prop: Property, pod: int, comp: set[int], succ: dict[int, list[int]],
    edge_info: dict[tuple[int, int], list[tuple[int, tuple]]],
) -> Lasso | None:
    live = prop.liveness
    assert live is not None
    sys = ex.system
    # every transition inside the component: (src, dst, edge number, events)
    inner = [
        (i, j, k, ev) for i in sorted(comp) for j in succ.get(i, ()) if j in comp
        for k, ev in edge_info[(i, j)]
    ]
    witness_edges: list[tuple[int, int, int]] = []
    for _name, pred in live.must_happen:
        hit = next(
            (e for e in inner if pred(sys, states[e[0]], ex.edge_act[e[2]], e[3], states[e[1]])), None
        )
        if hit is None:
            return None
        witness_edges.append(hit[:3])
    witness_nodes: list[int] = []
    for _name, spred in live.justice:
        hit_node = next((i for i in sorted(comp) if spred(sys, states[i])), None)
        if hit_node is None:
            return None
        witness_nodes.append(hit_node)
    # weak fairness of timers: a slot armed in every state of the cycle must fire (or be re-armed) on it
    always = set.intersection(*(armed(states[i]) for i in comp))
    for slot in sorted(always):
        hit = next((e for e in inner if slot in _services(sys, ex.edge_act[e[2]])), None)
        if hit is None:
            return None
        witness_edges.append(hit[:3])
    entry = min(comp, key=lambda i: (ex.depth[i], i))
    cycle: list[Action] = []
    cur = entry
    targets: list[tuple[int, int, int]] = list(witness_edges) + [(n, -1, -1) for n in witness_nodes]
    for src, dst, k in targets:
        cycle += _path(ex, succ, comp, edge_info, cur, src)
        cur = src
        if k >= 0:
            cycle.append(ex.edge_act[k])
            cur = dst
    cycle += _path(ex, succ, comp, edge_info, cur, entry)
    if not cycle:  # the entry state loops onto itself
        cycle = [ex.edge_act[edge_info[(entry, entry)][0][0]]]
    return Lasso(pod, ex.path_to(entry), cycle)


def _path(
    ex: Exploration, succ: dict[int, list[int]], comp: set[int],
    edge_info: dict[tuple[int, int], list[tuple[int, tuple]]], src: int, dst: int,
) -> list[Action]:
    if src == dst:
        return []
    prev: dict[int, int] = {src: -1}
    q = deque([src])
    while q:
        i = q.popleft()
        if i == dst:
            break
        for j in succ.get(i, ()):
            if j in comp and j not in prev:
                prev[j] = i
                q.append(j)
    steps: list[Action] = []
    j = dst
    while prev[j] >= 0:
        i = prev[j]
        steps.append(ex.edge_act[edge_info[(i, j)][0][0]])
        j = i
    steps.reverse()
    return steps
