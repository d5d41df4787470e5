"""The control plane: IPVS destinations (ip_vs_ctl.c: add, weight, delete to the trash) and kube-proxy, which
drives them (syncProxyRules, graceful termination and its periodic deletion check).
"""

from __future__ import annotations

from ipvs_verify.model.core import Core
from ipvs_verify.model.events import Ev, Event
from ipvs_verify.model.state import Dest, DestStatus, PodPhase, Sock, State, counters


class ControlPlane(Core):
    """ip_vs_ctl.c destinations, and kube-proxy's sync and graceful-deletion check."""

    def _endpoints_changed(self, st: State) -> State:
        # informer event -> Sync() -> BoundedFrequencyRunner: runs within min-sync-period
        if st.sync_timer < 0:
            return st._replace(sync_timer=self.timing.sync_delay)
        return st

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
