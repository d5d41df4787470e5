"""Scheduling a new connection (ip_vs_schedule): the scheduler's pick among usable dests, and persistence
templates (sessionAffinity: ClientIP).
"""

from __future__ import annotations

from ipvs_verify.model.core import Core
from ipvs_verify.model.events import Ev, Event
from ipvs_verify.model.state import CONTROLLED, OLD_TEMPLATE, DestStatus, State, Template, counters


class Scheduling(Core):
    """ip_vs_schedule and the persistence templates."""

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
                    tuple(self._overhead(st, d) for d in st.order), client_hash=f if self.sched.hashes_port else c)
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
