"""The decisions of ip_vs_ctl.c (the control side of IPVS) that differ between kernel variants."""

from __future__ import annotations

from ipvs_verify.model.decision_points import DecisionPoint, check_bool, decision, register
from ipvs_verify.model.sysctls import Sysctls
from ipvs_verify.model.variants import Feature, Variant


@decision("deleted-dest-flush")
def flushes_deleted_dest(v: Variant, s: Sysctls) -> bool:
    """Does deleting a dest queue the expiry of all its connections?

    35dfb013149f (v5.9): __ip_vs_del_dest() -> ip_vs_enqueue_expire_nodest_conns() when expire_nodest_conn is
    set (delayed work, 1 jiffy); before it, a deleted dest's entries expire one by one, on their next packet.
    """
    return v.has(Feature.NODEST_WORK) and s.expire_nodest_conn


register(DecisionPoint(
    "deleted-dest-flush", "kernel", ("v", "s"),
    "whether deleting a dest expires all its connections at once (ip_vs_ctl.c __ip_vs_del_dest, 35dfb013149f)",
    check_bool, lambda v, s: ((v, s),)))
