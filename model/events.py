"""What a step did, as small tuples that properties read and reports render.

An event is (kind, subject, a, b): `subject` is a flow index for packet events and a pod index for
control-plane events. Events are the semantic record of a step; outcome sentences are derived from them.
"""

from __future__ import annotations

from enum import IntEnum


class Ev(IntEnum):
    SYN_FORWARDED = 0  # (flow, pod, flags SF_*)
    SYN_DROPPED = 1  # (flow, DropWhy)
    REFUSED = 2  # (flow): no usable dest -> ICMP port unreachable
    CONNECTED = 3  # (flow, pod)
    NO_ROUTE = 4  # (flow, pod): the pod's IP is gone -> ICMP host unreachable
    TIMED_OUT = 5  # (flow): the client gave up after its SYN retries
    REUSE_HIT = 6  # (flow, entry state, entry dest): a SYN found an existing entry
    RESCHEDULED = 7  # (flow, old dest): the reuse or status block dropped the old entry
    PKT_FORWARDED = 8  # (flow, dest, pod the connection was established with)
    BROKEN = 9  # (flow, BrokenWhy, pod)
    CLOSED = 10  # (flow, Plan of who closed first)
    CT_KILLED = 11  # (flow, 1 if it belonged to a newer, live connection else 0)
    ENTRY_EXPIRED = 12  # (flow, dest)
    DEST_ADDED = 13  # (pod, weight)
    DEST_QUIESCED = 14  # (pod, ActiveConn + InActConn)
    DEST_DELETED = 15  # (pod, established connections to it whose pod still runs)
    POD_DELETED = 16  # (pod)
    POD_DESTROYED = 17  # (pod)
    POD_ADDED = 18  # (pod)
    POD_CRASHED = 19  # (pod)
    ENDPOINT_GONE = 20  # (pod)
    SYNCED = 21
    CHECKED = 22
    FLUSHED = 23  # (number of entries removed)
    TIME = 24  # (seconds)
    TIME_WAIT_OVER = 25  # (flow)
    WEIGHT_SET = 26  # (pod, weight)
    DGRAM_FORWARDED = 27  # (flow, pod, flags SF_*): a UDP datagram forwarded to a real server
    DGRAM_DROPPED = 28  # (flow, DropWhy): a UDP datagram dropped by IPVS (the application must retry)
    ANSWERED = 29  # (flow, pod): the pod's reply reached the client
    TEMPLATE_CREATED = 30  # (client, pod): a persistence template pins the client to this pod
    TEMPLATE_INVALIDATED = 31  # (client, pod): ip_vs_check_template found its dest deleted or quiescent
    TEMPLATE_EXPIRED = 32  # (client, pod, 1 if it still controls connections: re-armed for 60 s)
    SYN_QUEUED = 33  # (flow, pod): bridge: the SYN waits on the neighbour resolution of the pod's gone address
    NEIGH_FAILED = 34  # (pod, clients told): bridge: that resolution failed; queued SYNs get host unreachable
    CT_EXPIRED = 35  # (flow): the flow's confirmed SYN_SENT conntrack entry timed out
    CLIENT_CRASHED = 36  # (flow, pod): the client forgot its connection to pod; the pod still holds its socket
    CHALLENGED = 37  # (flow, pod): the pod's old socket answered the SYN with a challenge ACK; the client reset it
    TIME_WAIT_TAKEN_OVER = 38  # (flow): a bound port's connect took over the client's own TIME_WAIT socket
    ORPHANED = 39  # (flow, BrokenWhy, pod): the client's close got no answer; its FIN_WAIT1 socket holds the port
    ORPHAN_GONE = 40  # (flow, 1 if a RST ended it else 0: it timed out): the port is free again
    # bridge: the SYN went out to the destroyed pod's old MAC (a live neighbour entry) and nobody answered
    SYN_LOST = 41  # (flow, pod, Neigh the entry is in after it)
    # (pod, 1 if the gc freed it too: the next packet starts a resolution): the entry for a destroyed pod's
    # address went STALE
    NEIGH_STALE = 42
    # (pod, flow + 1 whose packet reached the real server in the window, else 0; ActiveConn + InActConn read):
    # kube-proxy's deleteRsFunc read the counters, a packet passed before its DeleteRealServer (Scope.kp_window)
    RS_READ = 43
    # (flow, pod): the pod's SYN-ACK matched no conntrack entry (the flow's confirmed one names another pod: IPVS
    # alters only an unconfirmed entry; or IPVS's SYN went untracked): INVALID, dropped by the node's FORWARD rule
    # (Config.invalid_drop). The SYN passed IPVS; the client retransmits it
    REPLY_INVALID = 44


# SYN_FORWARDED / DGRAM_FORWARDED flags
SF_REUSED = 1  # through an existing entry (no scheduling)
SF_POD_DEAD = 2  # the pod was destroyed
SF_DEST_W0 = 4  # the dest had weight 0
SF_DEST_DELETED = 8  # the dest was deleted (not AVAILABLE)
SF_RETRANSMIT = 16  # a retransmitted SYN


class DropWhy(IntEnum):
    REUSE = 0  # port-reuse block: "drop first packet to redirect conntrack"
    NODEST = 1  # server-status block: dest not available


class BrokenWhy(IntEnum):
    DEST_DELETED = 0  # packets dropped by the server-status block
    RESET = 1  # no IPVS entry: the node's own stack answered RST
    POD_GONE = 2  # the pod was destroyed under the connection


Event = tuple[int, int, int, int]
