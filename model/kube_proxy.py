"""kube-proxy (IPVS mode) by release: graceful termination and the sysctls it sets at start-up.

Source: ../shared/reference/kube-proxy.md (sections 1, 2, 7); pkg/proxy/ipvs/graceful_termination.go and
pkg/proxy/ipvs/proxier.go of the releases named below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from ipvs_verify.model.decision_points import DecisionPoint, Hook, check_bool, decision, register
from ipvs_verify.model.sysctls import SYSCTL_RANGES, Sysctls


class ReusePolicy(Enum):
    LEAVE = "leave"  # never touches conn_reuse_mode
    FORCE_ZERO = "force-zero"  # #71114 (v1.13.0, 1.12.5, 1.11.7): EnsureSysctl(conn_reuse_mode, 0)
    ZERO_BELOW_5_9 = "zero-below-5.9"  # #102122 (v1.22.0): left as-is on kernels >= 5.9


@dataclass(frozen=True)
class KubeProxyVersion:
    text: str
    graceful_termination: bool  # #66012 (1.13.0; 1.12.2, 1.11.5): weight 0 + 60 s re-check
    count_inactive: bool  # #71515 (1.14.0; 1.13.1, 1.12.4, 1.11.6): ActiveConn+InactiveConn, not ActiveConn
    udp_immediate: bool  # #77802 (1.15.0; 1.14.3, 1.13.7, 1.12.10): UDP real servers deleted at once
    reuse_policy: ReusePolicy
    sets_nodest_and_quiescent: bool  # #71834 (1.14.0; 1.13.2, 1.12.5, 1.11.7)
    hooks: tuple[Hook, ...] = ()  # a patch's replacements of kube-proxy decision points (decision_points.py)

    def hook(self, point: str) -> Hook | None:
        return next((h for h in self.hooks if h.point == point), None)

    @property
    def hook_label(self) -> str:
        return f"kube-proxy {self.text}"

    @decision("startup-sysctls")
    def startup_sysctls(self, base: Sysctls, kernel: tuple[int, int, int]) -> Sysctls:
        """proxier.go NewProxier(): sysctls ensured at start-up (conntrack=1 in every release checked)."""
        s = base.with_(conntrack=True)
        if self.sets_nodest_and_quiescent:
            s = s.with_(expire_nodest_conn=True, expire_quiescent_template=True)
        # connReuseMinSupportedKernelVersion 4.1 (#88541); connReuseFixedKernelVersion 5.9 (#102122)
        if kernel >= (4, 1, 0):
            if self.reuse_policy is ReusePolicy.FORCE_ZERO or (
                self.reuse_policy is ReusePolicy.ZERO_BELOW_5_9 and kernel < (5, 9, 0)
            ):
                s = s.with_(conn_reuse_mode=0)
        return s

    @decision("deletion-criterion")
    def rs_deletable(self, is_udp: bool, active: int, inactive: int) -> bool:
        """graceful_termination.go deleteRsFunc(): may this real server be deleted now?"""
        if not self.graceful_termination:
            return True  # before #66012 syncEndpoint deleted the real server at once
        if is_udp and self.udp_immediate:
            return True  # "existing connections will be deleted on the next packet" (expire_nodest_conn=1)
        in_use = active + inactive if self.count_inactive else active
        return in_use == 0


def _check_sysctls(value: object) -> Sysctls:
    if not isinstance(value, Sysctls):
        raise TypeError("expected a Sysctls (base.with_(...))")
    for name, v in value.as_dict().items():
        lo, hi = SYSCTL_RANGES[name]
        if not lo <= v <= hi:
            raise ValueError(f"{name} must be {lo}..{hi}, got {v}")
    return value


# the counters a real server of the model's scopes can have (flows x entries stay far below this)
MAX_COUNTER = 8
register(DecisionPoint(
    "deletion-criterion", "kube-proxy", ("self", "is_udp", "active", "inactive"),
    "whether a quiesced real server may be deleted now (graceful_termination.go deleteRsFunc)",
    check_bool, lambda kp, s: ((kp, u, a, i) for u in (False, True) for a in range(MAX_COUNTER + 1)
                               for i in range(MAX_COUNTER + 1))))
register(DecisionPoint(
    "startup-sysctls", "kube-proxy", ("self", "base", "kernel"),
    "the IPVS sysctls kube-proxy ensures at start-up, by kernel version (proxier.go NewProxier)",
    _check_sysctls, lambda kp, s: ((kp, Sysctls(), k) for k in ((3, 10, 0), (4, 1, 0), (4, 19, 0), (5, 9, 0),
                                                                 (6, 1, 0)))))


class UnknownKubeProxy(ValueError):
    pass


_KP = re.compile(r"^v?1\.(\d+)(?:\.(\d+))?$")


def _at_least(minor: int, patch: int, firsts: dict[int, int], from_minor: int) -> bool:
    """True if 1.minor.patch carries a change first released in 1.from_minor.0 or back-ported as `firsts`."""
    if minor >= from_minor:
        return True
    return minor in firsts and patch >= firsts[minor]


def kube_proxy_version(text: str) -> KubeProxyVersion:
    m = _KP.match(text.strip())
    if not m:
        raise UnknownKubeProxy(f"'{text}' is not a kube-proxy version (expected e.g. 1.13.0, 1.21 or 1.30)")
    minor, patch = int(m.group(1)), int(m.group(2) or 0)
    if minor < 11 or minor > 35:
        raise UnknownKubeProxy(f"kube-proxy {text}: the model covers 1.11 to 1.35 (IPVS mode)")
    reuse = ReusePolicy.LEAVE
    if _at_least(minor, patch, {11: 7, 12: 5}, 13):
        reuse = ReusePolicy.FORCE_ZERO
    if minor >= 22:
        reuse = ReusePolicy.ZERO_BELOW_5_9
    return KubeProxyVersion(
        text=text.strip().lstrip("v"),
        graceful_termination=_at_least(minor, patch, {11: 5, 12: 2}, 13),
        count_inactive=_at_least(minor, patch, {11: 6, 12: 4, 13: 1}, 14),
        udp_immediate=_at_least(minor, patch, {12: 10, 13: 7, 14: 3}, 15),
        reuse_policy=reuse,
        sets_nodest_and_quiescent=_at_least(minor, patch, {11: 7, 12: 5, 13: 2}, 14),
    )
