"""The packet path (ip_vs_in): a SYN or a datagram meeting the connection table, the packets of an
established connection and its close, a client's retransmission and TIME_WAIT, and the IPVS entries' timers.
"""

from __future__ import annotations

from ipvs_verify.model.config import Config
from ipvs_verify.model.core import EXPIRE_NOW
from ipvs_verify.model.events import SF_RETRANSMIT, BrokenWhy, DropWhy, Ev, Event
from ipvs_verify.model.scheduling import Scheduling
from ipvs_verify.model.state import (
    FREE_CLIENT,
    Client,
    DestStatus,
    Entry,
    Flow,
    Neigh,
    Plan,
    Pod,
    PodPhase,
    Sock,
    State,
    disown,
    with_timer,
)
from ipvs_verify.model.tcp_states import Dir, Seg, TcpState, tcp_transition

Newest = tuple[DestStatus, PodPhase] | None  # see DataPath._packets


class DataPath(Scheduling):
    """What packets and IPVS timers do to the connection table, the conntrack entries and the clients."""

    def __init__(self, config: Config, timing: str = "exact") -> None:
        super().__init__(config, timing)
        # a connection's packets depend on its flow and two facts beyond it (_packets): memoised, as the kernel's
        # decisions are (most closes repeat one of a few hundred flows: measured). A plain dict: an lru_cache of
        # the bound method would make a reference cycle, which the searches' gc.freeze would keep forever.
        self._packets_seen: dict[tuple[Flow, int, tuple[tuple[Dir, Seg], ...], Newest],
                                 tuple[Flow, int, tuple[Event, ...]]] = {}

    def _packets_memo(self, flow: Flow, f: int, seq: tuple[tuple[Dir, Seg], ...], newest: Newest
                      ) -> tuple[Flow, int, tuple[Event, ...]]:
        key = (flow, f, seq, newest)
        out = self._packets_seen.get(key)
        if out is None:
            out = self._packets_seen[key] = self._packets(flow, f, seq, newest)
        return out

    def _send_syn(self, st: State, f: int, tries: int, plan: Plan, ev: list[Event]) -> State:
        flow = st.flows[f]
        if flow.client.sock == Sock.TIME_WAIT:  # only a bound port gets here (System.actions)
            ev.append((Ev.TIME_WAIT_TAKEN_OVER, f, 0, 0))
        entries = list(flow.entries)
        skb_ct = self._skb_ct(flow)
        cp: Entry | None = entries[0] if entries else None  # ip_vs_conn_in_get: the newest entry wins
        reused = cp is not None
        retrans = SF_RETRANSMIT if tries else 0
        if cp is not None:
            ev.append((Ev.REUSE_HIT, f, int(cp.state), cp.dest))
            # ip_vs_core.c ip_vs_in(): the port-reuse block (SYN, entry found)
            d = st.dests[cp.dest]
            r = self.reuse(cp.state, d.weight == 0, cp.nfct, skb_ct, cp.control != 0)
            if r.resched:
                entries[0] = cp = Entry(cp.state, cp.dest, cp.nfct and not r.clear_nfct, cp.owns_ct,
                                        EXPIRE_NOW if r.expire_old else cp.timer, cp.control)
                ev.append((Ev.RESCHEDULED, f, cp.dest, 0))
                if r.drop:
                    ev.append((Ev.SYN_DROPPED, f, DropWhy.REUSE, 0))
                    return self._syn_dropped(st, f, entries, flow, tries, plan)
                cp = None
        if cp is not None and st.dests[cp.dest].status == DestStatus.TRASH:
            # the server-status block: the entry's dest was deleted (not AVAILABLE)
            entries[0], sv = self._server_status(cp, skb_ct)
            cp = entries[0]
            if sv.drop:
                ev.append((Ev.SYN_DROPPED, f, DropWhy.NODEST, 0))
                return self._syn_dropped(st, f, entries, flow, tries, plan)
            ev.append((Ev.RESCHEDULED, f, cp.dest, 0))
            cp = None
            reused = False
        if cp is None:
            reused = False
            # tcp_conn_schedule -> ip_vs_schedule
            st, dest, control = self._schedule(st, f, ev)
            if dest < 0:
                # ip_vs_leave(): ICMP port unreachable -> ECONNREFUSED; the SYN's conntrack is never confirmed
                ev.append((Ev.REFUSED, f, 0, 0))
                return self._set_flow(st, f, Flow(tuple(entries), flow.ct_live, FREE_CLIENT, flow.ct_timer))
            # ip_vs_conn_new(): NFCT iff sysctl conntrack; hashed at the head of its chain
            cp = Entry(TcpState.NONE, dest, self.s.conntrack, False, 0, control)
            entries.insert(0, cp)
        pod = st.pods[cp.dest]
        ev.append((Ev.SYN_FORWARDED, f, cp.dest, retrans | self._forward_flags(st, cp.dest, reused)))
        c = flow.client
        if reused and c.sock == Sock.FREE and c.pod == cp.dest and pod.phase != PodPhase.DESTROYED:
            return self._syn_challenged(st, f, entries, cp, tries, plan, ev)
        # set_tcp_state(INPUT, SYN) runs before xmit; ip_vs_conn_put() re-arms the timer whatever xmit does
        state = tcp_transition(cp.state, Dir.INPUT, Seg.SYN)
        if pod.phase == PodPhase.DESTROYED:
            if self.bridge:
                return self._syn_to_gone_neighbour(st, f, entries, cp, state, tries, plan, ev)
            # ip_vs_xmit.c ip_vs_nat_xmit -> __ip_vs_get_out_rt: no route to the pod's IP (routed /32 network) ->
            # err_unreach, ICMP host unreachable at once, translated back to the VIP; the SYN never reaches
            # POST_ROUTING, so its new conntrack entry is never confirmed (6.1; R01 on the real kernel)
            entries[0] = Entry(state, cp.dest, cp.nfct, cp.owns_ct, self._timeout[state], cp.control)
            ev.append((Ev.NO_ROUTE, f, cp.dest, 0))
            return self._set_flow(st, f, Flow(tuple(entries), flow.ct_live, FREE_CLIENT, flow.ct_timer))
        ct_live = self._ct_after(flow, cp)
        if self.ct_pods and ct_live != self.ct_naming(cp.dest):
            return self._reply_invalid(st, f, entries, cp, state, tries, plan, ev)
        # SYN-ACK (OUTPUT), ACK (INPUT): the handshake completes through the same entry
        state = tcp_transition(tcp_transition(state, Dir.OUTPUT, Seg.SYN), Dir.INPUT, Seg.ACK)
        entries = list(disown(tuple(entries)))
        entries[0] = Entry(state, cp.dest, cp.nfct, ct_live != 0, self._timeout[state], cp.control)
        ev.append((Ev.CONNECTED, f, cp.dest, 0))
        client = Client(Sock.ESTABLISHED, cp.dest, 0, 0, plan)
        st = self._set_flow(st, f, Flow(tuple(entries), ct_live, client))
        if plan != Plan.HOLD:
            st = self._close(st, f, plan, ev)
        return st

    def _reply_invalid(self, st: State, f: int, entries: list[Entry], cp: Entry, state: TcpState, tries: int,
                       plan: Plan, ev: list[Event]) -> State:
        """The pod answers the SYN, but no conntrack entry expects its SYN-ACK: the flow's confirmed entry names
        another pod (K41, K310 and KT17 reschedule without dropping while one lives; ip_vs_update_conntrack leaves
        a confirmed entry as it is), or the SYN went untracked (no NFCT). A SYN-ACK cannot start an entry
        (nf_conntrack_proto_tcp.c tcp_new: sNO -> sIV), so it is INVALID, and the node's FORWARD rule drops it
        before IPVS's reply hook (filter at priority 0, ip_vs_reply4 at 100). IPVS saw the SYN only (SYN_RECV,
        re-armed); the stale conntrack entry is untouched; the client retransmits after its RTO. Measured on UML
        6.1.176 with the entry made by `conntrack -I` (scenarios/conformance/C36): without the rule the SYN-ACK
        passes untracked, IPVS translates it, and the connect completes (C35)."""
        entries[0] = Entry(state, cp.dest, cp.nfct, cp.owns_ct, self._timeout[state], cp.control)
        ev.append((Ev.REPLY_INVALID, f, cp.dest, 0))
        flow = st.flows[f]
        return self._set_flow(st, f, Flow(tuple(entries), flow.ct_live, Client(
            Sock.SYN_SENT, -1, self.timing.syn_rto << tries, tries, plan), flow.ct_timer))

    def _syn_to_gone_neighbour(self, st: State, f: int, entries: list[Entry], cp: Entry, state: TcpState,
                               tries: int, plan: Plan, ev: list[Event]) -> State:
        """Bridge pod network: a SYN to a destroyed pod's on-link address. IPVS has a route (cni0's subnet), so
        the SYN passes LOCAL_OUT and POST_ROUTING, where ipv4_confirm confirms its conntrack entry (SYN_SENT,
        2 min from this first SYN), and only then meets the neighbour layer (ip_output.c ip_finish_output2 ->
        neigh_output, neighbour.c __neigh_event_send, 6.1): no entry (or a FAILED one) starts a resolution and
        the SYN waits on it (queued); a live entry (REACHABLE, STALE, DELAY, PROBE) sends it to the dead pod's
        MAC, where nobody answers (lost, no ICMP), and a STALE one starts DELAY. The client's socket stays
        SYN_SENT and retransmits after its RTO; each retransmission passes IPVS again. Measured on UML 6.1.176:
        scenarios/conformance/B01-B08, B10."""
        flow = st.flows[f]
        ct_live = self._ct_after(flow, cp)  # no NFCT (vs/conntrack=0): ip_vs_notrack(), nothing to confirm
        if ct_live and not cp.owns_ct:  # as for a connection: the entry that forwarded the SYN now owns it
            entries = list(disown(tuple(entries)))
        entries[0] = Entry(state, cp.dest, cp.nfct, ct_live != 0, self._timeout[state], cp.control)
        # a confirmed SYN_SENT entry's timeout runs from its first SYN (nf_conntrack_proto_tcp.c, 6.1: "do not
        # renew timeout on SYN retransmit" while unreplied); a live entry of another kind keeps its own
        ct_timer = flow.ct_timer if flow.ct_live else (self.timing.ct_syn_sent if ct_live else -1)
        c = flow.client
        pod = st.pods[cp.dest]
        neigh = pod.neigh
        # the socket fails when the first resolution its SYNs wait on fails (the model keeps one pod per socket)
        waits = c.pod if c.sock == Sock.SYN_SENT and c.pod >= 0 else -1
        if neigh == Neigh.NONE or neigh == Neigh.INCOMPLETE:
            waits = waits if waits >= 0 else cp.dest
        client = Client(Sock.SYN_SENT, waits, self.timing.syn_rto << tries, tries, plan)
        st = self._set_flow(st, f, Flow(tuple(entries), ct_live, client, ct_timer))
        if neigh == Neigh.NONE:
            st = self._set_pod(st, cp.dest, Pod(pod.phase, self.timing.neigh_resolve, pod.listed, Neigh.INCOMPLETE))
        elif neigh == Neigh.STALE:
            st = self._set_pod(st, cp.dest, Pod(pod.phase, self.timing.neigh_probe, pod.listed, Neigh.PROBING))
        if neigh == Neigh.NONE or neigh == Neigh.INCOMPLETE:
            ev.append((Ev.SYN_QUEUED, f, cp.dest, 0))
        else:
            ev.append((Ev.SYN_LOST, f, cp.dest, int(st.pods[cp.dest].neigh)))
        return st

    def _syn_challenged(self, st: State, f: int, entries: list[Entry], cp: Entry, tries: int, plan: Plan,
                        ev: list[Event]) -> State:
        """A SYN that reached a pod still holding the port's old connection (the client crashed): the pod's
        socket answers with a challenge ACK (tcp_input.c tcp_validate_incoming, RFC 5961 4.2); the client's
        SYN_SENT socket answers that ACK with a RST (tcp_rcv_synsent_state_process: reset_and_undo), whose
        sequence number resets the old connection (tcp_reset), and, its SYN not yet retransmitted, re-arms the
        retransmission to TCP_TIMEOUT_MIN ("Previous FIN/ACK or RST/ACK might be ignored"): the SYN goes again
        at once (tcp_input.c, 6.1; UML 6.1.176: connected within 0.6 s, scenarios/conformance/R02, R04). IPVS
        sees SYN, ACK (out), RST: the entry goes CLOSE. Conntrack ignores the SYN in ESTABLISHED and the RST
        closes it, so the retransmitted SYN reopens it unconfirmed (nf_conntrack_proto_tcp.c, 6.1)."""
        state = tcp_transition(tcp_transition(tcp_transition(cp.state, Dir.INPUT, Seg.SYN), Dir.OUTPUT, Seg.ACK),
                               Dir.INPUT, Seg.RST)
        entries = list(disown(tuple(entries)))
        entries[0] = Entry(state, cp.dest, cp.nfct, False, self._timeout[state], cp.control)
        ev.append((Ev.CHALLENGED, f, cp.dest, 0))
        client = Client(Sock.SYN_SENT, -1, self.timing.syn_rto << tries, tries, plan)
        st = self._set_flow(st, f, Flow(tuple(entries), False, client))
        return self._send_syn(st, f, tries + 1, plan, ev)  # the quick retransmission, through the CLOSE entry

    def _client_crash(self, st: State, f: int, ev: list[Event]) -> State:
        """The client host loses its established connection without a packet (a crash, a container restart
        that keeps the pod's address): its port is free at once, while IPVS, conntrack and the pod still hold
        the connection (an ESTABLISHED entry, 900 s; the pod's socket)."""
        flow = st.flows[f]
        p = flow.client.pod
        ev.append((Ev.CLIENT_CRASHED, f, p, 0))
        return self._set_flow(st, f, Flow(flow.entries, flow.ct_live, Client(Sock.FREE, p, 0, 0, Plan.HOLD),
                                          flow.ct_timer))

    def _neigh_failed(self, st: State, p: int, ev: list[Event]) -> State:
        """neighbour.c neigh_timer_handler: the probes went unanswered, the entry is FAILED. neigh_invalidate()
        gives every packet queued on the resolution ICMP host unreachable (arp_error_report), which IPVS
        translates back to the VIP. A SYN_SENT socket fails with EHOSTUNREACH (tcp_ipv4.c tcp_v4_err); an
        established or closed one ignores it (its sequence is out of window). After PROBE nothing is queued
        (its packets were sent to the old MAC): no socket waits on it, so nobody is told.
        A SYN sent at the very instant of the failure (its retransmission timer due then too, fired first:
        scenario._DUE_ORDER) reaches the entry once it is FAILED and starts the next resolution: measured on UML
        6.1.176, B02-B08 (the kernel's entry is INCOMPLETE again 2 s later). Its socket is still told, by the
        ICMP of the SYN it had queued before, unless that was its only SYN: then it waits on the next one."""
        pod = st.pods[p]
        again = False
        told = 0
        for f, flow in enumerate(st.flows):
            c = flow.client
            if c.sock == Sock.SYN_SENT and c.pod == p:
                sent_now = not self.untimed and c.timer == self.timing.syn_rto << c.tries  # no time since its SYN
                again = again or sent_now
                if sent_now and c.tries == 0:
                    continue
                ev.append((Ev.NO_ROUTE, f, p, 0))
                st = self._set_flow(st, f, Flow(flow.entries, flow.ct_live, FREE_CLIENT, flow.ct_timer))
                told += 1
        if again:
            st = self._set_pod(st, p, Pod(pod.phase, self.timing.neigh_resolve, pod.listed, Neigh.INCOMPLETE))
        else:
            st = self._set_pod(st, p, Pod(pod.phase, -1, pod.listed))
        ev.append((Ev.NEIGH_FAILED, p, told, 0))
        return st

    def _untimed_neighbours(self, st: State) -> State:
        """The untimed search's reduction of destroyed pods' neighbour entries to what a later step can tell
        apart, so that states differing only there are one (sound where no operator can re-add or re-weight a
        dest: searches, not scenarios, whose SET_WEIGHT and ADD_DEST are their own steps):
        - a pod that no IPVS entry points to, that no SYN waits on, and whose real server cannot be scheduled
          again (its endpoint is gone, so kube-proxy adds it back nowhere and gives it no weight back, and its
          dest is out of the service or at weight 0; a destroyed pod never returns) gets no packet again: its
          entry changes nothing (the kernel's lives on and fails or is freed unseen);
        - a resolution that no SYN waits on (its SYN's socket waits on an earlier one, or was told) is, without
          clocks, a free entry: the next SYN waits on a resolution that fails at some moment in both."""
        pods = st.pods
        for p, pod in enumerate(pods):
            neigh = pod.neigh
            if not neigh:
                continue
            waited = False
            for fl in st.flows:
                if fl.client.sock == Sock.SYN_SENT and fl.client.pod == p:
                    waited = True
                    break
            if waited:
                continue
            if neigh != Neigh.INCOMPLETE:
                d = st.dests[p]
                if pod.listed or (d.status == DestStatus.LINKED and d.weight):
                    continue
                if any(e.dest == p for fl in st.flows for e in fl.entries):
                    continue
            st = self._set_pod(st, p, Pod(pod.phase, -1, pod.listed))
        return st

    def _neigh_stale(self, st: State, p: int, freed: int, ev: list[Event]) -> State:
        """neigh_timer_handler: confirmed + reachable_time has passed, and nothing used the entry in the last
        delay_probe_time (neigh->used moves only on the resolve path, not on neigh_hh_output): NUD_STALE.
        neigh_periodic_work may then free it (unused for gc_staletime 60 s, in a table of gc_thresh1 128 entries
        or more: a busy node). Only a packet tells a STALE entry from a freed one, so the model decides here,
        for the next packet, which of the two it meets (`freed`), as if the gc could run at any moment: more
        than the kernel allows, never less. A freed entry is also what a pod leaves that the node never
        resolved (no traffic, no kubelet probe): LIVE then freed at once."""
        pod = st.pods[p]
        ev.append((Ev.NEIGH_STALE, p, freed, 0))
        return self._set_pod(st, p, Pod(pod.phase, -1, pod.listed, Neigh.NONE if freed else Neigh.STALE))

    def _ct_expire(self, st: State, f: int, ev: list[Event]) -> State:
        """nf_conntrack: the flow's confirmed SYN_SENT entry times out; the next SYN gets a new, unconfirmed one."""
        flow = st.flows[f]
        ev.append((Ev.CT_EXPIRED, f, 0, 0))
        return self._set_flow(st, f, Flow(disown(flow.entries), False, flow.client, -1))

    def _syn_dropped(
        self, st: State, f: int, entries: list[Entry], flow: Flow, tries: int, plan: Plan
    ) -> State:
        # the SYN's unconfirmed conntrack dies with it; the client retransmits after its RTO (1, 2, 4 .. s); an
        # earlier SYN may still wait on a bridge neighbour's resolution (the socket fails when it fails)
        c = flow.client
        queued = c.pod if c.sock == Sock.SYN_SENT else -1
        client = Client(Sock.SYN_SENT, queued, self.timing.syn_rto << tries, tries, plan)
        return self._set_flow(st, f, Flow(tuple(entries), flow.ct_live, client, flow.ct_timer))

    def _send_datagram(self, st: State, f: int, ev: list[Event]) -> State:
        flow = st.flows[f]
        entries = list(flow.entries)
        skb_ct = self._skb_ct(flow)  # a UDP conntrack entry is confirmed once a datagram has passed
        cp: Entry | None = entries[0] if entries else None  # ip_vs_conn_in_get: the newest entry wins
        reused = cp is not None
        # is_new_conn() is false for UDP: no port-reuse block, a weight-0 dest keeps its flows (T10)
        if cp is not None and st.dests[cp.dest].status == DestStatus.TRASH:
            # the server-status block (the same decision as for TCP: ip_vs_in / 5.9+ ip_vs_in_hook)
            entries[0], sv = self._server_status(cp, skb_ct)
            cp = entries[0]
            if sv.drop:
                # __ip_vs_conn_put: dropped without re-arming the timer; the application must retry
                ev.append((Ev.DGRAM_DROPPED, f, DropWhy.NODEST, 0))
                return self._set_flow(st, f, Flow(tuple(entries), flow.ct_live, flow.client, flow.ct_timer))
            ev.append((Ev.RESCHEDULED, f, cp.dest, 0))
            cp = None
            reused = False
        if cp is None:
            # udp_conn_schedule(): any datagram without an entry is scheduled (no SYN test)
            st, dest, control = self._schedule(st, f, ev)
            if dest < 0:
                ev.append((Ev.REFUSED, f, 0, 0))  # ip_vs_leave(): ICMP port unreachable
                return self._set_flow(st, f, Flow(tuple(entries), flow.ct_live, flow.client, flow.ct_timer))
            # ip_vs_conn_new(): NFCT iff sysctl conntrack; UDP entries stay INACTIVE (udp_state_transition)
            cp = Entry(TcpState.NORMAL, dest, self.s.conntrack, False, 0, control)
            entries.insert(0, cp)
        pod = st.pods[cp.dest]
        ev.append((Ev.DGRAM_FORWARDED, f, cp.dest, self._forward_flags(st, cp.dest, reused)))
        # udp_state_transition() sets the 300 s timeout; ip_vs_conn_put() re-arms it whatever xmit does
        timer = self._timeout[TcpState.NORMAL]
        if pod.phase == PodPhase.DESTROYED and not self.bridge:
            # no route to the pod's IP: ICMP host unreachable; the datagram's new conntrack entry is never confirmed
            entries[0] = Entry(cp.state, cp.dest, cp.nfct, cp.owns_ct, timer, cp.control)
            ev.append((Ev.NO_ROUTE, f, cp.dest, 0))
            return self._set_flow(st, f, Flow(tuple(entries), flow.ct_live, flow.client, flow.ct_timer))
        # the conntrack entry is now confirmed: by the reply (handle_response refreshes the same entry), or on a
        # bridge at POST_ROUTING before the datagram is lost on the failing neighbour (its ICMP comes 3 s later;
        # a UDP client has no state that waits for it)
        ct_live = self._ct_after(flow, cp)
        owns = cp.owns_ct if flow.ct_live else ct_live != 0
        if owns and not cp.owns_ct:
            entries = list(disown(tuple(entries)))
        entries[0] = Entry(cp.state, cp.dest, cp.nfct, owns, timer, cp.control)
        ev.append((Ev.NO_ROUTE if pod.phase == PodPhase.DESTROYED else Ev.ANSWERED, f, cp.dest, 0))
        return self._set_flow(st, f, Flow(tuple(entries), ct_live, flow.client))

    def _client_timer(self, st: State, f: int, ev: list[Event]) -> State:
        flow = st.flows[f]
        c = flow.client
        if c.sock == Sock.TIME_WAIT:
            ev.append((Ev.TIME_WAIT_OVER, f, 0, 0))
            return self._set_flow(st, f, flow._replace(client=FREE_CLIENT))
        if c.sock == Sock.ORPHAN:  # tcp_write_timeout: retransmits_timed_out -> tcp_write_err, no packet sent
            return self._orphan_gone(st, f, False, ev)
        if c.tries >= self.timing.syn_retries:
            ev.append((Ev.TIMED_OUT, f, 0, 0))  # tcp_syn_retries exhausted: connect() fails ETIMEDOUT
            return self._set_flow(st, f, flow._replace(client=FREE_CLIENT))
        return self._send_syn(st, f, c.tries + 1, c.plan, ev)

    _CLOSE_SEQ = {
        Plan.CLIENT_CLOSES: ((Dir.INPUT, Seg.FIN), (Dir.OUTPUT, Seg.ACK), (Dir.OUTPUT, Seg.FIN), (Dir.INPUT, Seg.ACK)),
        Plan.SERVER_CLOSES: ((Dir.OUTPUT, Seg.FIN), (Dir.INPUT, Seg.ACK), (Dir.INPUT, Seg.FIN), (Dir.OUTPUT, Seg.ACK)),
        # the client's RST alone: the pod's stack drops its socket without an answer (tcp_reset)
        Plan.CLIENT_RESETS: ((Dir.INPUT, Seg.RST),),
    }

    @staticmethod
    def _newest(st: State, flow: Flow) -> Newest:
        """What a packet of the flow reads beyond it: its newest entry's dest status and that pod's phase."""
        if not flow.entries:
            return None
        d = flow.entries[0].dest
        return st.dests[d].status, st.pods[d].phase

    def _packets(self, flow: Flow, f: int, seq: tuple[tuple[Dir, Seg], ...], newest: Newest
                 ) -> tuple[Flow, int, tuple[Event, ...]]:
        """The packets `seq` of flow `f` in turn, until one breaks the connection: (flow, -1 or BrokenWhy, events).
        A pure function of its arguments (memoised: _packets_memo); `newest` is _newest(state, flow), which no
        packet changes (they change entries' states and timers, never their order or dests)."""
        ev: list[Event] = []
        broken = -1
        for direction, seg in seq:
            flow, broken = self._packet(newest, flow, f, direction, seg, ev)
            if broken >= 0:
                break
        return flow, broken, tuple(ev)

    def _packet(self, newest: Newest, flow: Flow, f: int, direction: Dir, seg: Seg, ev: list[Event]
                ) -> tuple[Flow, int]:
        """One packet of flow `f` through IPVS; returns (flow, -1), or (flow, BrokenWhy) if the connection broke.

        Works on the flow alone (a packet changes nothing else), so a close's four packets build one new flow.
        """
        entries = flow.entries
        pod_of_conn = flow.client.pod
        if direction == Dir.OUTPUT:
            # handle_response: the reply is matched by its real-server address (ip_vs_conn_out_get)
            idx = next((i for i, e in enumerate(entries) if e.dest == pod_of_conn), -1)
            if idx < 0:
                return flow, BrokenWhy.RESET  # not NATed back: the client answers RST
        else:
            if not entries:
                # tcp_conn_schedule(): not a SYN, no entry -> ACCEPT to the node's stack, which answers RST
                return flow, BrokenWhy.RESET
            idx = 0
            cp = entries[0]
            assert newest is not None
            if newest[0] == DestStatus.TRASH:
                cp, sv = self._server_status(cp, self._skb_ct(flow))
                # dropped (pre-5.9, or confirmed conntrack) or rescheduled as a non-SYN -> RST
                return (Flow((cp,) + entries[1:], flow.ct_live, flow.client, flow.ct_timer),
                        BrokenWhy.DEST_DELETED if sv.drop else BrokenWhy.RESET)
        cp = entries[idx]
        state = tcp_transition(cp.state, direction, seg)
        ct_live = self._ct_after(flow, cp)
        owns = cp.owns_ct if flow.ct_live else ct_live != 0
        cp = Entry(state, cp.dest, cp.nfct, owns, self._timeout[state], cp.control)
        flow = Flow(entries[:idx] + (cp,) + entries[idx + 1:], ct_live, flow.client,
                    flow.ct_timer if flow.ct_live else -1)
        if direction == Dir.INPUT:
            ev.append((Ev.PKT_FORWARDED, f, cp.dest, pod_of_conn))
            assert newest is not None  # an INPUT packet goes through the newest entry: cp has its dest
            if newest[1] == PodPhase.DESTROYED:
                return flow, BrokenWhy.POD_GONE
        return flow, -1

    _DATA_SEQ = ((Dir.INPUT, Seg.ACK), (Dir.OUTPUT, Seg.ACK))  # a request and its answer

    def _send_data(self, st: State, f: int, ev: list[Event]) -> State:
        flow = st.flows[f]
        flow, broken, events = self._packets_memo(flow, f, self._DATA_SEQ, self._newest(st, flow))
        ev += events
        st = self._set_flow(st, f, flow)
        return self._broken(st, f, broken, ev) if broken >= 0 else st

    def _close(self, st: State, f: int, plan: Plan, ev: list[Event]) -> State:
        flow = st.flows[f]
        flow, broken, events = self._packets_memo(flow, f, self._CLOSE_SEQ[plan], self._newest(st, flow))
        ev += events
        if plan == Plan.CLIENT_CLOSES and broken in (BrokenWhy.POD_GONE, BrokenWhy.DEST_DELETED):
            return self._orphaned(st, f, flow, broken, ev)
        # a RST expects no answer: toward a destroyed pod the client's close is as complete as toward a live one
        # (C28 on the real kernel)
        if broken >= 0 and not (plan == Plan.CLIENT_RESETS and broken == BrokenWhy.POD_GONE):
            return self._broken(self._set_flow(st, f, flow), f, broken, ev)
        ev.append((Ev.CLOSED, f, plan, 0))
        # the conntrack entry is now TIME_WAIT with CLOSE_INIT, or CLOSE after the client's RST: a new SYN of the
        # tuple reopens either (nf_conntrack_proto_tcp.c nf_conntrack_tcp_packet, SYN_SENT from TIME_WAIT or
        # later: CLOSE_INIT seen, or the last packet a RST in the SYN's direction -> nf_ct_kill, NF_REPEAT)
        entries = disown(flow.entries)
        if plan == Plan.CLIENT_CLOSES:
            client = Client(Sock.TIME_WAIT, -1, self.timing.client_time_wait, 0, Plan.HOLD)
        else:
            client = FREE_CLIENT
        return self._set_flow(st, f, Flow(entries, False, client))

    def _orphaned(self, st: State, f: int, flow: Flow, why: int, ev: list[Event]) -> State:
        """The client's FIN got no answer (no route to the destroyed pod, or dropped by the server-status block):
        close() has returned, and the orphaned FIN_WAIT1 socket retransmits the FIN and holds the port for orphan_life
        (tcp_timer.c tcp_write_timeout, tcp_orphan_retries; UML 6.1: scenarios/conformance/C30, C31). Toward the
        destroyed pod each FIN passes the entry and re-arms it; a dropped FIN re-arms nothing (__ip_vs_conn_put).
        Its conntrack entry (FIN_WAIT: a SYN does not reopen it) lives as long as the entry."""
        life = self.timing.orphan_life
        if why == BrokenWhy.POD_GONE:  # the FIN has passed the newest entry (_packet): its retransmissions re-arm it
            e = flow.entries[0]
            flow = flow._replace(entries=(with_timer(e, e.timer + life),) + flow.entries[1:])
        pod = flow.client.pod
        ev.append((Ev.ORPHANED, f, why, pod))
        st = self._set_flow(st, f, Flow(flow.entries, flow.ct_live, Client(Sock.ORPHAN, pod, life, 0, Plan.HOLD),
                                        flow.ct_timer))
        return st

    def _broken(self, st: State, f: int, why: int, ev: list[Event]) -> State:
        flow = st.flows[f]
        ev.append((Ev.BROKEN, f, why, flow.client.pod))
        # the client gives up on the connection; its conntrack entry is treated as expired by then
        return self._set_flow(st, f, Flow(disown(flow.entries), False, FREE_CLIENT))

    def _expire(self, st: State, f: int, i: int, ev: list[Event], orphan: bool = True) -> State:
        # ip_vs_conn.c ip_vs_conn_expire(): unhash; NFCT -> ip_vs_conn_drop_conntrack (by original tuple,
        # i.e. whatever conntrack entry now has this tuple); unbind the dest (its counters)
        flow = st.flows[f]
        e = flow.entries[i]
        entries = flow.entries[:i] + flow.entries[i + 1:]
        ct_live = flow.ct_live
        ev.append((Ev.ENTRY_EXPIRED, f, e.dest, 0))
        ct_timer = flow.ct_timer
        if e.nfct and ct_live:
            # by tuple: whatever conntrack entry has it now; it belonged to a newer connection if another entry
            # of the flow made it (a connection, or a SYN confirmed on its way to a pod), else to no one alive
            newer = False
            for x in entries:
                if x.owns_ct:
                    newer = True
            ev.append((Ev.CT_KILLED, f, int(newer), 0))
            ct_live, ct_timer = False, -1
            entries = disown(entries)
        st = self._set_flow(st, f, Flow(entries, ct_live, flow.client, ct_timer))
        if orphan and i == 0 and flow.client.sock == Sock.ORPHAN:
            st = self._orphan_fin(st, f, ev)  # the orphan's next FIN meets what is left
        return st

    def _flush(self, st: State, ev: list[Event]) -> State:
        # ip_vs_conn.c ip_vs_expire_nodest_conn_flush(): delete every entry whose dest is not AVAILABLE
        st = st._replace(flush_pending=False)
        removed = 0
        for f in range(len(st.flows)):
            i = 0
            head = st.flows[f].entries[:1]
            while i < len(st.flows[f].entries):
                if st.dests[st.flows[f].entries[i].dest].status == DestStatus.TRASH:
                    st = self._expire(st, f, i, ev, orphan=False)
                    removed += 1
                else:
                    i += 1
            if head and st.flows[f].client.sock == Sock.ORPHAN and st.flows[f].entries[:1] != head:
                st = self._orphan_fin(st, f, ev)
        for c, tpl in enumerate(st.templates):
            if tpl is not None and st.dests[tpl.dest].status == DestStatus.TRASH:
                st = self._drop_template(st, c)  # "del controlling connection" once it controls none
        ev.append((Ev.FLUSHED, removed, 0, 0))
        return st
