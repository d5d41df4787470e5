"""Kernel variants: named sets of IPVS feature flags, each flag citing its commit.

Source: ../shared/reference/ipvs-kernel.md section 0 (feature flags, variant table, stable backports).
A kernel version string maps to the variant of the behaviour it ships.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from ipvs_verify.model.decision_points import Hook


class Feature(Enum):
    # dc7b3eb900aa "ipvs: Fix reuse connection if real server is dead" (v3.10): weight-0 SYN -> expire + resched
    W0_SYN = "W0_SYN"
    # d752c3645717 "ipvs: allow rescheduling of new connections when port reuse is detected" (v4.1):
    # conn_reuse_mode sysctl; weight-0 branch gated by conn_reuse_mode != 0
    REUSE = "REUSE"
    # f719e3754ee2 "ipvs: drop first packet to redirect conntrack" (v4.6; 4.1.52/4.4.11/4.5.7 stable)
    DROP1 = "DROP1"
    # is_new_conn_expected() also accepts CLOSE (v4.6 mainline; commit identity UNVERIFIED)
    CLOSE = "CLOSE"
    # f0a5e4d7a594 "ipvs: allow connection reuse for unconfirmed conntrack" (v5.9; 4.14.194/4.19.140/5.4.59)
    UNCONF = "UNCONF"
    # 35dfb013149f "ipvs: queue delayed work to expire no destination connections" (v5.9; not in 4.x/5.4 stable)
    NODEST_WORK = "NODEST_WORK"
    # c95c07836fa4 "ipvs: Fix reuse connection if RS weight is 0" (v5.16; 4.14.257/4.19.219/5.4.163/5.10.83/5.15.6)
    W0_UNGATED = "W0_UNGATED"
    # TencentOS-kernel PR #17 (commit 050ed008c36e): sysctl conn_reuse_old_conntrack, no drop when it is 1
    TENCENT_OLD_CT = "TENCENT_OLD_CT"


F = Feature

# What a feature's code changes, and so needs in the kernel it lands on (a patch that adds one without the
# other contradicts its base): f719e3754ee2, the CLOSE case and c95c07836fa4 change d752c3645717's block;
# f0a5e4d7a594 and TencentOS PR #17 change f719e3754ee2's drop
FEATURE_NEEDS: dict[Feature, frozenset[Feature]] = {
    F.DROP1: frozenset({F.REUSE}), F.CLOSE: frozenset({F.REUSE}), F.W0_UNGATED: frozenset({F.REUSE}),
    F.UNCONF: frozenset({F.DROP1}), F.TENCENT_OLD_CT: frozenset({F.DROP1}),
    # 35dfb013149f's server-status block calls f0a5e4d7a594's ip_vs_conn_uses_old_conntrack (ip_vs_core.c, 5.9)
    F.NODEST_WORK: frozenset({F.UNCONF}),
}
# Pairs that rewrite the same lines differently: d752c3645717 replaced dc7b3eb900aa's weight-0 test; PR #17
# patches the drop that f0a5e4d7a594 replaced (the TencentOS 4.14 branch predates f0a5e4d7)
FEATURE_CONFLICTS: tuple[tuple[Feature, Feature, str], ...] = (
    (F.W0_SYN, F.REUSE, "d752c3645717 (REUSE) replaced dc7b3eb900aa's weight-0 test (W0_SYN)"),
    (F.TENCENT_OLD_CT, F.UNCONF, "TencentOS PR #17 patches the drop that f0a5e4d7a594 (UNCONF) replaced"),
)


def feature_problems(features: frozenset[Feature]) -> list[str]:
    """Why a feature set is no kernel: a feature without the code it changes, or two that rewrite the same."""
    out = [f"{f.value} needs {', '.join(sorted(n.value for n in needs - features))}"
           for f, needs in FEATURE_NEEDS.items() if f in features and not needs <= features]
    out += [why for a, b, why in FEATURE_CONFLICTS if a in features and b in features]
    return out


@dataclass(frozen=True)
class Variant:
    name: str
    features: frozenset[Feature]
    kernels: str  # which kernels behave like this
    representative: str  # a kernel version of this variant (kube-proxy reads the version, not the variant)
    hooks: tuple[Hook, ...] = ()  # a patch's replacements of kernel decision points (model/decision_points.py)

    def has(self, feature: Feature) -> bool:
        return feature in self.features

    def hook(self, point: str) -> Hook | None:
        return next((h for h in self.hooks if h.point == point), None)

    @property
    def hook_label(self) -> str:
        return self.name


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("K310", frozenset({F.W0_SYN}), "3.10 .. 4.0", "3.10.0"),
        Variant("K41", frozenset({F.REUSE}), "4.1.0-4.1.51, 4.4.0-4.4.10, 4.5.0-4.5.6", "4.1.0"),
        Variant("K46NC", frozenset({F.REUSE, F.DROP1}), "4.1.52+, 4.4.11+, 4.5.7 (f719e3754ee2 backport, no CLOSE)",
                "4.4.178"),
        Variant("K46", frozenset({F.REUSE, F.DROP1, F.CLOSE}),
                "4.6 .. 5.8 mainline; 4.14 < .194; 4.19 < .140; 5.4 < .59", "4.19.0"),
        Variant("K46U", frozenset({F.REUSE, F.DROP1, F.CLOSE, F.UNCONF}),
                "4.14.194-4.14.256, 4.19.140-4.19.218, 5.4.59-5.4.162, 5.8.2+", "4.19.140"),
        Variant("K59", frozenset({F.REUSE, F.DROP1, F.CLOSE, F.UNCONF, F.NODEST_WORK}),
                "5.9 .. 5.15.5, 5.10.0-5.10.82", "5.10.0"),
        Variant("K516", frozenset({F.REUSE, F.DROP1, F.CLOSE, F.UNCONF, F.NODEST_WORK, F.W0_UNGATED}),
                "5.16+, 5.15.6+, 5.10.83+ (6.1 checked)", "6.1"),
        Variant("K46UW", frozenset({F.REUSE, F.DROP1, F.CLOSE, F.UNCONF, F.W0_UNGATED}),
                "4.14.257+, 4.19.219+, 5.4.163+", "5.4.163"),
        Variant("KT17", frozenset({F.REUSE, F.DROP1, F.CLOSE, F.TENCENT_OLD_CT}),
                "TencentOS-kernel 4.14 branch with PR #17", "4.14.105-tencentos"),
    )
}

DEFAULT_MATRIX_VARIANTS = ("K41", "K46", "K46U", "K59", "K516", "K46UW", "KT17")


class UnknownKernel(ValueError):
    """A kernel version string that maps to no variant; the message says what was expected."""


_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:[-+~].*)?$")


def parse_kernel_version(text: str) -> tuple[int, int, int]:
    m = _VERSION.match(text.strip())
    if not m:
        raise UnknownKernel(f"'{text}' is not a kernel version (expected e.g. 4.19.100, 5.4.163 or 6.1)")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def variant_for_kernel(text: str) -> Variant:
    """Map a kernel version (as /proc/sys/kernel/osrelease prints it) to its variant."""
    if "tencentos" in text.lower():
        return VARIANTS["KT17"]
    major, minor, sub = parse_kernel_version(text)
    mm = (major, minor)
    if mm < (3, 10):
        raise UnknownKernel(f"kernel {text} predates dc7b3eb900aa (v3.10); the model starts at 3.10")
    if mm < (4, 1):
        return VARIANTS["K310"]
    # stable-series boundaries (ipvs-kernel.md section 0, "Stable backports")
    stable: dict[tuple[int, int], tuple[tuple[int, str], ...]] = {
        (4, 1): ((52, "K46NC"), (0, "K41")),
        (4, 4): ((11, "K46NC"), (0, "K41")),
        (4, 5): ((7, "K46NC"), (0, "K41")),
        (4, 14): ((257, "K46UW"), (194, "K46U"), (0, "K46")),
        (4, 19): ((219, "K46UW"), (140, "K46U"), (0, "K46")),
        (5, 4): ((163, "K46UW"), (59, "K46U"), (0, "K46")),
        (5, 8): ((2, "K46U"), (0, "K46")),
        (5, 10): ((83, "K516"), (0, "K59")),
        (5, 15): ((6, "K516"), (0, "K59")),
    }
    if mm in stable:
        for first, name in stable[mm]:
            if sub >= first:
                return VARIANTS[name]
    if mm in ((4, 2), (4, 3)):
        return VARIANTS["K41"]
    if mm == (5, 7):
        raise UnknownKernel(
            f"kernel {text}: the 5.7.y release that took f0a5e4d7 is not known (5.7.x is K46 or K46U); "
            "pass the variant instead"
        )
    if mm < (5, 9):
        return VARIANTS["K46"]
    if mm < (5, 16):
        return VARIANTS["K59"]
    return VARIANTS["K516"]


def resolve_variant(name_or_version: str) -> Variant:
    """A variant name (K46U) or a kernel version (4.19.140)."""
    key = name_or_version.strip()
    if key.upper() in VARIANTS:
        return VARIANTS[key.upper()]
    if key and key[0].isdigit():
        return variant_for_kernel(key)
    raise UnknownKernel(
        f"'{name_or_version}' is neither a variant ({', '.join(VARIANTS)}) nor a kernel version (e.g. 5.4.163)"
    )
