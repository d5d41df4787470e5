"""The decisions of ip_vs_in() (6.x: ip_vs_in_hook()) that differ between kernel variants.

Each function is pure over a small finite domain (enums, booleans), so an engine can evaluate it
concretely or enumerate it into a table (an SMT encoding, a cache). Blocks are in the order the packet
meets them in net/netfilter/ipvs/ip_vs_core.c: connection lookup, the port-reuse block, the
server-status block, then scheduling (tcp_conn_schedule / udp_conn_schedule).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from ipvs_verify.model.decision_points import (
    DecisionPoint,
    bools,
    check_bool,
    check_tuple,
    decision,
    register,
)
from ipvs_verify.model.sysctls import Sysctls
from ipvs_verify.model.tcp_states import TcpState
from ipvs_verify.model.variants import Feature, Variant


class SkbCt(IntEnum):
    """The packet's conntrack as IPVS sees it (nf_conntrack runs at prio -200, before IPVS)."""

    NONE = 0  # no conntrack in this netns (or untracked)
    NEW = 1  # a new, unconfirmed entry (first packet, or a SYN that reopened TIME_WAIT/CLOSE)
    CONFIRMED = 2  # an existing confirmed entry (e.g. ESTABLISHED, which ignores a SYN)


class ReuseVerdict(NamedTuple):
    resched: bool  # schedule this SYN afresh (cp = NULL), now or on its retransmission
    drop: bool  # NF_DROP the SYN: the client retransmits after its 1 s RTO
    clear_nfct: bool  # clear IP_VS_CONN_F_NFCT on the old entry (its expiry will not kill the conntrack)
    expire_old: bool  # ip_vs_conn_expire_now(old entry)


KEEP = ReuseVerdict(False, False, False, False)


@decision("new-conn-expected")
def is_new_conn_expected(v: Variant, state: TcpState, controlled: bool, mode: int, nooutput: bool = False) -> bool:
    """ip_vs_core.c is_new_conn_expected() (TCP): may a SYN on this entry start a new connection?"""
    if controlled:
        return False  # "controlled (FTP DATA or persistence)?" -> never rescheduled here
    if state == TcpState.TIME_WAIT:
        return True
    if state == TcpState.CLOSE and v.has(Feature.CLOSE):
        return True  # CLOSE accepted since 4.6 mainline
    return bool(mode & 2) and state == TcpState.FIN_WAIT and nooutput  # bit 2: DR/TUN only


@decision("drop-predicate")
def uses_conntrack(v: Variant, nfct: bool, skb_ct: SkbCt) -> bool:
    """The drop predicate of the variant.

    Before f0a5e4d7 (ip_vs.h ip_vs_conn_uses_conntrack): cp has NFCT and the skb has a conntrack.
    From f0a5e4d7 (ip_vs_conn_uses_old_conntrack): the skb's conntrack is confirmed; NFCT is not looked at.
    """
    if v.has(Feature.UNCONF):
        return skb_ct == SkbCt.CONFIRMED
    return nfct and skb_ct != SkbCt.NONE


@decision("port-reuse")
def reuse_block(
    v: Variant,
    s: Sysctls,
    state: TcpState,
    controlled: bool,
    has_children: bool,
    nfct: bool,
    dest_weight_zero: bool,
    skb_ct: SkbCt,
) -> ReuseVerdict:
    """The port-reuse block, for a SYN (TCP) that found an entry cp. UDP never gets here (is_new_conn)."""
    nodest = s.expire_nodest_conn
    mode = s.conn_reuse_mode
    if not v.has(Feature.REUSE):
        # dc7b3eb900aa (3.10-4.0): weight 0 + expire_nodest_conn -> expire (no n_control guard), reschedule
        if v.has(Feature.W0_SYN) and nodest and dest_weight_zero:
            return ReuseVerdict(True, False, False, True)
        return KEEP
    # d752c3645717 gates the whole block on conn_reuse_mode != 0; c95c07836fa4 ungates the weight-0 branch
    weight0_branch = nodest and dest_weight_zero and (mode != 0 or v.has(Feature.W0_UNGATED))
    expected_branch = mode != 0 and not weight0_branch and is_new_conn_expected(v, state, controlled, mode)
    if not (weight0_branch or expected_branch):
        return KEEP
    if not v.has(Feature.DROP1):
        # d752c3645717 (K41): reschedule at once, never drop, NFCT left set (T14)
        return ReuseVerdict(True, False, False, not has_children)
    uses_ct = uses_conntrack(v, nfct, skb_ct)
    if weight0_branch:
        resched = True  # f719e3754ee2: weight-0 branch always reschedules
    else:
        resched = not has_children or not uses_ct  # "controlling conns are rescheduled only without conntrack"
    if not resched:
        return KEEP
    if v.has(Feature.TENCENT_OLD_CT):
        # TencentOS PR #17: keep the reopened conntrack unless persistence/FTP links exist
        reuse_ok = uses_ct and not controlled and not has_children and s.conn_reuse_old_conntrack
        drop = uses_ct and not reuse_ok
        return ReuseVerdict(True, drop, reuse_ok, not has_children)
    if v.has(Feature.UNCONF):
        # f0a5e4d7a594: drop only for a confirmed conntrack; otherwise clear NFCT and reschedule now
        return ReuseVerdict(True, uses_ct, not uses_ct, not has_children)
    # f719e3754ee2: drop whenever the entry uses conntrack; the retransmitted SYN builds a fresh one
    return ReuseVerdict(True, uses_ct, False, not has_children)


class StatusVerdict(NamedTuple):
    drop: bool
    expire: bool
    clear_nfct: bool
    resched: bool  # 5.9+: cp = NULL, the same packet goes on to scheduling


@decision("server-status")
def status_block(v: Variant, s: Sysctls, skb_ct: SkbCt) -> StatusVerdict:
    """The server-status block: the entry's dest is no longer AVAILABLE (deleted)."""
    if v.has(Feature.NODEST_WORK):
        # 35dfb013149f: checked before scheduling; with expire_nodest_conn the same packet is rescheduled
        if not s.expire_nodest_conn:
            return StatusVerdict(True, False, False, False)
        old = uses_conntrack(v, True, skb_ct)  # ip_vs_conn_uses_old_conntrack (NFCT not consulted)
        return StatusVerdict(old, True, not old, not old)
    # before 5.9: always dropped; expire_nodest_conn only decides whether the entry is expired now
    return StatusVerdict(True, s.expire_nodest_conn, False, False)


# ---------------------------------------------------------------------- as decision points (issue 16)
register(DecisionPoint(
    "port-reuse", "kernel",
    ("v", "s", "state", "controlled", "has_children", "nfct", "dest_weight_zero", "skb_ct"),
    "a SYN that found an entry: keep it, reschedule, drop, clear NFCT, expire the old entry (ip_vs_core.c "
    "ip_vs_in_hook, the conn_reuse_mode block)",
    check_tuple(ReuseVerdict, ReuseVerdict._fields),
    lambda v, s: ((v, s, st, *rest, ct) for st in TcpState for rest in bools(4) for ct in SkbCt)))
register(DecisionPoint(
    "drop-predicate", "kernel", ("v", "nfct", "skb_ct"),
    "whether the old entry uses the packet's conntrack, so the reused SYN is dropped (ip_vs.h "
    "ip_vs_conn_uses_conntrack / ip_vs_conn_uses_old_conntrack)",
    check_bool, lambda v, s: ((v, nfct, ct) for nfct in (False, True) for ct in SkbCt)))
register(DecisionPoint(
    "new-conn-expected", "kernel", ("v", "state", "controlled", "mode", "nooutput"),
    "whether an entry in this state may start a new connection on a SYN (ip_vs_core.c is_new_conn_expected)",
    check_bool, lambda v, s: ((v, st, c, m, n) for st in TcpState for c, n in bools(2) for m in range(4))))
register(DecisionPoint(
    "server-status", "kernel", ("v", "s", "skb_ct"),
    "a packet whose entry's dest was deleted: drop, expire, clear NFCT, reschedule (ip_vs_core.c "
    "ip_vs_in_hook, the dest-not-available block)",
    check_tuple(StatusVerdict, StatusVerdict._fields), lambda v, s: ((v, s, ct) for ct in SkbCt)))
