"""A trace as a sequence diagram: one lifeline per actor (clients, IPVS, conntrack, kube-proxy, pods).

`build_sequence` turns the replay's events (ipvs_verify.presentation.trace.Replay, not those a file says) into
lifelines and an ordered list of arrows and notes, each tagged with its step; two renderers consume it:
`mermaid` (text that GitHub, GitLab and most Markdown viewers draw, and that still reads top to bottom) and
ipvs_verify.presentation.svg_diagram (a drawing of our own, for the HTML page and `show --svg`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ipvs_verify.model.events import DropWhy, Ev
from ipvs_verify.model.system import replay_system
from ipvs_verify.model.tcp_states import SHORT, TcpState
from ipvs_verify.presentation.trace import Replay, forward_notes

# request: a packet or a call; reply: an answer (dashed); lost: an error or a drop back to the client (dashed, x)
ArrowKind = Literal["request", "reply", "lost"]
# a note's role: plain, the clock (a wait), where a liveness cycle starts, where it closes
NoteKind = Literal["note", "time", "loop-start", "loop-end"]


@dataclass(frozen=True)
class Lifeline:
    id: str  # a name Mermaid accepts (no ':' or '-')
    label: str


@dataclass(frozen=True)
class Arrow:
    step: int
    src: str  # lifeline ids
    dst: str
    label: str
    kind: ArrowKind = "request"


@dataclass(frozen=True)
class Note:
    step: int  # the step it belongs to; for the loop's end, the last step
    over: tuple[str, ...]  # one lifeline id, or the first and last of a span
    text: str
    kind: NoteKind = "note"


@dataclass(frozen=True)
class StepHead:
    step: int
    time: int
    actor: str
    action: str  # the action and its parameters, as the story writes them
    outcome: str


@dataclass
class Sequence:
    lifelines: list[Lifeline]
    steps: list[StepHead]
    items: list[Arrow | Note] = field(default_factory=list)


def _lane(name: str) -> str:
    return name.replace(":", "_").replace("-", "_")


def build_sequence(replay: Replay) -> Sequence:
    trace = replay.trace
    sys = replay_system(replay.config, "exact")
    clients = [f"client-{c + 1}" for c in range(sys.scope.clients)]
    pods = [sys.pod_name(p) for p in range(sys.n_pods)]
    lanes = clients + ["IPVS", "conntrack", "kube-proxy"] + pods
    everyone = (_lane(lanes[0]), _lane(lanes[-1]))
    heads = [StepHead(s.step, s.time, s.actor, " ".join([s.action, *(f"{k}={v}" for k, v in s.params.given().items())]),
                      s.outcome) for s in trace.steps]
    seq = Sequence([Lifeline(_lane(x), x) for x in lanes], heads)
    loop = trace.loop_start
    n = 0

    def client_of(flow: int) -> str:
        return _lane(clients[flow // sys.scope.ports])

    def arrow(src: str, dst: str, text: str, kind: ArrowKind = "request") -> None:
        seq.items.append(Arrow(n, src, dst, text, kind))

    def note(over: tuple[str, ...], text: str, kind: NoteKind = "note") -> None:
        seq.items.append(Note(n, over, text, kind))

    for step, events in zip(trace.steps, replay.events, strict=True):
        n = step.step
        if loop is not None and n == loop + 1:
            note(everyone, "the cycle starts here and repeats forever", "loop-start")
        actor = step.actor
        if step.action == "wait":
            note(everyone, f"t={step.time} s", "time")
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
                      + "): retransmit", "lost")
            elif ev == Ev.NO_ROUTE:
                arrow("IPVS", client_of(x), "ICMP host unreachable: no route to host", "lost")
            elif ev == Ev.REFUSED:
                arrow("IPVS", client_of(x), "ICMP port unreachable: connection refused", "lost")
            elif ev == Ev.CONNECTED:
                arrow(_lane(sys.pod_name(a)), client_of(x), "SYN-ACK: connected", "reply")
            elif ev == Ev.CLOSED:
                note((client_of(x),), f"closed ({'client' if a == 1 else 'server'} first)")
            elif ev == Ev.BROKEN:
                arrow("IPVS", client_of(x), "connection broken", "lost")
            elif ev == Ev.DGRAM_FORWARDED:
                arrow(client_of(x), "IPVS", "datagram")
                arrow("IPVS", _lane(sys.pod_name(a)), "datagram" + forward_notes(b, "existing entry"))
            elif ev == Ev.ANSWERED:
                arrow(_lane(sys.pod_name(a)), client_of(x), "answer", "reply")
            elif ev == Ev.DGRAM_DROPPED:
                arrow(client_of(x), "IPVS", "datagram")
                arrow("IPVS", client_of(x), "datagram dropped (dest deleted)", "lost")
            elif ev == Ev.CT_KILLED:
                arrow("IPVS", "conntrack", "entry expiry kills the conntrack entry"
                      + (" of a newer connection" if a else ""))
            elif ev == Ev.ENTRY_EXPIRED:
                note(("IPVS",), f"entry {sys.flow_name(x)} -> {sys.pod_name(a)} expires")
            elif ev == Ev.RS_READ:  # kube-proxy's read/delete window: the packets of this step pass in it
                arrow("kube_proxy", "IPVS", f"GetRealServers: {sys.pod_name(x)} has {b} connection(s), delete it")
                note(("kube_proxy",), "before its DeleteRealServer:")
            elif ev in (Ev.DEST_QUIESCED, Ev.DEST_DELETED, Ev.DEST_ADDED):
                what = {Ev.DEST_QUIESCED: "weight 0", Ev.DEST_DELETED: "delete real server",
                        Ev.DEST_ADDED: "add real server"}[ev]
                if actor == "kube-proxy":
                    arrow("kube_proxy", "IPVS", f"{what} {sys.pod_name(x)}")
                else:
                    note(("IPVS",), f"{what} {sys.pod_name(x)} ({actor})")
            elif ev in (Ev.POD_DELETED, Ev.POD_DESTROYED, Ev.POD_ADDED, Ev.POD_CRASHED, Ev.ENDPOINT_GONE):
                what = {Ev.POD_DELETED: "terminating, endpoint removed", Ev.POD_DESTROYED: "destroyed (IP gone)",
                        Ev.POD_ADDED: "created", Ev.POD_CRASHED: "crashed", Ev.ENDPOINT_GONE: "endpoint removed"}[ev]
                note((_lane(sys.pod_name(x)),), what)
            elif ev in (Ev.TEMPLATE_CREATED, Ev.TEMPLATE_INVALIDATED):
                note(("IPVS",), f"template client-{x + 1} -> {sys.pod_name(a)} "
                     + ("created" if ev == Ev.TEMPLATE_CREATED else "invalidated"))
    if loop is not None:
        note(everyone, f"back to the state after step {loop}", "loop-end")
    return seq


MERMAID_ARROW = {"request": "->>", "reply": "-->>", "lost": "--x"}


def mermaid(seq: Sequence) -> str:
    out = ["sequenceDiagram"] + [f"    participant {x.id} as {x.label}" for x in seq.lifelines]
    for item in seq.items:
        if isinstance(item, Arrow):
            out.append(f"    {item.src}{MERMAID_ARROW[item.kind]}{item.dst}: {item.label}")
        else:
            out.append(f"    Note over {','.join(item.over)}: {item.text}")
    return "\n".join(out) + "\n"


def sequence_diagram(replay: Replay) -> str:
    """The Mermaid sequence diagram of a replay."""
    return mermaid(build_sequence(replay))
