"""kube-proxy's IPVS-mode real-server decisions, as pure functions: the one description of them that the
model (model/control_plane.py) and the real-kernel harness (conformance/kernel.py) both apply.

Each function takes a view of one virtual server's real servers, one `RsView` per pod (what kube-proxy
wants, what `GetRealServers` shows, what its graceful-delete list holds) and returns the operations
kube-proxy performs, in its order. The caller applies them: the model to its State, the harness with
`ipvsadm -a/-e/-d`. The deletion criterion is the release's `KubeProxyVersion.rs_deletable`, called
through the object the caller passes, never copied here.

Source: ../shared/reference/kube-proxy.md (sections 1, 2, 8); pkg/proxy/ipvs/proxier.go syncEndpoint and
pkg/proxy/ipvs/graceful_termination.go GracefulDeleteRS, deleteRsFunc, tryDeleteRs (flushList),
MoveRSOutofGracefulDeleteList, in 1.12.2 (#66012) and 1.30.3 (same shape).

Abstractions (docs/model.md, "What the model leaves out"):
* one read per call: the counters in the view stand for deleteRsFunc's own GetRealServers; the delete
  that follows may be applied in the same step, or (Scope.kp_window) after one packet that passed between
  the read and the delete (`read_deletes` names the deletes that follow a read);
* 1.11.5-1.13.0's remove() never removed an entry (`if _, ok := q.list[..]; ok { return false }`, fixed
  by #71515): here DEQUEUE always removes. The stale entry names a deleted real server that no explored
  step re-adds (a deleted pod is never desired again; only a scenario's add-dest could), and tryDeleteRs
  finds it absent and does nothing, so no kernel operation differs;
* the list is a Go map (flushList walks it in random order); here pods are walked in order. Deleting
  two real servers commutes: each delete unlinks its own dest, and the rr cursor ends on the nearest
  remaining predecessor either way (ip_vs_rr_del_dest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class Op(Enum):
    ADD = "add"  # ipvs.AddRealServer(RealServer{Weight: 1}): ipvsadm -a -w 1
    QUIESCE = "quiesce"  # rs.Weight = 0; ipvs.UpdateRealServer: ipvsadm -e -w 0
    DELETE = "delete"  # ipvs.DeleteRealServer: ipvsadm -d
    ENQUEUE = "enqueue"  # rsList.add: re-checked every rsCheckDeleteInterval
    DEQUEUE = "dequeue"  # rsList.remove


@dataclass(frozen=True)
class RsOp:
    op: Op
    pod: int  # index into the views passed in
    weight: int = 0  # ADD only: syncEndpoint's newDest.Weight


@dataclass(frozen=True)
class RsView:
    """One pod's real server as kube-proxy sees it. Its weight is not here: no decision below reads it
    (only initialSync's weight reset does, #111635, after a restart, which is not modelled)."""

    listed: bool  # desired: a ready endpoint (newEndpoints)
    linked: bool  # in the kernel's list (curEndpoints, from GetRealServers)
    graceful: bool  # in the graceful-delete list (InTerminationList)
    active: int = 0  # ActiveConn as GetRealServers reads it
    inactive: int = 0  # InactiveConn


class DeletionCriterion(Protocol):
    """What the decisions need of a release: model.kube_proxy.KubeProxyVersion, or a patch's replacement."""

    def rs_deletable(self, is_udp: bool, active: int, inactive: int) -> bool: ...


def graceful_delete_rs(kp: DeletionCriterion, is_udp: bool, pod: int, rs: RsView) -> tuple[RsOp, ...]:
    """GracefulDeleteRS on a linked real server: deleteRsFunc first (delete if the release's criterion
    allows it); if not deleted, weight 0 and onto the list for tryDeleteRs."""
    if kp.rs_deletable(is_udp, rs.active, rs.inactive):
        return (RsOp(Op.DELETE, pod),)
    return RsOp(Op.QUIESCE, pod), RsOp(Op.ENQUEUE, pod)


def sync_endpoint(kp: DeletionCriterion, is_udp: bool, views: Sequence[RsView]) -> tuple[RsOp, ...]:
    """proxier.go syncEndpoint: first every desired endpoint (newEndpoints.List(), sorted as strings:
    10.244.0.2:80 < .3 < .4, pod order), then every linked one no longer desired (curEndpoints minus
    newEndpoints; order immaterial, as in flushList)."""
    ops: list[RsOp] = []
    for p, rs in enumerate(views):
        if not rs.listed:
            continue
        if rs.linked:
            if not rs.graceful:
                continue  # curEndpoints.Has(ep) and not InTerminationList: left as it is
            # MoveRSOutofGracefulDeleteList: DeleteRealServer, then rsList.remove; then AddRealServer below
            ops += (RsOp(Op.DELETE, p), RsOp(Op.DEQUEUE, p))
        # not in curEndpoints: AddRealServer without a look at the list (an entry there stays)
        ops.append(RsOp(Op.ADD, p, 1))
    for p, rs in enumerate(views):
        # "if curEndpoint is in gracefulDelete, skip"
        if not rs.listed and rs.linked and not rs.graceful:
            ops += graceful_delete_rs(kp, is_udp, p, rs)
    return tuple(ops)


def try_delete_rs(kp: DeletionCriterion, is_udp: bool, views: Sequence[RsView]) -> tuple[RsOp, ...]:
    """graceful_termination.go tryDeleteRs (every rsCheckDeleteInterval = 1 min): flushList runs
    deleteRsFunc on each listed real server and removes it from the list when it reports deleted."""
    ops: list[RsOp] = []
    for p, rs in enumerate(views):
        if not rs.graceful:
            continue
        if not rs.linked:
            # "can't find the real server": deleteRsFunc returns true (with an error); off the list
            ops.append(RsOp(Op.DEQUEUE, p))
        elif kp.rs_deletable(is_udp, rs.active, rs.inactive):
            ops += (RsOp(Op.DELETE, p), RsOp(Op.DEQUEUE, p))
    return tuple(ops)


class Release(Protocol):
    """Whether the release has graceful termination at all (model.kube_proxy.KubeProxyVersion)."""

    @property
    def graceful_termination(self) -> bool: ...


def read_deletes(kp: Release, ops: Sequence[RsOp], views: Sequence[RsView], check: bool) -> tuple[int, ...]:
    """The pods whose DELETE deleteRsFunc makes after reading their counters: GetRealServers, then
    DeleteRealServer, two netlink calls a packet can pass between (graceful_termination.go deleteRsFunc, 1.30).
    Every delete of the check (tryDeleteRs -> deleteRsFunc), and a sync's of a real server no longer desired
    (GracefulDeleteRS -> deleteRsFunc); not MoveRSOutofGracefulDeleteList's, which deletes without a read, nor
    those of a release before #66012, whose syncEndpoint deleted at once."""
    if not kp.graceful_termination:
        return ()
    return tuple(o.pod for o in ops if o.op is Op.DELETE and (check or not views[o.pod].listed))


def split_at_delete(ops: Sequence[RsOp], pod: int) -> tuple[tuple[RsOp, ...], tuple[RsOp, ...]]:
    """The operations before the DELETE of `pod`, and that DELETE with the rest: where a packet passes in the
    read/delete window (the model's `ControlPlane._raced` and the real-kernel harness both split here)."""
    k = next(i for i, o in enumerate(ops) if o.op is Op.DELETE and o.pod == pod)
    return tuple(ops[:k]), tuple(ops[k:])
