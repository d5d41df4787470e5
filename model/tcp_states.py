"""IPVS's own TCP state machine for a connection entry, with its default timeouts.

Source: net/netfilter/ipvs/ip_vs_proto_tcp.c (tcp_states, tcp_timeouts, tcp_state_active,
set_tcp_state), unchanged from 4.x to 6.1. The `secure_tcp` defense table (tcp_states_dos)
is not modelled: it is off by default and kube-proxy never enables it.
"""

from __future__ import annotations

from enum import IntEnum


class TcpState(IntEnum):
    """IP_VS_TCP_S_* in kernel order; UDP entries use NORMAL (IP_VS_UDP_S_NORMAL)."""

    NONE = 0
    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT = 4
    TIME_WAIT = 5
    CLOSE = 6
    CLOSE_WAIT = 7
    LAST_ACK = 8
    LISTEN = 9
    SYNACK = 10
    NORMAL = 11  # UDP's only state


SHORT = {
    TcpState.NONE: "NONE", TcpState.ESTABLISHED: "ESTABLISHED", TcpState.SYN_SENT: "SYN_SENT",
    TcpState.SYN_RECV: "SYN_RECV", TcpState.FIN_WAIT: "FIN_WAIT", TcpState.TIME_WAIT: "TIME_WAIT",
    TcpState.CLOSE: "CLOSE", TcpState.CLOSE_WAIT: "CLOSE_WAIT", TcpState.LAST_ACK: "LAST_ACK",
    TcpState.LISTEN: "LISTEN", TcpState.SYNACK: "SYNACK", TcpState.NORMAL: "NORMAL",
}


class Seg(IntEnum):
    """Packet class, by tcp_state_idx() priority: RST > SYN > FIN > ACK."""

    SYN = 0
    FIN = 1
    ACK = 2
    RST = 3


class Dir(IntEnum):
    INPUT = 0  # client -> real server (ip_vs_in)
    OUTPUT = 1  # real server -> client (handle_response), NAT only


# ip_vs_proto_tcp.c tcp_states[]: rows (direction, segment), columns = current state
# NONE ES SS SR FW TW CL CW LA LI SA
_S = TcpState
_ROW = {
    (Dir.INPUT, Seg.SYN): (_S.SYN_RECV, _S.ESTABLISHED, _S.ESTABLISHED, _S.SYN_RECV, _S.SYN_RECV, _S.SYN_RECV,
                           _S.SYN_RECV, _S.SYN_RECV, _S.SYN_RECV, _S.SYN_RECV, _S.SYN_RECV),
    (Dir.INPUT, Seg.FIN): (_S.CLOSE, _S.CLOSE_WAIT, _S.SYN_SENT, _S.TIME_WAIT, _S.TIME_WAIT, _S.TIME_WAIT,
                           _S.CLOSE, _S.CLOSE_WAIT, _S.LAST_ACK, _S.LISTEN, _S.TIME_WAIT),
    (Dir.INPUT, Seg.ACK): (_S.ESTABLISHED, _S.ESTABLISHED, _S.SYN_SENT, _S.ESTABLISHED, _S.FIN_WAIT,
                           _S.TIME_WAIT, _S.CLOSE, _S.CLOSE_WAIT, _S.CLOSE, _S.LISTEN, _S.ESTABLISHED),
    (Dir.INPUT, Seg.RST): (_S.CLOSE, _S.CLOSE, _S.CLOSE, _S.SYN_RECV, _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE,
                           _S.LAST_ACK, _S.LISTEN, _S.SYN_RECV),
    (Dir.OUTPUT, Seg.SYN): (_S.SYN_SENT, _S.ESTABLISHED, _S.SYN_SENT, _S.SYN_RECV, _S.SYN_SENT, _S.SYN_SENT,
                            _S.SYN_SENT, _S.SYN_SENT, _S.SYN_SENT, _S.LISTEN, _S.SYN_RECV),
    (Dir.OUTPUT, Seg.FIN): (_S.TIME_WAIT, _S.FIN_WAIT, _S.SYN_SENT, _S.TIME_WAIT, _S.FIN_WAIT, _S.TIME_WAIT,
                            _S.CLOSE, _S.TIME_WAIT, _S.LAST_ACK, _S.LISTEN, _S.TIME_WAIT),
    (Dir.OUTPUT, Seg.ACK): (_S.ESTABLISHED, _S.ESTABLISHED, _S.SYN_SENT, _S.ESTABLISHED, _S.FIN_WAIT,
                            _S.TIME_WAIT, _S.CLOSE, _S.CLOSE_WAIT, _S.LAST_ACK, _S.ESTABLISHED, _S.ESTABLISHED),
    (Dir.OUTPUT, Seg.RST): (_S.CLOSE, _S.CLOSE, _S.SYN_SENT, _S.CLOSE, _S.CLOSE, _S.TIME_WAIT, _S.CLOSE,
                            _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE),
}


def tcp_transition(state: TcpState, direction: Dir, seg: Seg) -> TcpState:
    """ip_vs_proto_tcp.c set_tcp_state(): the next IPVS TCP state (NAT mode tables)."""
    if state == TcpState.NORMAL:
        return state
    return _ROW[(direction, seg)][state]


# ip_vs_proto_tcp.c tcp_timeouts[] (seconds); UDP: ip_vs_proto_udp.c udp_timeouts[NORMAL] = 5*60
DEFAULT_TIMEOUTS: dict[TcpState, int] = {
    TcpState.NONE: 2, TcpState.ESTABLISHED: 900, TcpState.SYN_SENT: 120, TcpState.SYN_RECV: 60,
    TcpState.FIN_WAIT: 120, TcpState.TIME_WAIT: 120, TcpState.CLOSE: 10, TcpState.CLOSE_WAIT: 60,
    TcpState.LAST_ACK: 30, TcpState.LISTEN: 120, TcpState.SYNACK: 120, TcpState.NORMAL: 300,
}

# ip_vs_proto_tcp.c tcp_state_active(): only these count in ActiveConn
ACTIVE_STATES = frozenset({TcpState.ESTABLISHED, TcpState.SYN_SENT, TcpState.SYN_RECV, TcpState.SYNACK})


def is_active(state: TcpState) -> bool:
    """ActiveConn vs InActConn. UDP entries never clear INACTIVE (udp_state_transition)."""
    return state in ACTIVE_STATES
