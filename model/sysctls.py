"""The per-netns IPVS sysctls the model reads (/proc/sys/net/ipv4/vs/)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Sysctls:
    # defaults: ip_vs_ctl.c ip_vs_control_net_init_sysctl() (conn_reuse_mode = 1, the rest zero)
    conn_reuse_mode: int = 1  # bitmap 0..3 (bit 2: FIN_WAIT, only with NOOUTPUT, i.e. never in NAT)
    conntrack: bool = False
    expire_nodest_conn: bool = False
    expire_quiescent_template: bool = False
    conn_reuse_old_conntrack: bool = True  # TencentOS PR #17 only; its default is 1

    def with_(self, **changes: object) -> Sysctls:
        return replace(self, **changes)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


SYSCTL_RANGES: dict[str, tuple[int, int]] = {
    "conn_reuse_mode": (0, 3),
    "conntrack": (0, 1),
    "expire_nodest_conn": (0, 1),
    "expire_quiescent_template": (0, 1),
    "conn_reuse_old_conntrack": (0, 1),
}
