"""The control plane: IPVS destinations (ip_vs_ctl.c: add, weight, delete to the trash) and kube-proxy, which
drives them (syncProxyRules, graceful termination and its periodic deletion check). kube-proxy's decisions
are model/graceful_termination.py's, which the real-kernel harness applies too; here they act on the State.
"""

from __future__ import annotations

from collections.abc import Callable

from ipvs_verify.model import graceful_termination as gt
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
        for f in self._orphans_of(st, p):
            st = self._orphan_fin(st, f, ev, dest_deleted=True)  # its next FIN meets the server-status block
        return st

    def _rs_views(self, st: State) -> tuple[gt.RsView, ...]:
        """What kube-proxy sees of each pod's real server: desired, linked, listed for graceful deletion,
        and the counters GetRealServers reads (only where a decision may read them)."""
        views = []
        for p, pod in enumerate(st.pods):
            linked = st.dests[p].status == DestStatus.LINKED
            active, inactive = counters(st, p) if linked and (st.graceful[p] or not pod.listed) else (0, 0)
            views.append(gt.RsView(pod.listed, linked, st.graceful[p], active, inactive))
        return tuple(views)

    def _apply(self, st: State, ops: tuple[gt.RsOp, ...], views: tuple[gt.RsView, ...], ev: list[Event]) -> State:
        """kube-proxy's operations (model/graceful_termination.py) on the dests and its graceful list."""
        for o in ops:
            p = o.pod
            if o.op is gt.Op.ADD:
                st = self._add_dest(st, p, o.weight)
                ev.append((Ev.DEST_ADDED, p, o.weight, 0))
            elif o.op is gt.Op.QUIESCE:
                ev.append((Ev.DEST_QUIESCED, p, views[p].active + views[p].inactive, 0))
                st = self._set_weight(st, p, 0)
            elif o.op is gt.Op.DELETE:
                st = self._delete_dest(st, p, ev)
            else:
                graceful = list(st.graceful)
                graceful[p] = o.op is gt.Op.ENQUEUE
                st = st._replace(graceful=tuple(graceful))
        return st

    def _kp_step(self, st: State, check: bool, ev: list[Event]) -> tuple[State, tuple[gt.RsView, ...],
                                                                          tuple[gt.RsOp, ...]]:
        """The start of kube-proxy's sync or check: its timer, its event, the view it reads, its operations.
        One view serves the whole step: its operations on desired pods change no counter, link or list entry of
        an undesired one."""
        if check:
            # graceful_termination.go tryDeleteRs, every rsCheckDeleteInterval (wait.Until)
            st = st._replace(check_timer=self.timing.check_interval)
            ev.append((Ev.CHECKED, 0, 0, 0))
        else:
            st = st._replace(sync_timer=-1)
            ev.append((Ev.SYNCED, 0, 0, 0))
        return (st, *self._kp_ops(st, check))

    def _kp_ops(self, st: State, check: bool) -> tuple[tuple[gt.RsView, ...], tuple[gt.RsOp, ...]]:
        """The view a sync or check reads, and the operations kube-proxy decides on it."""
        views = self._rs_views(st)
        kp, udp = self.config.kube_proxy, self.udp
        return views, gt.try_delete_rs(kp, udp, views) if check else gt.sync_endpoint(kp, udp, views)

    def _sync(self, st: State, ev: list[Event]) -> State:
        """proxier.go syncEndpoint(): add desired real servers first, then quiesce or delete the rest."""
        st, views, ops = self._kp_step(st, False, ev)
        return self._apply(st, ops, views, ev)

    def _check(self, st: State, ev: list[Event]) -> State:
        st, views, ops = self._kp_step(st, True, ev)
        return self._apply(st, ops, views, ev)

    def window_pods(self, st: State, check: bool) -> tuple[int, ...]:
        """The pods whose real server this sync or check reads and then deletes (Scope.kp_window)."""
        # most states have no candidate: a linked real server, listed for deletion or no longer desired, that a
        # packet can reach
        candidates = [p for p, (d, g, pod) in enumerate(zip(st.dests, st.graceful, st.pods, strict=True))
                      if d.status == DestStatus.LINKED and (g if check else not pod.listed) and self._reachable(st, p)]
        if not candidates:
            return ()
        views, ops = self._kp_ops(st, check)
        return tuple(p for p in gt.read_deletes(self.config.kube_proxy, ops, views, check) if p in candidates)

    def _reachable(self, st: State, p: int) -> bool:
        """Can a packet land on p's real server now? Only if the scheduler may pick it (weight > 0), an entry
        points to it, or a persistence template does. A packet that cannot land on p commutes with p's delete
        (docs/model.md), so a window with it would only repeat an order of the atomic steps."""
        if st.dests[p].weight > 0:
            return True
        if any(t is not None and t.dest == p for t in st.templates):
            return True
        return any(e.dest == p for fl in st.flows for e in fl.entries)

    def _raced(self, st: State, check: bool, p: int, f: int, packet: Callable[[State, list[Event]], State],
               ev: list[Event]) -> State:
        """kube-proxy's sync or check with one packet of flow f between deleteRsFunc's read of p's counters
        (GetRealServers) and its DeleteRealServer (graceful_termination.go, 1.30): the operations before p's
        delete, the packet, then the rest, all decided on the read. The one packet stands for the window's
        traffic: a packet that does not land on p commutes with p's delete (docs/model.md). The RS_READ event
        says whether it landed: p's counters moved between the read and the delete."""
        st, views, ops = self._kp_step(st, check, ev)
        before, rest = gt.split_at_delete(ops, p)
        st = self._apply(st, before, views, ev)
        at = len(ev)
        st = packet(st, ev)
        read = (views[p].active, views[p].inactive)
        ev.insert(at, (Ev.RS_READ, p, f + 1 if counters(st, p) != read else 0, sum(read)))
        return self._apply(st, rest, views, ev)
