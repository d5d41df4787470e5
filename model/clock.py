"""Time (docs/time.md): the next deadline, a wait that moves every running clock, and the untimed
abstraction, which keeps only whether a timer is due or armed.
"""

from __future__ import annotations

from ipvs_verify.model.core import Core
from ipvs_verify.model.state import TIMED_SOCKS, Flow, PodPhase, State, with_timer


class Clock(Core):
    """Deadlines, waits and the untimed abstraction."""

    def _any_due(self, st: State) -> bool:
        # plain loops, not any() over generators: this runs on every untimed state
        if st.flush_pending or st.check_timer == 0 or st.sync_timer == 0:
            return True
        for flow in st.flows:
            for e in flow.entries:
                if e.timer <= 0:
                    return True
            if flow.client.timer == 0 and flow.client.sock in TIMED_SOCKS:
                return True
            if flow.ct_timer == 0:
                return True
        for t in st.templates:
            if t is not None and t.timer <= 0:
                return True
        for p in st.pods:
            if p.timer == 0 and p.phase == PodPhase.TERMINATING:
                return True
            if p.timer == 0 and p.phase == PodPhase.DESTROYED and self.bridge:
                return True
        return False

    def _next_deadline(self, st: State) -> int:
        t = st.check_timer
        if st.sync_timer > 0:
            t = min(t, st.sync_timer)
        for flow in st.flows:
            for e in flow.entries:
                t = min(t, e.timer)
            c = flow.client
            if c.sock in TIMED_SOCKS:
                t = min(t, c.timer)
            if flow.ct_timer >= 0:
                t = min(t, flow.ct_timer)
        for pod in st.pods:
            if pod.phase == PodPhase.TERMINATING or (self.bridge and pod.phase == PodPhase.DESTROYED
                                                     and pod.timer >= 0):
                t = min(t, pod.timer)
        for tpl in st.templates:
            if tpl is not None:
                t = min(t, tpl.timer)
        return t

    @staticmethod
    def _forget_time(st: State) -> State:
        """Untimed: keep only whether a timer is due (0) or armed (1). This runs after every untimed step, most
        of which arm nothing: only the parts holding a timer above 1 are rebuilt (plain loops, not nested
        generators, and `with_timer`, not `_replace`: this is a fifth of the untimed search)."""
        flows = st.flows
        for f, fl in enumerate(flows):
            c = fl.client
            stale = c.timer > 1 or fl.ct_timer > 1
            if not stale:
                for e in fl.entries:
                    if e.timer > 1:
                        stale = True
                        break
            if stale:
                fl = Flow(tuple([with_timer(e, 1) if e.timer > 1 else e for e in fl.entries]), fl.ct_live,
                          with_timer(c, 1) if c.timer > 1 else c, min(fl.ct_timer, 1))
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
        return State(flows, st.dests, st.order, st.cursor, pods, min(st.sync_timer, 1), min(st.check_timer, 1),
                     st.graceful, st.flush_pending, st.budget, templates)  # positional: a third of _replace's cost

    def _advance(self, st: State, d: int) -> State:
        flows = tuple(
            Flow(
                tuple(e._replace(timer=e.timer - d) for e in fl.entries),
                fl.ct_live,
                fl.client._replace(timer=fl.client.timer - d)
                if fl.client.sock in TIMED_SOCKS else fl.client,
                fl.ct_timer - d if fl.ct_timer >= 0 else -1,
            )
            for fl in st.flows
        )
        pods = tuple(p._replace(timer=p.timer - d) if p.phase == PodPhase.TERMINATING or (
            self.bridge and p.phase == PodPhase.DESTROYED and p.timer >= 0) else p for p in st.pods)
        templates = tuple(t._replace(timer=t.timer - d) if t is not None else t for t in st.templates)
        return st._replace(
            flows=flows, pods=pods, check_timer=st.check_timer - d,
            sync_timer=st.sync_timer - d if st.sync_timer >= 0 else -1, templates=templates,
        )
