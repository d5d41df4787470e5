"""A workaround the field reports give: traffic that bypasses IPVS (a load balancer straight to the pod IPs, an
ingress controller, a service-mesh sidecar), modelled as the L4 proxy such a path is.

What changes against the IPVS path, and why each is a decision point of the model:
* the proxy keeps no entry past a connection's end, so a SYN from a reused client port is a new connection,
  scheduled over the endpoints that are ready, never forwarded by an old entry and never dropped for one
  (port-reuse: reschedule, no drop, for every old entry);
* the node's conntrack still sees the flow (client -> pod IP), but no IPVS entry holds it; a SYN on a TIME_WAIT
  conntrack entry reopens it (nf_conntrack_proto_tcp.c tcp_packet, TCP_CONNTRACK_TIME_WAIT + SYN), as the
  reschedule without a drop does here;
* the proxy drops an endpoint once no open connection uses it: TIME_WAIT leaves nothing behind on it, so only
  active connections count (deletion-criterion: active == 0).
What stays as on the IPVS path: the endpoint list (kube-proxy's weight 0 for a terminating pod stands for the
proxy's own endpoint update, at the same sync), the scheduler (rr over the ready endpoints), pods, clients and
time. Left out, and why it cannot make this patch look better than the real path: the proxy's own endpoint
lag (an ingress or sidecar watches EndpointSlices as kube-proxy does: the same window, not a shorter one) and
its retries of a refused connection (they only hide failures the model still counts).
"""

from ipvs_verify.model.ip_vs_in import ReuseVerdict

ID = "bypass-ipvs"
TITLE = "workaround: traffic that bypasses IPVS (a load balancer, an ingress or a sidecar straight to the pods)"
BASED_ON = "the workarounds of kubernetes issues 81775 and 70747 (send the traffic to the pods, not to the VIP)"
BASE = {"variants": ["K46"], "kube_proxy": "1.30"}


def port_reuse(v, s, state, controlled, has_children, nfct, dest_weight_zero, skb_ct):  # type: ignore[no-untyped-def]
    # no entry outlives its connection: schedule afresh, never dropped, the old entry gone at once
    return ReuseVerdict(True, False, True, True)


def deletion_criterion(kp, is_udp, active, inactive):  # type: ignore[no-untyped-def]
    return active == 0  # a TIME_WAIT connection holds nothing on the proxy


DECISIONS = {"port-reuse": port_reuse, "deletion-criterion": deletion_criterion}
