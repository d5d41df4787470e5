"""The kernel's and kube-proxy's small decisions pinned on their whole finite domains (issue 19).

The expected answer of each input comes from a transcription of the source here, not from the model:
net/netfilter/ipvs/ip_vs_core.c and include/net/ip_vs.h of Linux 6.1 (Debian linux-source-6.1 6.1.192) for
the 6.1 code, ../shared/reference/ipvs-kernel.md section 3 ("Pseudocode (K46)", lines 144-181; f0a5e4d7,
lines 213-220) for the older variants, and ../shared/reference/kube-proxy.md for kube-proxy.
"""

from __future__ import annotations

import itertools

import pytest

from ipvs_verify.model.ip_vs_in import (
    ReuseVerdict,
    SkbCt,
    StatusVerdict,
    is_new_conn_expected,
    reuse_block,
    status_block,
    uses_conntrack,
)
from ipvs_verify.model.kube_proxy import kube_proxy_version
from ipvs_verify.model.sysctls import Sysctls
from ipvs_verify.model.tcp_states import TcpState
from ipvs_verify.model.variants import VARIANTS, Feature

TCP = [s for s in TcpState if s is not TcpState.NORMAL]
B = (False, True)


def kernel_is_new_conn_expected(state: TcpState, control: bool, mode: int, nooutput: bool, close: bool) -> bool:
    """ip_vs_core.c:1103-1122 (6.1), TCP case; `close`: the CLOSE test of line 1113 (absent before 4.6 mainline,
    ipvs-kernel.md F_CLOSE row, line 33)."""
    if control:  # :1107
        return False
    return (state == TcpState.TIME_WAIT or (close and state == TcpState.CLOSE)  # :1112-1113
            or (bool(mode & 2) and state == TcpState.FIN_WAIT and nooutput))  # :1114-1116


def kernel_uses_conntrack(unconf: bool, nfct: bool, ct: SkbCt) -> bool:
    """From f0a5e4d7: ip_vs.h:1699-1711 ip_vs_conn_uses_old_conntrack (skb's ct exists and is confirmed).
    Before: ip_vs_conn_uses_conntrack = cp NFCT and the skb has a conntrack (ipvs-kernel.md:139-142, 315)."""
    if unconf:
        return ct == SkbCt.CONFIRMED
    return nfct and ct != SkbCt.NONE


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_drop_predicate_whole_domain(name: str) -> None:
    v = VARIANTS[name]
    for nfct, ct in itertools.product(B, SkbCt):
        assert uses_conntrack(v, nfct, ct) == kernel_uses_conntrack(v.has(Feature.UNCONF), nfct, ct), (nfct, ct)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_new_conn_expected_whole_domain(name: str) -> None:
    v = VARIANTS[name]
    for st, c, m, n in itertools.product(TCP, B, range(4), B):
        want = kernel_is_new_conn_expected(st, c, m, n, v.has(Feature.CLOSE))
        assert is_new_conn_expected(v, st, c, m, n) == want, (st, c, m, n)


def kernel_reuse_block(gated: bool, unconf: bool, close: bool, mode: int, nodest: bool, state: TcpState,
                       control: bool, n_control: bool, nfct: bool, weight0: bool, ct: SkbCt) -> ReuseVerdict:
    """The port-reuse block with f719e3754ee2's drop: 6.1 ip_vs_core.c:2016-2047 (`gated` False: c95c07836fa4's
    ungated weight-0 branch); before c95c07836fa4 the whole block sits under `conn_reuse_mode != 0`
    (ipvs-kernel.md:151); before f0a5e4d7 no NFCT clearing and the old predicate (ipvs-kernel.md:152-162)."""
    if gated and mode == 0:
        return ReuseVerdict(False, False, False, False)
    resched = old_ct = False
    if nodest and weight0:  # :2020-2023
        resched, old_ct = True, kernel_uses_conntrack(unconf, nfct, ct)
    elif mode and kernel_is_new_conn_expected(state, control, mode, False, close):  # :2024-2026 (NAT: no NOOUTPUT)
        old_ct = kernel_uses_conntrack(unconf, nfct, ct)
        resched = True if not n_control else not old_ct  # :2027-2035
    if not resched:
        return ReuseVerdict(False, False, False, False)
    # :2038-2046: clear NFCT unless old_ct (f0a5e4d7 only), expire_now without n_control, NF_DROP iff old_ct
    return ReuseVerdict(True, old_ct, unconf and not old_ct, not n_control)


# variants whose reuse block has f719e3754ee2's structure (the DROP1 feature) and no TencentOS change
DROP1_VARIANTS = sorted(n for n, v in VARIANTS.items() if v.has(Feature.DROP1) and not v.has(Feature.TENCENT_OLD_CT))


@pytest.mark.parametrize("name", DROP1_VARIANTS)
def test_reuse_block_whole_domain(name: str) -> None:
    v = VARIANTS[name]
    for mode, nodest in itertools.product(range(4), B):
        s = Sysctls(conn_reuse_mode=mode, conntrack=True, expire_nodest_conn=nodest)
        for st, c, ch, nfct, w0, ct in itertools.product(TCP, B, B, B, B, SkbCt):
            want = kernel_reuse_block(not v.has(Feature.W0_UNGATED), v.has(Feature.UNCONF), v.has(Feature.CLOSE),
                                      mode, nodest, st, c, ch, nfct, w0, ct)
            assert reuse_block(v, s, st, c, ch, nfct, w0, ct) == want, (mode, nodest, st, c, ch, nfct, w0, ct)


def older_reuse_block(name: str, s: Sysctls, state: TcpState, control: bool, n_control: bool, nfct: bool,
                      weight0: bool, ct: SkbCt) -> ReuseVerdict:
    """K310: dc7b3eb900aa (ipvs-kernel.md:30, :50): weight 0 + expire_nodest_conn -> expire (even with n_control)
    and reschedule, no drop, no sysctl gate. K41: d752c3645717 (ipvs-kernel.md:290-303): under mode != 0, weight 0
    or is_new_conn_expected -> expire iff no n_control, reschedule at once, never drop, NFCT kept. KT17: TencentOS
    PR #17 (ipvs-kernel.md:325-342): f719e3754ee2's block, but with conn_reuse_old_conntrack, no n_control and no
    control the reused conntrack is kept (NFCT cleared, no drop)."""
    keep = ReuseVerdict(False, False, False, False)
    nodest, mode = s.expire_nodest_conn, s.conn_reuse_mode
    if name == "K310":
        return ReuseVerdict(True, False, False, True) if nodest and weight0 else keep
    if mode == 0:
        return keep
    w0 = nodest and weight0
    expected = kernel_is_new_conn_expected(state, control, mode, False, name == "KT17")
    if name == "K41":
        return ReuseVerdict(True, False, False, not n_control) if w0 or expected else keep
    uses_ct = kernel_uses_conntrack(False, nfct, ct)
    if w0:
        resched = True
    elif expected:
        resched = not n_control or not uses_ct
    else:
        resched = False
    if not resched:
        return keep
    reuse_old = uses_ct and not n_control and not control and s.conn_reuse_old_conntrack
    return ReuseVerdict(True, uses_ct and not reuse_old, reuse_old, not n_control)


@pytest.mark.parametrize("name", ["K310", "K41", "KT17"])
def test_older_reuse_blocks_whole_domain(name: str) -> None:
    v = VARIANTS[name]
    for mode, nodest, old in itertools.product(range(4), B, B):
        s = Sysctls(conn_reuse_mode=mode, conntrack=True, expire_nodest_conn=nodest, conn_reuse_old_conntrack=old)
        for args in itertools.product(TCP, B, B, B, B, SkbCt):
            assert reuse_block(v, s, *args) == older_reuse_block(name, s, *args), (mode, nodest, old, args)


def test_drop1_variants_are_the_expected_ones() -> None:
    assert DROP1_VARIANTS == ["K46", "K46NC", "K46U", "K46UW", "K516", "K59"]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_server_status_block(name: str) -> None:
    """6.1 ip_vs_core.c:2050-2067 (35dfb013149f, before scheduling): with expire_nodest_conn, expire, clear NFCT
    and reschedule unless old_ct, NF_DROP iff old_ct; without it, drop. Before 5.9 (ipvs-kernel.md:166-170,
    179-181): always dropped, expired iff expire_nodest_conn."""
    v = VARIANTS[name]
    for nodest, ct in itertools.product(B, SkbCt):
        s = Sysctls(conntrack=True, expire_nodest_conn=nodest)
        if v.has(Feature.NODEST_WORK):
            old = ct == SkbCt.CONFIRMED
            want = StatusVerdict(old, True, not old, not old) if nodest else StatusVerdict(True, False, False, False)
        else:
            want = StatusVerdict(True, nodest, False, False)
        assert status_block(v, s, ct) == want, (nodest, ct)


# ------------------------------------------------------------------ kube-proxy

def test_deletion_criterion_whole_domain() -> None:
    """kube-proxy.md:8 (before #66012 the real server is deleted at once), :19 (ActiveConn != 0 keeps it),
    :20 (ActiveConn+InactiveConn, #71515), :21 (UDP deleted at once, #77802)."""
    for text in ("1.11.0", "1.12.2", "1.13.0", "1.13.1", "1.14.0", "1.14.3", "1.30"):
        kp = kube_proxy_version(text)
        for udp, a, i in itertools.product(B, range(9), range(9)):
            if not kp.graceful_termination or (udp and kp.udp_immediate):
                want = True
            elif kp.count_inactive:
                want = a + i == 0
            else:
                want = a == 0
            assert kp.rs_deletable(udp, a, i) == want, (text, udp, a, i)


KERNELS = [(3, 10, 0), (4, 0, 9), (4, 1, 0), (4, 19, 0), (5, 8, 18), (5, 9, 0), (6, 1, 0)]


@pytest.mark.parametrize("text", ["1.11.0", "1.11.7", "1.12.4", "1.12.5", "1.13.0", "1.13.2", "1.14.0", "1.21",
                                  "1.22.0", "1.30"])
def test_startup_sysctls(text: str) -> None:
    """kube-proxy.md:34-43: conntrack=1 always; expire_nodest_conn and expire_quiescent_template = 1 with #71834;
    conn_reuse_mode = 0 with #71114, only on kernels >= 4.1 (#88541), and from #102122 (1.22.0) only below 5.9."""
    kp = kube_proxy_version(text)
    minor, patch = (int(x) for x in (text.split(".") + ["0"])[1:3])
    nodest = minor >= 14 or (minor == 13 and patch >= 2) or (minor == 12 and patch >= 5) or (minor == 11 and patch >= 7)
    forces = minor >= 13 or (minor == 12 and patch >= 5) or (minor == 11 and patch >= 7)
    for kernel in KERNELS:
        base = Sysctls(conn_reuse_mode=1)
        got = kp.startup_sysctls(base, kernel)
        zero = forces and kernel >= (4, 1, 0) and (minor < 22 or kernel < (5, 9, 0))
        want = Sysctls(conn_reuse_mode=0 if zero else 1, conntrack=True, expire_nodest_conn=nodest,
                       expire_quiescent_template=nodest)
        assert got == want, (text, kernel)


# ------------------------------------------------------------------ the decision points' domains (issue 16)

def test_kernel_decision_domains_are_whole() -> None:
    """A patch's hook is run on its decision's whole domain before a search (decision_points.check_hooks): each
    domain is the product of its arguments' finite types, conn_reuse_mode over its sysctl range."""
    from ipvs_verify.model.decision_points import DECISION_POINTS
    from ipvs_verify.model.sysctls import SYSCTL_RANGES

    lo, hi = SYSCTL_RANGES["conn_reuse_mode"]
    modes = range(lo, hi + 1)
    for v in (VARIANTS["K46"], VARIANTS["K516"]):
        s = Sysctls()
        dom = DECISION_POINTS["port-reuse"].domain
        assert dom is not None
        assert sorted(dom(v, s)) == sorted((v, s, st, *r, ct) for st in TcpState
                                           for r in itertools.product(B, repeat=4) for ct in SkbCt)
        dom = DECISION_POINTS["drop-predicate"].domain
        assert dom is not None
        assert sorted(dom(v, s)) == sorted((v, n, ct) for n in B for ct in SkbCt)
        dom = DECISION_POINTS["new-conn-expected"].domain
        assert dom is not None
        assert sorted(dom(v, s)) == sorted((v, st, c, m, n) for st in TcpState for c in B for m in modes for n in B)
        dom = DECISION_POINTS["server-status"].domain
        assert dom is not None
        assert sorted(dom(v, s)) == sorted((v, s, ct) for ct in SkbCt)


def test_kube_proxy_decision_domains() -> None:
    from ipvs_verify.model.decision_points import DECISION_POINTS
    from ipvs_verify.model.kube_proxy import MAX_COUNTER
    from ipvs_verify.model.variants import variant_for_kernel

    kp = kube_proxy_version("1.30")
    dom = DECISION_POINTS["deletion-criterion"].domain
    assert dom is not None
    assert sorted(dom(kp, None)) == sorted((kp, u, a, i) for u in B for a in range(MAX_COUNTER + 1)
                                           for i in range(MAX_COUNTER + 1))
    assert MAX_COUNTER >= 4  # two clients' entries (a TIME_WAIT and a live one each) on one real server
    dom = DECISION_POINTS["startup-sysctls"].domain
    assert dom is not None
    kernels = [args[2] for args in dom(kp, None)]
    assert all(args[1] == Sysctls() and args[0] is kp for args in dom(kp, None))
    # both sides of each kernel boundary kube-proxy reads (kube-proxy.md:42-43: 4.1 and 5.9), all real kernels
    for b in ((4, 1, 0), (5, 9, 0)):
        assert b in kernels and any(k < b for k in kernels)
    assert any(k > (5, 9, 0) for k in kernels)
    for k in kernels:
        variant_for_kernel(".".join(map(str, k)))


def test_startup_sysctls_checker() -> None:
    """What a patched start-up-sysctls hook may return: a Sysctls within SYSCTL_RANGES."""
    from ipvs_verify.model.decision_points import DECISION_POINTS

    check = DECISION_POINTS["startup-sysctls"].check
    ok = Sysctls(conn_reuse_mode=3)
    assert check(ok) is ok and check(Sysctls(conn_reuse_mode=0)) == Sysctls(conn_reuse_mode=0)
    with pytest.raises(TypeError):
        check({"conn_reuse_mode": 1})
    for bad in (Sysctls(conn_reuse_mode=4), Sysctls(conn_reuse_mode=-1)):
        with pytest.raises(ValueError, match="conn_reuse_mode must be 0..3"):
            check(bad)


def test_every_decision_dispatches_to_a_patch_hook() -> None:
    """Each decision function is a decision point: a hook on its owner replaces it (model/decision_points.py)."""
    from dataclasses import replace

    from ipvs_verify.model.decision_points import Hook
    from ipvs_verify.model.scheduler import choose

    def patched(point: str, result: object) -> object:
        return replace(VARIANTS["K516"], hooks=(Hook(point, lambda *a, **k: result, "t.py: function f"),))

    s = Sysctls()
    assert uses_conntrack(patched("drop-predicate", True), False, SkbCt.NONE) is True
    assert is_new_conn_expected(patched("new-conn-expected", True), TcpState.ESTABLISHED, True, 0) is True
    keep, odd = ReuseVerdict(False, False, False, False), ReuseVerdict(True, True, True, True)
    assert reuse_block(VARIANTS["K516"], s, TcpState.ESTABLISHED, False, False, False, False, SkbCt.NONE) == keep
    assert reuse_block(patched("port-reuse", odd), s, TcpState.ESTABLISHED, False, False, False, False,
                       SkbCt.NONE) == odd
    assert status_block(patched("server-status", (False, False, False, True)), s, SkbCt.NONE) == StatusVerdict(
        False, False, False, True)
    assert choose(patched("scheduler-choice", (2, 2)), "rr", (0, 1, 2), (True, True, True), -1) == (2, 2)
    kp = replace(kube_proxy_version("1.30"), hooks=(
        Hook("deletion-criterion", lambda *a: False, "t.py: g"),
        Hook("startup-sysctls", lambda *a: Sysctls(conn_reuse_mode=3), "t.py: h")))
    assert kp.rs_deletable(True, 0, 0) is False
    assert kp.startup_sysctls(Sysctls(), (6, 1, 0)) == Sysctls(conn_reuse_mode=3)
