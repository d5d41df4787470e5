"""A trace as a Mermaid sequence diagram: one lane per actor (clients, IPVS, conntrack, kube-proxy, pods).

Mermaid renders in GitHub, GitLab and most Markdown viewers; the text alone still reads top to bottom.
Each step becomes the messages its events stand for (a SYN forwarded, an ICMP error, a weight set ...):
the events of the replay (ipvs_verify.presentation.trace.Replay), not those a file says.
"""

from __future__ import annotations

from ipvs_verify.model.events import DropWhy, Ev
from ipvs_verify.model.system import System
from ipvs_verify.model.tcp_states import SHORT, TcpState
from ipvs_verify.presentation.trace import Replay, forward_notes


def _lane(name: str) -> str:
    return name.replace(":", "_").replace("-", "_")


def sequence_diagram(replay: Replay) -> str:
    trace = replay.trace
    sys = System(replay.config, "exact")
    clients = [f"client-{c + 1}" for c in range(sys.scope.clients)]
    pods = [sys.pod_name(p) for p in range(sys.n_pods)]
    lanes = clients + ["IPVS", "conntrack", "kube-proxy"] + pods
    out = ["sequenceDiagram"] + [f"    participant {_lane(x)} as {x}" for x in lanes]
    loop = trace.loop_start

    def client_of(flow: int) -> str:
        return _lane(clients[flow // sys.scope.ports])

    def arrow(src: str, dst: str, text: str, kind: str = "->>") -> None:
        out.append(f"    {src}{kind}{dst}: {text}")

    for step, events in zip(trace.steps, replay.events, strict=True):
        if loop is not None and step.step == loop + 1:
            out.append(f"    Note over {_lane(lanes[0])},{_lane(lanes[-1])}: the cycle starts here and repeats forever")
        actor = step.actor
        if step.action == "wait":
            out.append(f"    Note over {_lane(lanes[0])},{_lane(lanes[-1])}: t={step.time} s")
            continue
        if step.action in ("request", "connect", "client-timer") and not any(
                e[0] in (Ev.REUSE_HIT, Ev.TIME_WAIT_OVER, Ev.TIMED_OUT) for e in events):
            flow = step.params.flow or ""
            again = " (retransmission)" if step.action == "client-timer" else ""
            arrow(_lane(flow.split(":")[0]), "IPVS", f"SYN from {flow.split(':')[1]}{again}")
        for kind, x, a, b in events:
            ev = Ev(kind)
            if ev == Ev.REUSE_HIT:
                arrow(client_of(x), "IPVS", f"SYN from {sys.flow_name(x).split(':')[1]} (entry {SHORT[TcpState(a)]}"
                      f" -> {sys.pod_name(b)})")
            elif ev == Ev.SYN_FORWARDED:
                arrow("IPVS", _lane(sys.pod_name(a)), "SYN" + forward_notes(b))
            elif ev == Ev.SYN_DROPPED:
                arrow("IPVS", client_of(x), "SYN dropped (" + ("port reuse" if a == DropWhy.REUSE else "dest deleted")
                      + "): retransmit", "--x")
            elif ev == Ev.NO_ROUTE:
                arrow("IPVS", client_of(x), "ICMP host unreachable: no route to host", "--x")
            elif ev == Ev.REFUSED:
                arrow("IPVS", client_of(x), "ICMP port unreachable: connection refused", "--x")
            elif ev == Ev.CONNECTED:
                arrow(_lane(sys.pod_name(a)), client_of(x), "SYN-ACK: connected", "-->>")
            elif ev == Ev.CLOSED:
                out.append(f"    Note over {client_of(x)}: closed ({'client' if a == 1 else 'server'} first)")
            elif ev == Ev.BROKEN:
                arrow("IPVS", client_of(x), "connection broken", "--x")
            elif ev == Ev.DGRAM_FORWARDED:
                arrow(client_of(x), "IPVS", "datagram")
                arrow("IPVS", _lane(sys.pod_name(a)), "datagram" + forward_notes(b, "existing entry"))
            elif ev == Ev.ANSWERED:
                arrow(_lane(sys.pod_name(a)), client_of(x), "answer", "-->>")
            elif ev == Ev.DGRAM_DROPPED:
                arrow(client_of(x), "IPVS", "datagram")
                arrow("IPVS", client_of(x), "datagram dropped (dest deleted)", "--x")
            elif ev == Ev.CT_KILLED:
                arrow("IPVS", "conntrack", "entry expiry kills the conntrack entry"
                      + (" of a newer connection" if a else ""))
            elif ev == Ev.ENTRY_EXPIRED:
                out.append(f"    Note over IPVS: entry {sys.flow_name(x)} -> {sys.pod_name(a)} expires")
            elif ev in (Ev.DEST_QUIESCED, Ev.DEST_DELETED, Ev.DEST_ADDED):
                what = {Ev.DEST_QUIESCED: "weight 0", Ev.DEST_DELETED: "delete real server",
                        Ev.DEST_ADDED: "add real server"}[ev]
                src = "kube_proxy" if actor == "kube-proxy" else "IPVS"
                arrow(src, "IPVS", f"{what} {sys.pod_name(x)}") if src != "IPVS" else out.append(
                    f"    Note over IPVS: {what} {sys.pod_name(x)} ({actor})")
            elif ev in (Ev.POD_DELETED, Ev.POD_DESTROYED, Ev.POD_ADDED, Ev.POD_CRASHED, Ev.ENDPOINT_GONE):
                what = {Ev.POD_DELETED: "terminating, endpoint removed", Ev.POD_DESTROYED: "destroyed (IP gone)",
                        Ev.POD_ADDED: "created", Ev.POD_CRASHED: "crashed", Ev.ENDPOINT_GONE: "endpoint removed"}[ev]
                out.append(f"    Note over {_lane(sys.pod_name(x))}: {what}")
            elif ev in (Ev.TEMPLATE_CREATED, Ev.TEMPLATE_INVALIDATED):
                out.append(f"    Note over IPVS: template client-{x + 1} -> {sys.pod_name(a)} "
                           + ("created" if ev == Ev.TEMPLATE_CREATED else "invalidated"))
    if loop is not None:
        out.append(f"    Note over {_lane(lanes[0])},{_lane(lanes[-1])}: back to the state after step {loop}")
    return "\n".join(out) + "\n"
