"""kube-proxy's real-server decisions (model/graceful_termination.py) against kube-proxy's Go source.

The expected operations come from `_Go` below, a line-by-line transcription of proxier.go syncEndpoint
and graceful_termination.go (GracefulDeleteRS, deleteRsFunc, tryDeleteRs/flushList,
MoveRSOutofGracefulDeleteList, remove) driving a fake IPVS that records its calls, with each release's
keep-criterion written from ../shared/reference/kube-proxy.md section 1 (not from rs_deletable). It is
compared with the pure functions on their whole small domain: 1 and 2 pods, every combination of desired,
linked, listed for graceful deletion and counters 0/1, TCP and UDP, kube-proxy 1.11.0, 1.13.0, 1.14.0, 1.30.
A last test checks that the model and the real-kernel harness both go through the module.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ipvs_verify.conformance.kernel import KernelScenario
from ipvs_verify.model import graceful_termination as gt
from ipvs_verify.model.actions import Act
from ipvs_verify.model.config import make_config
from ipvs_verify.model.events import Ev
from ipvs_verify.model.kube_proxy import kube_proxy_version
from ipvs_verify.model.state import DestStatus
from ipvs_verify.model.system import System, replay_system
from ipvs_verify.properties.catalog import BY_NAME, PROPERTIES
from ipvs_verify.runner.matrix import DEFAULT_SCOPE
from ipvs_verify.runner.verdicts import check_config
from ipvs_verify.scenario import load_scenario, scenario_config

ROOT = Path(__file__).resolve().parent.parent
A, Q, D, E, X = gt.Op.ADD, gt.Op.QUIESCE, gt.Op.DELETE, gt.Op.ENQUEUE, gt.Op.DEQUEUE


@dataclass(frozen=True)
class Release:
    """What graceful_termination.go looks like in a release (kube-proxy.md section 1)."""

    gt: bool  # #66012: GracefulTerminationManager exists (else syncEndpoint deletes at once)
    keep_inactive: bool  # #71515: `ActiveConn+InactiveConn != 0` keeps the RS (before: `ActiveConn != 0`)
    udp_at_once: bool  # #77802: UDP real servers deleted whatever the counters
    remove_works: bool  # #71515 also fixed remove(), which returned before deleting the entry


RELEASES = {
    "1.11.0": Release(gt=False, keep_inactive=False, udp_at_once=False, remove_works=False),
    "1.13.0": Release(gt=True, keep_inactive=False, udp_at_once=False, remove_works=False),
    "1.14.0": Release(gt=True, keep_inactive=True, udp_at_once=False, remove_works=True),
    "1.30": Release(gt=True, keep_inactive=True, udp_at_once=True, remove_works=True),
}


@dataclass
class _Go:
    """kube-proxy's Go code over a fake IPVS (ipvs.Interface) and its rsList, recording every operation."""

    rel: Release
    udp: bool
    rss: dict[int, tuple[int, int]]  # the kernel's real servers: pod -> (ActiveConn, InactiveConn)
    rs_list: set[int]
    calls: list[gt.RsOp] = field(default_factory=list)
    read_deleted: list[int] = field(default_factory=list)  # deletes that followed deleteRsFunc's GetRealServers

    # ipvs.Interface
    def add_real_server(self, p: int) -> None:
        self.rss[p] = (0, 0)
        self.calls.append(gt.RsOp(A, p, 1))

    def update_real_server_weight0(self, p: int) -> None:
        self.calls.append(gt.RsOp(Q, p))

    def delete_real_server(self, p: int) -> bool:  # False: the netlink call failed (no such dest)
        if p not in self.rss:
            return False
        del self.rss[p]
        self.calls.append(gt.RsOp(D, p))
        return True

    # graceTerminateRSList
    def add(self, p: int) -> None:
        if p not in self.rs_list:
            self.rs_list.add(p)
            self.calls.append(gt.RsOp(E, p))

    def remove(self, p: int) -> None:
        if not self.rel.remove_works and p in self.rs_list:
            return  # 1.12.2-1.13.0: `if _, ok := q.list[uniqueRS]; ok { return false }`
        if p in self.rs_list:
            self.rs_list.discard(p)
            self.calls.append(gt.RsOp(X, p))

    # graceful_termination.go
    def delete_rs_func(self, p: int) -> bool:
        for q, (active, inactive) in list(self.rss.items()):  # GetRealServers
            if q == p:
                if self.udp and self.rel.udp_at_once:
                    pass  # "For UDP and SCTP traffic, no graceful termination, we immediately delete the RS"
                elif (active + inactive if self.rel.keep_inactive else active) != 0:
                    return False
                self.delete_real_server(p)
                self.read_deleted.append(p)
                return True
        return True  # "failed to delete rs ..., can't find the real server": reported deleted

    def graceful_delete_rs(self, p: int) -> None:
        if self.delete_rs_func(p):
            return
        self.update_real_server_weight0(p)
        self.add(p)

    def move_rs_out_of_graceful_delete_list(self, p: int) -> bool:
        if p not in self.rs_list:
            return False
        if not self.delete_real_server(p):
            return False
        self.remove(p)
        return True

    def try_delete_rs(self) -> None:
        for p in sorted(self.rs_list):  # flushList: a Go map, any order
            if self.delete_rs_func(p):
                self.remove(p)

    # proxier.go
    def sync_endpoint(self, desired: list[int]) -> None:
        cur = set(self.rss)  # curEndpoints
        for ep in sorted(desired):  # newEndpoints.List()
            if ep in cur:
                if not self.rel.gt:
                    continue
                if ep not in self.rs_list:
                    continue
                if not self.move_rs_out_of_graceful_delete_list(ep):
                    continue
            self.add_real_server(ep)
        for ep in sorted(cur - set(desired)):  # curEndpoints.Difference(newEndpoints)
            if not self.rel.gt:
                self.delete_real_server(ep)  # before #66012: deleted at once
            elif ep not in self.rs_list:
                self.graceful_delete_rs(ep)


def _run_go(release: str, udp: bool, views: tuple[gt.RsView, ...], what: str) -> _Go:
    rel = RELEASES[release]
    go = _Go(rel, udp, {p: (v.active, v.inactive) for p, v in enumerate(views) if v.linked},
             {p for p, v in enumerate(views) if v.graceful})
    if what == "sync":
        go.sync_endpoint([p for p, v in enumerate(views) if v.listed])
    elif rel.gt:  # no tryDeleteRs before #66012
        go.try_delete_rs()
    return go


def _go(release: str, udp: bool, views: tuple[gt.RsView, ...], what: str) -> list[gt.RsOp]:
    return _run_go(release, udp, views, what).calls


def _one_pod() -> list[gt.RsView]:
    out = [gt.RsView(listed, False, graceful) for listed in (False, True) for graceful in (False, True)]
    out += [gt.RsView(listed, True, graceful, a, i)
            for listed in (False, True) for graceful in (False, True) for a in (0, 1, 2) for i in (0, 1)]
    return out


DOMAIN = [(v,) for v in _one_pod()] + list(itertools.product(_one_pod(), repeat=2))
CASES = [(r, udp) for r in RELEASES for udp in (False, True)]


def _in_release(release: str, views: tuple[gt.RsView, ...]) -> bool:
    """Before #66012 there is no graceful-delete list to be on."""
    return RELEASES[release].gt or not any(v.graceful for v in views)


def _kernel_ops(ops: list[gt.RsOp] | tuple[gt.RsOp, ...]) -> list[gt.RsOp]:
    return [o for o in ops if o.op in (A, Q, D)]


def _domain(release: str, udp: bool, what: str) -> Iterator[tuple[tuple[gt.RsView, ...], tuple[gt.RsOp, ...]]]:
    """Every view of the domain the release can have, with the module's operations for it."""
    kp = kube_proxy_version(release)
    fn = gt.sync_endpoint if what == "sync" else gt.try_delete_rs
    for views in DOMAIN:
        if _in_release(release, views):
            yield views, fn(kp, udp, views)


@pytest.mark.parametrize(("release", "udp"), CASES)
@pytest.mark.parametrize("what", ["sync", "check"])
def test_decisions_follow_the_go_source_on_the_whole_domain(release: str, udp: bool, what: str) -> None:
    n = 0
    for views, ops in _domain(release, udp, what):
        got = list(ops)
        want = _go(release, udp, views, what)
        if RELEASES[release].remove_works or not RELEASES[release].gt:
            assert got == want, (views, got, want)
        else:
            # 1.13.0: its remove() left every entry on the list; the module removes them (see its docstring).
            # Every kernel operation is the same, and the list differs only by the removals remove() skipped.
            assert _kernel_ops(got) == _kernel_ops(want), (views, got, want)
            assert [o for o in got if o.op is not X] == want, (views, got, want)
        n += 1
    assert n >= 200


@pytest.mark.parametrize(("release", "udp"), CASES)
@pytest.mark.parametrize("what", ["sync", "check"])
def test_the_deletes_that_follow_a_read_are_the_go_sources(release: str, udp: bool, what: str) -> None:
    """read_deletes names the deletes a packet can precede between deleteRsFunc's GetRealServers and its
    DeleteRealServer (Scope.kp_window): exactly the ones the Go code makes in deleteRsFunc, on the whole domain
    (not MoveRSOutofGracefulDeleteList's, not a release's without graceful termination)."""
    kp = kube_proxy_version(release)
    seen = 0
    for views, ops in _domain(release, udp, what):
        want = _run_go(release, udp, views, what).read_deleted
        assert list(gt.read_deletes(kp, ops, views, what == "check")) == want, views
        seen += bool(want)
    assert seen >= (20 if RELEASES[release].gt else 0)


@pytest.mark.parametrize("what", ["sync", "check"])
def test_the_window_splits_at_that_pods_delete_on_the_whole_domain(what: str) -> None:
    """split_at_delete puts before the window exactly the operations that precede the pod's own DELETE: where a
    sync or check deletes two real servers, a split at either leaves the other's DELETE on its side."""
    kp = kube_proxy_version("1.30")
    both = 0
    for views, ops in _domain("1.30", False, what):
        for pod in gt.read_deletes(kp, ops, views, what == "check"):
            before, after = gt.split_at_delete(ops, pod)
            assert before + after == ops
            assert after[0] == gt.RsOp(D, pod)
            assert gt.RsOp(D, pod) not in before
            both += any(o.op is D for o in before)  # another pod's DELETE comes first (a lower or higher pod)
    assert both >= 1


def test_a_stale_list_entry_of_1_13_0_makes_no_kernel_operation() -> None:
    """1.13.0 keeps a deleted real server on its list; the module's list does not. A later check finds it
    absent (deleteRsFunc: "can't find the real server") and nothing reaches the kernel either way, and a
    sync never re-adds an undesired pod: so the abstraction is invisible to IPVS."""
    kp = kube_proxy_version("1.13.0")
    stale = (gt.RsView(False, False, True),)
    assert _go("1.13.0", False, stale, "check") == []
    assert gt.try_delete_rs(kp, False, stale) == (gt.RsOp(X, 0),)
    assert _go("1.13.0", False, stale, "sync") == [] == list(gt.sync_endpoint(kp, False, stale))


def v(listed: bool, linked: bool, graceful: bool = False, active: int = 0, inactive: int = 0) -> gt.RsView:
    return gt.RsView(listed, linked, graceful, active, inactive)


# readable pins of what kube-proxy.md section 8 says a model must get right (pods a=0, b=1)
PINNED = [
    # (release, udp, views, sync ops)
    ("1.30", False, (v(True, True), v(False, True, active=1)), [gt.RsOp(Q, 1), gt.RsOp(E, 1)]),
    ("1.30", False, (v(True, True), v(False, True, inactive=1)), [gt.RsOp(Q, 1), gt.RsOp(E, 1)]),
    ("1.30", False, (v(True, True), v(False, True)), [gt.RsOp(D, 1)]),
    ("1.30", True, (v(True, True), v(False, True, inactive=1)), [gt.RsOp(D, 1)]),  # #77802
    ("1.14.0", True, (v(True, True), v(False, True, inactive=1)), [gt.RsOp(Q, 1), gt.RsOp(E, 1)]),
    ("1.13.0", False, (v(True, True), v(False, True, inactive=1)), [gt.RsOp(D, 1)]),  # ActiveConn only
    ("1.13.0", False, (v(True, True), v(False, True, active=1)), [gt.RsOp(Q, 1), gt.RsOp(E, 1)]),
    ("1.11.0", False, (v(True, True), v(False, True, active=1)), [gt.RsOp(D, 1)]),  # before #66012
    # new real servers are added before removed ones are quiesced or deleted
    ("1.30", False, (v(False, True, active=1), v(True, False)), [gt.RsOp(A, 1, 1), gt.RsOp(Q, 0), gt.RsOp(E, 0)]),
    # desired again while on the list: MoveRSOutofGracefulDeleteList, then re-added at weight 1
    ("1.30", False, (v(True, True, graceful=True, active=1),), [gt.RsOp(D, 0), gt.RsOp(X, 0), gt.RsOp(A, 0, 1)]),
    # on the list and still undesired: skipped by the sync, left to the check
    ("1.30", False, (v(False, True, graceful=True),), []),
]


@pytest.mark.parametrize(("release", "udp", "views", "ops"), PINNED)
def test_pinned_sync_decisions(release: str, udp: bool, views: tuple[gt.RsView, ...], ops: list[gt.RsOp]) -> None:
    assert list(gt.sync_endpoint(kube_proxy_version(release), udp, views)) == ops


@pytest.mark.parametrize(("release", "udp", "views", "ops"), [
    ("1.30", False, (v(False, True, True),), [gt.RsOp(D, 0), gt.RsOp(X, 0)]),
    ("1.30", False, (v(False, True, True, inactive=1),), []),
    ("1.13.0", False, (v(False, True, True, inactive=1),), [gt.RsOp(D, 0), gt.RsOp(X, 0)]),
    ("1.30", False, (v(False, False, True),), [gt.RsOp(X, 0)]),  # not found: off the list, no kernel call
    ("1.30", False, (v(False, True), v(False, True, True)), [gt.RsOp(D, 1), gt.RsOp(X, 1)]),  # only the list
])
def test_pinned_check_decisions(release: str, udp: bool, views: tuple[gt.RsView, ...], ops: list[gt.RsOp]) -> None:
    assert list(gt.try_delete_rs(kube_proxy_version(release), udp, views)) == ops


def test_the_criterion_is_the_kube_proxy_objects_own() -> None:
    """The decisions read the deletion criterion only through the object they are given (a patch may replace
    the KubeProxyVersion)."""
    class Never:
        def rs_deletable(self, is_udp: bool, active: int, inactive: int) -> bool:
            return False

    views = (v(False, True), v(False, True, True))
    assert gt.sync_endpoint(Never(), True, views) == (gt.RsOp(Q, 0), gt.RsOp(E, 0))
    assert gt.try_delete_rs(Never(), True, views) == ()


# ---------------------------------------------------------------- one source: the model and the harness
class _FakeGuest:
    """Stands for the booted kernel: /proc/net/ip_vs with pods a and b linked, and the ipvsadm calls made."""

    def __init__(self) -> None:
        self.ipvsadm: list[list[str]] = []

    def call(self, op: str, tag: str = "", **kw: Any) -> dict[str, Any]:
        if op == "state":
            dests = "".join(f"  -> 0AF4000{i}:0050      Masq    1      0          0\n" for i in (2, 3))
            return {"conns": "", "dests": dests}
        if op == "ipvsadm":
            self.ipvsadm.append(kw["args"])
        return {}


def test_model_and_harness_both_apply_the_shared_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = load_scenario(ROOT / "scenarios/conformance/C07-weight0-running-mode0-nodest1.yaml")
    cfg = scenario_config(sc, sc.variant)
    seen: list[str] = []

    def sync(kp: gt.DeletionCriterion, udp: bool, views: tuple[gt.RsView, ...]) -> tuple[gt.RsOp, ...]:
        seen.append("sync")
        assert kp is cfg.kube_proxy and [x.linked for x in views] == [True, True]
        return (gt.RsOp(Q, 0), gt.RsOp(E, 0))  # what no release decides here: pod a is still desired

    def check(kp: gt.DeletionCriterion, udp: bool, views: tuple[gt.RsView, ...]) -> tuple[gt.RsOp, ...]:
        seen.append("check")
        return (gt.RsOp(D, 1),)

    monkeypatch.setattr(gt, "sync_endpoint", sync)
    monkeypatch.setattr(gt, "try_delete_rs", check)

    model = System(cfg)
    st = model.initial_states()[0]
    st, ev = model.step(st, (Act.SYNC, 0, 0))
    assert st.dests[0].weight == 0 and st.graceful[0] and (Ev.DEST_QUIESCED, 0, 0, 0) in ev
    st, ev = model.step(st, (Act.CHECK, 0, 0))
    assert st.dests[1].status == DestStatus.TRASH and any(e[0] == Ev.DEST_DELETED and e[1] == 1 for e in ev)

    guest = _FakeGuest()
    harness = KernelScenario(guest, sc, cfg, "t")  # type: ignore[arg-type]  # a stand-in for Guest
    harness.kp_sync()
    harness.kp_check()
    a, b = harness.rs("a"), harness.rs("b")
    assert guest.ipvsadm == [["-e", *a, "-m", "-w", "0"], ["-d", *b]]
    assert harness.graceful == {"a": True, "b": False}
    assert seen == ["sync", "check", "sync", "check"]


# ---------------------------------------------------------------- the read/delete window (docs/model.md)
def test_a_connection_in_the_read_delete_window_breaks_graceful_termination() -> None:
    """deleteRsFunc reads the counters (GetRealServers), then deletes (DeleteRealServer). A connect between the
    two lands on a real server kube-proxy then deletes: no order of the atomic steps reaches that (connect
    first: the counters are 1 and the sync quiesces; sync first: rr sends the connect to pod a). The model's
    window action (Scope.kp_window) is that composition, step by step; property 12 judges it, and a search
    stops there (System.window_end), so graceful-termination-kept keeps its atomic meaning."""
    cfg = make_config("K516", "1.30", {"conn_reuse_mode": 1}, DEFAULT_SCOPE)
    model = System(cfg)
    kept = next(p for p in PROPERTIES if p.name == "graceful-termination-kept")
    assert kept.violated is not None
    st, _ = model.step(model.initial_states()[0], (Act.DELETE_POD, 1, 0))  # pod b: endpoint removed
    connect = next(a for a in model.actions(st) if a[0] == Act.CONNECT)

    # atomic, either order: b is quiesced (connect first) or the connect goes to a (sync first)
    pre, _ = model.step(st, connect)
    post, ev = model.step(pre, (Act.SYNC, 0, 0))
    assert pre.flows[0].client.pod == 1 and (Ev.DEST_QUIESCED, 1, 1, 0) in ev
    assert not kept.violated(model, pre, (Act.SYNC, 0, 0), ev, post)
    first, _ = model.step(st, (Act.SYNC, 0, 0))
    assert model.step(first, connect)[0].flows[0].client.pod == 0

    # split: GetRealServers reads b's counters (0, 0), the connect lands on b, DeleteRealServer
    views = model._rs_views(st)
    ops = gt.sync_endpoint(cfg.kube_proxy, False, views)
    assert ops == (gt.RsOp(D, 1),)
    pre, _ = model.step(st, connect)
    ev2: list[Any] = []
    post = model._apply(pre, ops, views, ev2)
    assert (Ev.DEST_DELETED, 1, 1, 0) in ev2
    assert kept.violated(model, pre, (Act.SYNC, 0, 0), tuple(ev2), post)

    # the model's own window action is that run: told in full on replay, judged by property 12 in a search
    window = (Act.SYNC, 2, model.racers.index(connect))
    assert window in model.actions(st) and model.footprint(window) is None
    told = replay_system(cfg)
    got, ev3 = told.step(st, window)
    assert got == post._replace(sync_timer=-1) and (Ev.DEST_DELETED, 1, 1, 0) in ev3
    end, judged = model.step(st, window)
    assert end is model.window_end and model.actions(end) == [] and judged == ((Ev.RS_READ, 1, 1, 0),)
    race = BY_NAME["no-packet-in-delete-window"]
    assert race.violated is not None and race.violated(model, st, window, judged, end)
    assert not kept.violated(model, st, window, judged, end)


def test_a_search_finds_the_window_and_only_with_it() -> None:
    """Property 12 is found by search, not by a scripted run; without the window (--no-kp-window) the
    property is not applicable, and the other verdicts do not move."""
    cfg = make_config("K516", "1.30", {"conn_reuse_mode": 1}, DEFAULT_SCOPE)
    found = check_config(cfg, PROPERTIES, 20_000)
    atomic = check_config(make_config("K516", "1.30", {"conn_reuse_mode": 1},
                                      dataclasses.replace(DEFAULT_SCOPE, kp_window=False)), PROPERTIES, 20_000)
    by = {v.prop_name: v for v in found.verdicts}
    assert by["no-packet-in-delete-window"].status == "violated"
    trail = by["no-packet-in-delete-window"].actions
    assert trail[-1][0] == Act.SYNC and trail[-1][1] > 0  # the window is the violating step
    assert {v.prop_name: v.status for v in atomic.verdicts}["no-packet-in-delete-window"] == "n/a"
    assert [(v.prop_name, v.status) for v in found.verdicts if v.prop_name != "no-packet-in-delete-window"] == [
        (v.prop_name, v.status) for v in atomic.verdicts if v.prop_name != "no-packet-in-delete-window"]


def test_a_release_without_graceful_termination_has_no_window() -> None:
    """Before #66012 syncEndpoint deleted without a read: no window, so property 12's sometimes check is never
    reached (vacuous), never a violation."""
    cfg = make_config("K46", "1.11.0", {"conn_reuse_mode": 0}, DEFAULT_SCOPE)
    v = {v.prop_name: v.status for v in check_config(cfg, (BY_NAME["no-packet-in-delete-window"],), 20_000).verdicts}
    assert v["no-packet-in-delete-window"] == "vacuous"
