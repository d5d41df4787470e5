"""The actions of the transition system: what clients, timers, kube-proxy, the environment and an operator can
do, who does each, and the parts of a state an action's step may be confined to (System.footprint).
"""

from __future__ import annotations

from enum import IntEnum


class Act(IntEnum):
    # clients
    REQUEST = 0  # (flow, plan): a short connection, connect + close in one step
    CONNECT = 1  # (flow): open a long-lived connection
    SEND = 2  # (flow): data on an established connection
    CLOSE = 3  # (flow, plan): close an established connection
    # time and timers
    WAIT = 4  # (seconds)
    EXPIRE = 5  # (flow, entry index): an IPVS entry's timer fires
    CLIENT_TIMER = 6  # (flow): SYN retransmission, or the end of the client's TIME_WAIT
    GRACE_END = 7  # (pod): the grace period ends, the pod is destroyed
    SYNC = 8  # kube-proxy syncProxyRules
    CHECK = 9  # kube-proxy graceful-deletion check
    FLUSH = 10  # 5.9+ expire_nodest_conn work
    # the environment (kubectl, controllers)
    DELETE_POD = 11  # (pod)
    ADD_POD = 12  # (pod)
    CRASH_POD = 13  # (pod)
    ENDPOINT_GONE = 14  # (pod): the endpoints controller drops a crashed pod's endpoint
    # operator (scenarios): ipvsadm by hand
    SET_WEIGHT = 15  # (pod, weight)
    DELETE_DEST = 16  # (pod)
    ADD_DEST = 17  # (pod, weight)
    # UDP clients
    DATAGRAM = 18  # (flow): a datagram to the service, answered by the pod (a DNS query, say)
    # persistence (sessionAffinity: ClientIP)
    TEMPLATE_EXPIRE = 19  # (client): a persistence template's timer fires
    # the node's own tables
    NEIGH_FAILED = 20  # (pod): bridge pod network, the neighbour resolution of a destroyed pod's address fails
    CT_EXPIRE = 21  # (flow): a confirmed SYN_SENT conntrack entry times out
    # a client host that loses its sockets (crashed, restarted with its address kept)
    CLIENT_CRASH = 22  # (flow): forgets its established connection without a packet; the port is free at once
    # the node's neighbour entry for a destroyed bridge pod's address (model/state.py Neigh)
    # (pod, 1 if the gc frees it before the next packet else 0): its REACHABLE time runs out, at any moment up
    # to Timing.neigh_reachable_max
    NEIGH_STALE = 23


Action = tuple[int, int, int]


class Part(IntEnum):
    """The parts of a state that a step may be confined to (see System.footprint)."""

    FLOW = 0  # the action's own flow, flows[a[1]]
    SCHED = 1  # dests, order, cursor, pods, templates
    KP = 2  # kube-proxy and time: sync_timer, check_timer, graceful, flush_pending, budget
    FLOW_SUMMARY = 3  # read only: the sum over every flow of System.flow_summary
    STATUS = 4  # read only: of the scheduling side, System.status_view (each dest's status, each pod's phase)

ACTORS = {
    Act.REQUEST: "client", Act.CONNECT: "client", Act.SEND: "client", Act.CLOSE: "client",
    Act.WAIT: "time", Act.EXPIRE: "ipvs", Act.CLIENT_TIMER: "client", Act.GRACE_END: "kubelet",
    Act.SYNC: "kube-proxy", Act.CHECK: "kube-proxy", Act.FLUSH: "ipvs", Act.DELETE_POD: "user",
    Act.ADD_POD: "user", Act.CRASH_POD: "kubelet", Act.ENDPOINT_GONE: "endpoints-controller",
    Act.SET_WEIGHT: "operator", Act.DELETE_DEST: "operator", Act.ADD_DEST: "operator", Act.DATAGRAM: "client",
    Act.TEMPLATE_EXPIRE: "ipvs", Act.NEIGH_FAILED: "node", Act.CT_EXPIRE: "conntrack", Act.CLIENT_CRASH: "client",
    Act.NEIGH_STALE: "node",
}

# each action kind's name in traces, coverage reports and scenarios ("client-timer")
ACTION_NAMES = {k: k.name.lower().replace("_", "-") for k in Act}
