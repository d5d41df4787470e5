"""The model's tables pinned against their sources, cell by cell (issue 19).

Each expectation here is transcribed from the source it cites (the Linux 6.1 tree, Debian's
linux-source-6.1 6.1.192, and ../shared/reference/*.md), never from the model's own output, so a wrong
table cell, timeout, feature flag or version boundary fails here even when every engine agrees with it.
"""

from __future__ import annotations

import pytest

from ipvs_verify.model import tcp_states as ts
from ipvs_verify.model.kube_proxy import ReusePolicy, UnknownKubeProxy, kube_proxy_version
from ipvs_verify.model.tcp_states import Dir, Seg, TcpState
from ipvs_verify.model.variants import (
    DEFAULT_MATRIX_VARIANTS,
    VARIANTS,
    Feature,
    UnknownKernel,
    feature_problems,
    resolve_variant,
    variant_for_kernel,
)

# ------------------------------------------------------------------ the TCP state table (ip_vs_proto_tcp.c)

# include/net/ip_vs.h:297-308, enum IP_VS_TCP_S_*: the kernel's state order (the table's column order)
KERNEL_STATE_ORDER = ("NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT", "CLOSE",
                      "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK")
_ABBR = {"sNO": "NONE", "sES": "ESTABLISHED", "sSS": "SYN_SENT", "sSR": "SYN_RECV", "sFW": "FIN_WAIT",
         "sTW": "TIME_WAIT", "sCL": "CLOSE", "sCW": "CLOSE_WAIT", "sLA": "LAST_ACK", "sLI": "LISTEN",
         "sSA": "SYNACK"}  # ip_vs_proto_tcp.c:374-384 (#define sNO IP_VS_TCP_S_NONE ...)

# ip_vs_proto_tcp.c:404-417, tcp_states[] (INPUT rows 407-410, OUTPUT rows 414-417), copied as printed;
# columns sNO, sES, sSS, sSR, sFW, sTW, sCL, sCW, sLA, sLI, sSA. Row order syn, fin, ack, rst: tcp_state_idx()
# (463-474) returns 0 for SYN, 1 FIN, 2 ACK, 3 RST
KERNEL_TCP_STATES = {
    (Dir.INPUT, Seg.SYN): "sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR",  # :407
    (Dir.INPUT, Seg.FIN): "sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW",  # :408
    (Dir.INPUT, Seg.ACK): "sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES",  # :409
    (Dir.INPUT, Seg.RST): "sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR",  # :410
    (Dir.OUTPUT, Seg.SYN): "sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR",  # :414
    (Dir.OUTPUT, Seg.FIN): "sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW",  # :415
    (Dir.OUTPUT, Seg.ACK): "sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES",  # :416
    (Dir.OUTPUT, Seg.RST): "sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL",  # :417
}

# ip_vs_proto_tcp.c:330-343 tcp_timeouts[] (in HZ; seconds here); ip_vs_proto_udp.c:400-403 udp_timeouts[NORMAL]
KERNEL_TIMEOUTS = {"NONE": 2, "ESTABLISHED": 15 * 60, "SYN_SENT": 2 * 60, "SYN_RECV": 1 * 60, "FIN_WAIT": 2 * 60,
                   "TIME_WAIT": 2 * 60, "CLOSE": 10, "CLOSE_WAIT": 60, "LAST_ACK": 30, "LISTEN": 2 * 60,
                   "SYNACK": 120, "NORMAL": 5 * 60}

# ip_vs_proto_tcp.c:360-372 tcp_state_active_table[]: true for ESTABLISHED, SYN_SENT, SYN_RECV, SYNACK
KERNEL_ACTIVE = {"ESTABLISHED", "SYN_SENT", "SYN_RECV", "SYNACK"}


def test_state_order_is_the_kernels() -> None:
    assert [s.name for s in TcpState if s is not TcpState.NORMAL] == list(KERNEL_STATE_ORDER)
    assert [int(TcpState[n]) for n in KERNEL_STATE_ORDER] == list(range(len(KERNEL_STATE_ORDER)))
    # NORMAL (UDP) lies outside the TCP table, so no TCP cell can name it
    assert int(TcpState.NORMAL) >= len(KERNEL_STATE_ORDER)
    assert {s: ts.SHORT[s] for s in TcpState} == {s: s.name for s in TcpState}


def test_segment_classes_follow_tcp_state_idx() -> None:
    assert (Seg.SYN, Seg.FIN, Seg.ACK, Seg.RST) == (0, 1, 2, 3)
    assert (Dir.INPUT, Dir.OUTPUT) == (0, 1)


@pytest.mark.parametrize("row", sorted(KERNEL_TCP_STATES), ids=lambda r: f"{r[0].name}-{r[1].name}")
def test_tcp_state_table_row(row: tuple[Dir, Seg]) -> None:
    want = [_ABBR[c.strip()] for c in KERNEL_TCP_STATES[row].split(",")]
    got = [ts.tcp_transition(TcpState[s], *row).name for s in KERNEL_STATE_ORDER]
    assert got == want


def test_udp_entries_never_change_state() -> None:
    for d in Dir:
        for seg in Seg:
            assert ts.tcp_transition(TcpState.NORMAL, d, seg) is TcpState.NORMAL


def test_timeouts_cell_by_cell() -> None:
    assert {s.name: t for s, t in ts.DEFAULT_TIMEOUTS.items()} == KERNEL_TIMEOUTS


def test_active_states() -> None:
    assert {s.name for s in TcpState if ts.is_active(s)} == KERNEL_ACTIVE


# ------------------------------------------------------------------ variants (ipvs-kernel.md section 0)

F = Feature
# ipvs-kernel.md section 0, "Variant table": each variant's features
VARIANT_FEATURES = {
    "K310": {F.W0_SYN},
    "K41": {F.REUSE},
    "K46NC": {F.REUSE, F.DROP1},
    "K46": {F.REUSE, F.DROP1, F.CLOSE},
    "K46U": {F.REUSE, F.DROP1, F.CLOSE, F.UNCONF},
    "K59": {F.REUSE, F.DROP1, F.CLOSE, F.UNCONF, F.NODEST_WORK},
    "K516": {F.REUSE, F.DROP1, F.CLOSE, F.UNCONF, F.NODEST_WORK, F.W0_UNGATED},
    "K46UW": {F.REUSE, F.DROP1, F.CLOSE, F.UNCONF, F.W0_UNGATED},
    "KT17": {F.REUSE, F.DROP1, F.CLOSE, F.TENCENT_OLD_CT},
}


def test_every_variants_feature_set() -> None:
    assert {n: set(v.features) for n, v in VARIANTS.items()} == VARIANT_FEATURES
    for name, v in VARIANTS.items():
        assert v.name == name
        assert feature_problems(v.features) == [], name
        for f in Feature:
            assert v.has(f) == (f in VARIANT_FEATURES[name])
    assert set(DEFAULT_MATRIX_VARIANTS) <= set(VARIANTS)


def test_feature_problems() -> None:
    assert feature_problems(frozenset({F.DROP1})) == ["DROP1 needs REUSE"]
    assert feature_problems(frozenset({F.UNCONF})) == ["UNCONF needs DROP1"]
    assert feature_problems(frozenset({F.CLOSE})) == ["CLOSE needs REUSE"]
    assert feature_problems(frozenset({F.W0_UNGATED})) == ["W0_UNGATED needs REUSE"]
    assert feature_problems(frozenset({F.TENCENT_OLD_CT})) == ["TENCENT_OLD_CT needs DROP1"]
    assert feature_problems(frozenset({F.REUSE, F.DROP1, F.NODEST_WORK})) == ["NODEST_WORK needs UNCONF"]
    assert len(feature_problems(frozenset({F.W0_SYN, F.REUSE}))) == 1
    assert len(feature_problems(frozenset({F.REUSE, F.DROP1, F.UNCONF, F.TENCENT_OLD_CT}))) == 1
    assert feature_problems(frozenset()) == []


def test_representative_versions_map_back() -> None:
    for name, v in VARIANTS.items():
        assert variant_for_kernel(v.representative).name == name, name


# Every boundary of ipvs-kernel.md section 0 ("Stable backports" and the variant table): the last release
# before and the first with each change. f719e3754ee2 (DROP1): 4.1.52, 4.4.11, 4.5.7, v4.6; f0a5e4d7 (UNCONF):
# 4.14.194, 4.19.140, 5.4.59, 5.8.2, v5.9; c95c07836fa4 (W0_UNGATED): 4.14.257, 4.19.219, 5.4.163, 5.10.83, 5.15.6,
# v5.16; 35dfb013149f (NODEST_WORK): v5.9; d752c3645717 (REUSE): v4.1; dc7b3eb900aa: v3.10
KERNEL_BOUNDARIES = [
    ("3.10", "K310"), ("3.10.0", "K310"), ("3.18.140", "K310"), ("4.0.9", "K310"),
    ("4.1", "K41"), ("4.1.51", "K41"), ("4.1.52", "K46NC"), ("4.1.60", "K46NC"),
    ("4.2.8", "K41"), ("4.3.6", "K41"),
    ("4.4.0", "K41"), ("4.4.10", "K41"), ("4.4.11", "K46NC"), ("4.4.302", "K46NC"),
    ("4.5.0", "K41"), ("4.5.6", "K41"), ("4.5.7", "K46NC"),
    ("4.6", "K46"), ("4.9.337", "K46"), ("4.13.16", "K46"),
    ("4.14.0", "K46"), ("4.14.193", "K46"), ("4.14.194", "K46U"), ("4.14.256", "K46U"), ("4.14.257", "K46UW"),
    ("4.19.0", "K46"), ("4.19.139", "K46"), ("4.19.140", "K46U"), ("4.19.218", "K46U"), ("4.19.219", "K46UW"),
    ("5.4.58", "K46"), ("5.4.59", "K46U"), ("5.4.162", "K46U"), ("5.4.163", "K46UW"), ("5.4.0-150-generic", "K46"),
    ("5.6.19", "K46"), ("5.8.0", "K46"), ("5.8.1", "K46"), ("5.8.2", "K46U"), ("5.8.18", "K46U"),
    ("5.9", "K59"), ("5.9.0", "K59"), ("5.10.0", "K59"), ("5.10.82", "K59"), ("5.10.83", "K516"),
    ("5.11.22", "K59"), ("5.14.21", "K59"), ("5.15.0", "K59"), ("5.15.5", "K59"), ("5.15.6", "K516"),
    ("5.16", "K516"), ("6.1", "K516"), ("6.1.0-18-amd64", "K516"), ("6.8.0", "K516"),
    ("4.14.105-tencentos", "KT17"), ("4.14.105-TencentOS", "KT17"),
]


@pytest.mark.parametrize("text,variant", KERNEL_BOUNDARIES)
def test_kernel_version_boundary(text: str, variant: str) -> None:
    assert variant_for_kernel(text).name == variant
    assert resolve_variant(text).name == variant


# Refusals: before 3.10 the model has no behaviour; 5.7.y took f0a5e4d7 at a release the reference does not
# know (ipvs-kernel.md: "5.7 (`[PATCH 5.7 178/393]`)", its release unread); not a version at all
@pytest.mark.parametrize("text", ["3.9.11", "2.6.32", "5.7", "5.7.19", "abc", "", "6", "v6.1"])
def test_kernel_versions_refused(text: str) -> None:
    with pytest.raises(UnknownKernel):
        variant_for_kernel(text)


def test_version_parsing() -> None:
    from ipvs_verify.model.variants import parse_kernel_version

    assert parse_kernel_version("6.1") == (6, 1, 0)
    assert parse_kernel_version(" 5.4.163-generic ") == (5, 4, 163)
    assert parse_kernel_version("4.19.140+") == (4, 19, 140)


def test_variants_are_values() -> None:
    """Variants key caches and sets (a patched cell's identity), so they are frozen and hashable."""
    import dataclasses

    v = VARIANTS["K46"]
    assert {v: 1}[dataclasses.replace(v)] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.name = "K47"  # type: ignore[misc]


def test_resolve_variant_by_name_and_refusal() -> None:
    for name in VARIANTS:
        assert resolve_variant(name.lower()).name == name
        assert resolve_variant(f" {name} ").name == name
    for bad in ("K99", "", "linux"):
        with pytest.raises(UnknownKernel):
            resolve_variant(bad)


# ------------------------------------------------------------------ kube-proxy releases (kube-proxy.md)

# kube-proxy.md: #66012 graceful termination in 1.13.0, 1.12.2, 1.11.5 (line 8); #71515 ActiveConn+InactiveConn
# in 1.14.0, 1.13.1, 1.12.4, 1.11.6 (line 20); #77802 UDP deleted at once in 1.15.0, 1.14.3, 1.13.7, 1.12.10
# (line 21); #71114 conn_reuse_mode=0 in 1.13.0 with 1.12.5, 1.11.7 (line 35, with #71834); #71834
# expire_nodest_conn/expire_quiescent_template in 1.14.0, 1.13.2, 1.12.5, 1.11.7 (line 36); #102122 in 1.22.0
# (line 43). Columns: graceful_termination, count_inactive, udp_immediate, sets_nodest_and_quiescent, reuse.
L, Z, Z59 = ReusePolicy.LEAVE, ReusePolicy.FORCE_ZERO, ReusePolicy.ZERO_BELOW_5_9
KUBE_PROXY_BOUNDARIES = [
    ("1.11.0", False, False, False, False, L), ("1.11.4", False, False, False, False, L),
    ("1.11.5", True, False, False, False, L), ("1.11.6", True, True, False, False, L),
    ("1.11.7", True, True, False, True, Z), ("1.11.10", True, True, False, True, Z),
    ("1.12.0", False, False, False, False, L), ("1.12.1", False, False, False, False, L),
    ("1.12.2", True, False, False, False, L), ("1.12.3", True, False, False, False, L),
    ("1.12.4", True, True, False, False, L), ("1.12.5", True, True, False, True, Z),
    ("1.12.9", True, True, False, True, Z), ("1.12.10", True, True, True, True, Z),
    ("1.13", True, False, False, False, Z), ("1.13.0", True, False, False, False, Z),
    ("1.13.1", True, True, False, False, Z),
    ("1.13.2", True, True, False, True, Z), ("1.13.6", True, True, False, True, Z),
    ("1.13.7", True, True, True, True, Z),
    ("1.14.0", True, True, False, True, Z), ("1.14.2", True, True, False, True, Z),
    ("1.14.3", True, True, True, True, Z),
    ("1.15.0", True, True, True, True, Z), ("1.21", True, True, True, True, Z), ("1.21.14", True, True, True, True, Z),
    ("1.22.0", True, True, True, True, Z59), ("1.30", True, True, True, True, Z59),
    ("v1.35.0", True, True, True, True, Z59),
]


@pytest.mark.parametrize("text,gt,inact,udp,nodest,reuse", KUBE_PROXY_BOUNDARIES)
def test_kube_proxy_release_boundary(text: str, gt: bool, inact: bool, udp: bool, nodest: bool,
                                     reuse: ReusePolicy) -> None:
    kp = kube_proxy_version(text)
    assert (kp.graceful_termination, kp.count_inactive, kp.udp_immediate, kp.sets_nodest_and_quiescent,
            kp.reuse_policy) == (gt, inact, udp, nodest, reuse)
    assert kp.text == text.lstrip("v")
    assert {kp: 1}[kube_proxy_version(text)] == 1  # frozen: a value that keys caches


@pytest.mark.parametrize("text", ["1.10.13", "1.36.0", "2.0", "1", "abc", "1.30.x"])
def test_kube_proxy_versions_refused(text: str) -> None:
    with pytest.raises(UnknownKubeProxy):
        kube_proxy_version(text)


# ------------------------------------------------------------------ a patch's hooks, found by point name

def test_hook_lookup_by_point_name() -> None:
    from dataclasses import replace

    from ipvs_verify.model.decision_points import Hook

    a, b = Hook("port-reuse", lambda *x: None, "a.py: function a"), Hook("drop-predicate", lambda *x: None, "b.py: b")
    v = replace(VARIANTS["K46"], hooks=(a, b))
    # names built at run time: equal to the hooks' points, not the same objects
    assert v.hook("-".join(["port", "reuse"])) is a and v.hook("-".join(["drop", "predicate"])) is b
    assert v.hook("server-status") is None and v.hook("port-reusf") is None and v.hook("a") is None
    assert VARIANTS["K46"].hook("port-reuse") is None
    assert v.hook_label == "K46"
    kp = replace(kube_proxy_version("1.30"), hooks=(Hook("deletion-criterion", lambda *x: None, "c.py: c"),))
    assert kp.hook("deletion-criterion") is kp.hooks[0] and kp.hook("startup-sysctls") is None
    assert kp.hook("a") is None and kp.hook("z") is None
    assert kp.hook_label == "kube-proxy 1.30"


def test_mutation_equivalents_file_is_well_formed() -> None:
    """benchmarks/mutation_equivalents.yaml (docs/mutation.md): each entry names a line of a model file and why."""
    from pathlib import Path

    from ruamel.yaml import YAML

    root = Path(__file__).resolve().parents[1]
    entries = YAML(typ="safe").load((root / "benchmarks" / "mutation_equivalents.yaml").read_text())
    for i, e in enumerate(entries):
        assert set(e) == {"file", "line", "operator", "mutated", "why"}, i
        lines = (root / e["file"]).read_text().splitlines()
        assert 1 <= e["line"] <= len(lines) and e["why"].strip() and e["operator"].startswith("core/"), i
