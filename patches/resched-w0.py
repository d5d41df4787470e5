"""The experiment of the first seed document: reschedule every reused SYN whose real server has weight 0,
whatever conn_reuse_mode and expire_nodest_conn say (ipvs-kernel.md sections 4.3-4.4 weigh c95c07836fa4,
which does this only with expire_nodest_conn=1).

A Python patch replaces decision points (docs/patches.md): each function takes the parameters of the model
function it replaces and returns what that one returns. Here only the weight-0 case changes; every other SYN
goes through the model's own port-reuse block (`unpatched`), which still reaches the other decision points.
"""

from ipvs_verify.model.decision_points import unpatched
from ipvs_verify.model.ip_vs_in import ReuseVerdict, uses_conntrack

ID = "resched-w0"
TITLE = "reschedule every reused SYN to a weight-0 real server, whatever conn_reuse_mode says"
BASED_ON = "the first seed document's experiment (ipvs-kernel.md section 4.4, against c95c07836fa4)"
BASE = {"variants": ["K46"], "kube_proxy": "1.30"}


def port_reuse(v, s, state, controlled, has_children, nfct, dest_weight_zero, skb_ct):  # type: ignore[no-untyped-def]
    if dest_weight_zero:
        # as f719e3754ee2's weight-0 branch: reschedule; drop the SYN when the old entry's conntrack is in use
        drop = uses_conntrack(v, nfct, skb_ct)
        return ReuseVerdict(True, drop, False, not has_children)
    return unpatched("port-reuse")(v, s, state, controlled, has_children, nfct, dest_weight_zero, skb_ct)


DECISIONS = {"port-reuse": port_reuse}
