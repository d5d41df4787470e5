"""The per-variant decisions of ip_vs_in(), kernel version mapping and kube-proxy start-up sysctls."""

from __future__ import annotations

import pytest

from ipvs_verify.model.ip_vs_in import SkbCt, reuse_block, status_block
from ipvs_verify.model.kube_proxy import kube_proxy_version
from ipvs_verify.model.sysctls import Sysctls
from ipvs_verify.model.tcp_states import TcpState
from ipvs_verify.model.variants import VARIANTS, variant_for_kernel

KP = Sysctls(conn_reuse_mode=1, conntrack=True, expire_nodest_conn=True, expire_quiescent_template=True)
TW = TcpState.TIME_WAIT


def reuse(variant: str, s: Sysctls = KP, state: TcpState = TW, w0: bool = False, ct: SkbCt = SkbCt.NEW):
    return reuse_block(VARIANTS[variant], s, state, False, False, True, w0, ct)


def test_k46_drops_the_reusing_syn_70747() -> None:
    assert reuse("K46").drop and reuse("K46").expire_old


def test_unconf_reschedules_without_drop_and_clears_nfct() -> None:
    r = reuse("K46U")
    assert r.resched and not r.drop and r.clear_nfct
    assert reuse("K46U", ct=SkbCt.CONFIRMED).drop


def test_k41_reschedules_but_keeps_nfct() -> None:
    r = reuse("K41")
    assert r.resched and not r.drop and not r.clear_nfct


def test_mode0_weight0_gated_before_c95c_ungated_after() -> None:
    s = KP.with_(conn_reuse_mode=0)
    assert not reuse("K59", s, TcpState.TIME_WAIT, w0=True).resched
    assert reuse("K516", s, TcpState.TIME_WAIT, w0=True).resched
    assert reuse("K46UW", s, TcpState.ESTABLISHED, w0=True).resched  # any state in the weight-0 branch


def test_tencentos_keeps_reopened_conntrack() -> None:
    r = reuse("KT17")
    assert r.resched and not r.drop and r.clear_nfct
    assert reuse("KT17", KP.with_(conn_reuse_old_conntrack=False)).drop


def test_close_state_only_from_4_6() -> None:
    assert reuse("K46", state=TcpState.CLOSE).resched
    assert not reuse("K46NC", state=TcpState.CLOSE).resched


def test_status_block_before_and_after_5_9() -> None:
    assert status_block(VARIANTS["K46U"], KP, SkbCt.NEW).drop
    after = status_block(VARIANTS["K59"], KP, SkbCt.NEW)
    assert after.resched and not after.drop and after.clear_nfct
    assert status_block(VARIANTS["K59"], KP, SkbCt.CONFIRMED).drop


@pytest.mark.parametrize("version, variant", [
    ("4.19.100", "K46"), ("4.19.140", "K46U"), ("4.19.219", "K46UW"), ("5.4.163", "K46UW"), ("5.4.58", "K46"),
    ("5.10.13", "K59"), ("5.10.83", "K516"), ("6.1", "K516"), ("6.1.0-13-amd64", "K516"), ("4.4.10", "K41"),
    ("4.4.11", "K46NC"), ("3.10.4", "K310"), ("5.15.5", "K59"), ("5.15.6", "K516"), ("4.14.105-tencentos", "KT17"),
])
def test_kernel_versions(version: str, variant: str) -> None:
    assert variant_for_kernel(version).name == variant


def test_kube_proxy_startup_sysctls() -> None:
    base = Sysctls()
    assert kube_proxy_version("1.21").startup_sysctls(base, (5, 10, 0)).conn_reuse_mode == 0
    assert kube_proxy_version("1.22").startup_sysctls(base, (5, 10, 0)).conn_reuse_mode == 1  # left as-is
    assert kube_proxy_version("1.22").startup_sysctls(base, (4, 19, 0)).conn_reuse_mode == 0
    old = kube_proxy_version("1.13.0")
    assert not old.count_inactive and not old.startup_sysctls(base, (4, 19, 0)).expire_nodest_conn
    assert old.rs_deletable(False, 0, 5) and not kube_proxy_version("1.14").rs_deletable(False, 0, 5)
