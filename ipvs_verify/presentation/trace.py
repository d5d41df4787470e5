"""The counterexample trace (format version 2, ipvs_verify.presentation.trace_model): building, loading, replaying.

A trace holds the configuration, the initial state, then steps: time, actor, action, parameters,
outcome, events (by name), and the state after the step. Replaying rebuilds every state from the
configuration in the exact-time semantics, compares each step with the file (a step whose replayed
state, outcome or events differ is named; so is one that no longer applies) and re-checks the violation.
What `show` renders is the replay's own trace, never the file's text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ipvs_verify.errors import UserError
from ipvs_verify.model.config import Config, Scope, Timing, make_config
from ipvs_verify.model.events import (
    SF_DEST_DELETED,
    SF_DEST_W0,
    SF_POD_DEAD,
    SF_RETRANSMIT,
    SF_REUSED,
    BrokenWhy,
    DropWhy,
    Ev,
    Event,
)
from ipvs_verify.model.patch import ModelPatch
from ipvs_verify.model.state import DestStatus, Neigh, Plan, PodPhase, Sock, State, counters
from ipvs_verify.model.sysctls import SYSCTL_RANGES
from ipvs_verify.model.system import ACTION_NAMES, ACTORS, Act, Action, System, replay_system
from ipvs_verify.model.tcp_states import SHORT, TcpState
from ipvs_verify.presentation.trace_model import (
    CLOSER_NAMES,
    EVENT_MODELS,
    FLAG_NAMES,
    FORMAT,
    LATER_SCOPE_FIELDS,
    LATER_TIMING_FIELDS,
    VERSION,
    ConfigModel,
    EventRecord,
    HypothesisInfo,
    Params,
    StateView,
    Step,
    TraceFile,
    event_fields,
    later_defaults,
)
from ipvs_verify.properties.catalog import BY_NAME, Property

__all__ = ["FORMAT", "VERSION", "TraceFile", "Replay", "TraceError", "build_trace", "load_trace", "parse_trace",
           "replay_trace", "config_from_json", "config_to_json", "action_from_json", "action_to_json", "outcome",
           "state_view", "event_to_json", "flatten_view"]

ACTION_BY_NAME = {v: k for k, v in ACTION_NAMES.items()}
CLOSERS = {Plan.CLIENT_CLOSES: "client", Plan.SERVER_CLOSES: "server", Plan.HOLD: "none", Plan.CLIENT_RESETS: "reset"}
CLOSER_BY_NAME = {v: k for k, v in CLOSERS.items()}


# ---------------------------------------------------------------------- configuration
def config_to_json(cfg: Config) -> dict[str, Any]:
    sc = asdict(cfg.scope)
    sc["pods"] = list(cfg.scope.pods)
    sc["spare_pods"] = list(cfg.scope.spare_pods)
    tm = asdict(cfg.timing)
    tm["ipvs_timeouts"] = {SHORT[TcpState(k)]: v for k, v in cfg.timing.ipvs_timeouts}
    # a setting added after format version 2 is written only when it is not its default (trace_model)
    for d, later in ((sc, later_defaults(LATER_SCOPE_FIELDS)), (tm, later_defaults(LATER_TIMING_FIELDS))):
        for name, default in later.items():
            if d.get(name) == default:
                del d[name]
    patches = [{"id": p.id, "file": p.origin, "sha256": p.digest} for p in cfg.patches]
    return {
        "variant": cfg.base_variant,
        "kernel": cfg.kernel,
        "kube_proxy": cfg.kube_proxy.text,
        "sysctl_overrides": dict(cfg.overrides),
        "sysctls": cfg.sysctls.as_dict(),
        "nf_conntrack": cfg.nf_conntrack,
        "scheduler": cfg.scheduler,
        "scope": sc,
        "timing": tm,
    } | ({"pod_network": cfg.pod_network} if cfg.pod_network != "routed" else {}) | (  # later than version 2
        {"patches": patches} if patches else {}) | ({"kube_proxy_last": True} if cfg.kube_proxy_last else {}) | (
        {"invalid_drop": True} if cfg.invalid_drop else {})


def config_model(cfg: Config) -> ConfigModel:
    return ConfigModel.model_validate(config_to_json(cfg))


def config_from_json(config: ConfigModel | Mapping[str, Any]) -> Config:
    """The configuration a trace records (its model, or the same as JSON: a reproducer's CONFIG)."""
    d = config.model_dump() if isinstance(config, ConfigModel) else config
    sc = dict(d.get("scope", {}))
    sc["pods"] = tuple(sc.get("pods", ("a", "b")))
    sc["spare_pods"] = tuple(sc.get("spare_pods", ()))
    tm = dict(d.get("timing", {}))
    if "ipvs_timeouts" in tm:
        by = {v: k for k, v in SHORT.items()}
        tm["ipvs_timeouts"] = tuple(sorted((by[k], int(v)) for k, v in tm["ipvs_timeouts"].items()))
    return make_config(
        d["variant"], d["kube_proxy"], {k: int(v) for k, v in d.get("sysctl_overrides", {}).items()},
        Scope(**sc), Timing(**tm), kernel=d.get("kernel"), nf_conntrack=d.get("nf_conntrack", True),
        scheduler=d.get("scheduler", "rr"), pod_network=d.get("pod_network", "routed"),
        patches=tuple(_patch(p) for p in d.get("patches", ())), kube_proxy_last=d.get("kube_proxy_last", False),
        invalid_drop=d.get("invalid_drop", False),
    )


def _patch(ref: Mapping[str, Any]) -> ModelPatch:
    """A patch a trace names: its file, which must be the very version the trace was found with."""
    from ipvs_verify.patching.files import find_patch

    return find_patch(str(ref["id"]), str(ref["file"]), str(ref["sha256"])).change


# ---------------------------------------------------------------------- actions
def action_to_json(sys: System, a: Action) -> tuple[str, str, dict[str, Any]]:
    """(actor, action name, parameters)."""
    kind, x, y = Act(a[0]), a[1], a[2]
    name = ACTION_NAMES[kind]
    actor = ACTORS[kind]
    params: dict[str, Any] = {}
    if kind in (Act.REQUEST, Act.CONNECT, Act.SEND, Act.CLOSE, Act.CLIENT_TIMER, Act.EXPIRE, Act.DATAGRAM,
                Act.CT_EXPIRE, Act.CLIENT_CRASH):
        params["flow"] = sys.flow_name(x)
        if actor == "client":
            actor = sys.flow_name(x).split(":")[0]
    if kind in (Act.REQUEST, Act.CLOSE):
        params["closer"] = CLOSERS[Plan(y)]
    if kind == Act.TEMPLATE_EXPIRE:
        params["client"] = f"client-{x + 1}"
    if kind == Act.EXPIRE:
        params["entry"] = y
    if kind == Act.WAIT:
        params["seconds"] = x
    if kind in (Act.GRACE_END, Act.DELETE_POD, Act.ADD_POD, Act.CRASH_POD, Act.ENDPOINT_GONE,
                Act.SET_WEIGHT, Act.DELETE_DEST, Act.ADD_DEST, Act.NEIGH_FAILED, Act.NEIGH_STALE):
        params["pod"] = sys.pod_names[x]
    if kind == Act.NEIGH_STALE:
        params["freed"] = bool(y)
    if kind in (Act.GRACE_END, Act.CRASH_POD) and sys.neigh_tracked:
        params["neighbour"] = Neigh(y).name.lower()  # the node's entry for the address it leaves behind
    if kind in (Act.SET_WEIGHT, Act.ADD_DEST):
        params["weight"] = y
    if kind in (Act.SYNC, Act.CHECK) and x:  # a packet between the read of pod x - 1 and its delete
        racer = sys.racers[y]
        params = {"pod": sys.pod_names[x - 1], "packet": ACTION_NAMES[Act(racer[0])]} | action_to_json(sys, racer)[2]
    return actor, name, params


def action_from_json(sys: System, name: str, params: Mapping[str, Any]) -> Action:
    """Raises KeyError/ValueError with a message naming what was expected."""
    if name not in ACTION_BY_NAME:
        raise ValueError(f"unknown action '{name}' (expected one of: {', '.join(ACTION_BY_NAME)})")
    kind = ACTION_BY_NAME[name]
    flows = {sys.flow_name(f): f for f in range(sys.n_flows)}
    pods = {n: i for i, n in enumerate(sys.pod_names)}

    def flow() -> int:
        f = params.get("flow")
        if f not in flows:
            raise ValueError(f"unknown flow {f!r} (expected one of: {', '.join(flows)})")
        return flows[f]

    def pod() -> int:
        p = params.get("pod")
        if p not in pods:
            raise ValueError(f"unknown pod {p!r} (expected one of: {', '.join(pods)})")
        return pods[p]

    if kind == Act.REQUEST or kind == Act.CLOSE:
        closer = params.get("closer", "client")
        if closer not in CLOSER_BY_NAME or closer == "none":
            raise ValueError(f"closer must be 'client', 'server' or 'reset', not {closer!r}")
        return (kind, flow(), CLOSER_BY_NAME[closer])
    if kind in (Act.CONNECT, Act.SEND, Act.CLIENT_TIMER, Act.DATAGRAM, Act.CT_EXPIRE, Act.CLIENT_CRASH):
        return (kind, flow(), 0)
    if kind == Act.EXPIRE:
        return (kind, flow(), int(params.get("entry", 0)))
    if kind == Act.WAIT:
        return (kind, int(params["seconds"]), 0)
    if kind == Act.TEMPLATE_EXPIRE:
        clients = {f"client-{c + 1}": c for c in range(sys.scope.clients)}
        if params.get("client") not in clients:
            raise ValueError(f"unknown client {params.get('client')!r} (expected one of: {', '.join(clients)})")
        return (kind, clients[params["client"]], 0)
    if kind in (Act.SET_WEIGHT, Act.ADD_DEST):
        return (kind, pod(), int(params.get("weight", 1)))
    if kind in (Act.GRACE_END, Act.CRASH_POD):
        p = pod()
        neigh = params.get("neighbour", "none")
        allowed = [n.name.lower() for n in sys.destroy_neigh]
        if neigh not in allowed:
            raise ValueError(f"neighbour must be one of {', '.join(allowed)} here (a bridge pod network's TCP "
                             f"service tracks it), not {neigh!r}")
        return (kind, p, Neigh[neigh.upper()])
    if kind == Act.NEIGH_STALE:
        freed = params.get("freed", False)
        if not isinstance(freed, bool):
            raise ValueError(f"freed must be true or false, not {freed!r}")
        return (kind, pod(), int(freed))
    if kind in (Act.DELETE_POD, Act.ADD_POD, Act.ENDPOINT_GONE, Act.DELETE_DEST, Act.NEIGH_FAILED):
        return (kind, pod(), 0)
    if kind in (Act.SYNC, Act.CHECK) and ("packet" in params or "pod" in params):
        p = pod()
        racer = action_from_json(sys, str(params.get("packet")),
                                 {k: v for k, v in params.items() if k not in ("pod", "packet")})
        if racer not in sys.racers:
            raise ValueError(f"packet {params.get('packet')!r} cannot pass in kube-proxy's read/delete window "
                             f"(expected a new connection, datagram or SYN retransmission, and a scope with "
                             f"kp_window: true)")
        if not sys.kp_window:
            raise ValueError("a packet in kube-proxy's read/delete window needs a scope with kp_window: true")
        return (kind, p + 1, sys.racers.index(racer))
    return (kind, 0, 0)


# ---------------------------------------------------------------------- state view
def state_view(sys: System, st: State, now: int) -> StateView:
    """A readable view; countdowns become absolute times so that waiting changes nothing visible."""

    def at(timer: int) -> int | str:
        return "now" if timer <= 0 else now + timer

    entries = []
    for f, fl in enumerate(st.flows):
        for e in fl.entries:
            entries.append({
                "flow": sys.flow_name(f), "state": SHORT[TcpState(e.state)], "dest": sys.pod_name(e.dest),
                "expires_at": at(e.timer), "nfct": e.nfct,
            } | ({"controlled": True} if e.control else {}))
    dests = {}
    for p, d in enumerate(st.dests):
        if d.status == DestStatus.ABSENT:
            continue
        active, inactive = counters(st, p)
        dests[sys.pod_name(p)] = {
            "status": "deleted" if d.status == DestStatus.TRASH else "in service",
            "weight": d.weight, "active": active, "inactive": inactive,
        }
    clients = {}
    for f, fl in enumerate(st.flows):
        c = fl.client
        if c.sock == Sock.FREE:
            text = "idle" if c.pod < 0 else f"idle (crashed: {sys.pod_name(c.pod)} still holds the old connection)"
        elif c.sock == Sock.ESTABLISHED:
            text = f"connected to {sys.pod_name(c.pod)}"
        elif c.sock == Sock.TIME_WAIT:
            text = f"TIME_WAIT until {at(c.timer)}"
        elif c.sock == Sock.ORPHAN:
            text = f"FIN_WAIT1 orphan (its FIN to {sys.pod_name(c.pod)} unanswered) holds the port until {at(c.timer)}"
        else:
            text = f"SYN_SENT, retransmission {c.tries + 1} at {at(c.timer)}"
            if c.pod >= 0:  # bridge: a SYN of this connect waits on the pod's neighbour resolution
                text += f", waiting on {sys.pod_name(c.pod)}'s neighbour"
        clients[sys.flow_name(f)] = text
    pods = {}
    for p, pod in enumerate(st.pods):
        if pod.phase == PodPhase.ABSENT:
            continue
        phase = {PodPhase.RUNNING: "running", PodPhase.TERMINATING: f"terminating, destroyed at {at(pod.timer)}",
                 PodPhase.DESTROYED: "destroyed"}[PodPhase(pod.phase)]
        if pod.phase == PodPhase.DESTROYED and pod.neigh:
            phase += {Neigh.LIVE: f", the node's neighbour entry still REACHABLE (STALE by {at(pod.timer)})",
                      Neigh.STALE: ", the node's neighbour entry STALE",
                      Neigh.PROBING: f", the node probing its old MAC until {at(pod.timer)}",
                      Neigh.INCOMPLETE: f", its address resolving until {at(pod.timer)}"}[Neigh(pod.neigh)]
        pods[sys.pod_name(p)] = phase + (", endpoint listed" if pod.listed else "")
    view: dict[str, Any] = {
        "ipvs": {
            "entries": entries, "dests": dests,
            "rr_cursor": sys.pod_name(st.cursor) if st.cursor >= 0 else "head",
            "flush_pending": st.flush_pending,
        },
        "conntrack": {sys.flow_name(f): ("none" if not fl.ct_live else "live" if fl.ct_timer < 0 else
                                         f"SYN_SENT, expires at {at(fl.ct_timer)}") for f, fl in enumerate(st.flows)},
        "clients": clients,
        "pods": pods,
        "kube_proxy": {
            "sync_at": at(st.sync_timer) if st.sync_timer >= 0 else None,
            "next_check_at": at(st.check_timer),
            "graceful_deletion_list": [sys.pod_name(p) for p, g in enumerate(st.graceful) if g],
        },
        "changes_left": st.budget,
    }
    if sys.persistent:
        view["ipvs"]["templates"] = {
            f"client-{c + 1}": f"{sys.pod_name(t.dest)}, expires at {at(t.timer)}"
            for c, t in enumerate(st.templates) if t is not None
        }
    return StateView.model_validate(view)


# ---------------------------------------------------------------------- outcome sentences
def forward_notes(flags: int, reused: str = "reused entry") -> str:
    """What a forwarded SYN or datagram met (SF_* flags), as " (a, b)" or nothing."""
    notes = [n for flag, n in ((SF_REUSED, reused), (SF_DEST_W0, "weight 0"), (SF_DEST_DELETED, "deleted dest"),
                               (SF_POD_DEAD, "pod destroyed"), (SF_RETRANSMIT, "retransmission")) if flags & flag]
    return f" ({', '.join(notes)})" if notes else ""


def outcome(sys: System, events: tuple[Event, ...]) -> str:
    parts: list[str] = []
    for kind, x, a, b in events:
        if kind == Ev.REUSE_HIT:
            parts.append(f"SYN finds an entry ({SHORT[TcpState(a)]} -> {sys.pod_name(b)})")
        elif kind == Ev.RESCHEDULED:
            parts.append(f"old entry to {sys.pod_name(a)} let go, SYN rescheduled")
        elif kind == Ev.SYN_DROPPED:
            parts.append("SYN dropped by the " + ("port-reuse block" if a == 0 else "server-status block")
                         + ": client retransmits")
        elif kind == Ev.SYN_FORWARDED:
            parts.append(f"SYN forwarded to {sys.pod_name(a)}{forward_notes(b)}")
        elif kind == Ev.REFUSED:
            parts.append("no usable real server: connection refused")
        elif kind == Ev.CONNECTED:
            parts.append(f"connected to {sys.pod_name(a)}")
        elif kind == Ev.NO_ROUTE:
            parts.append("no route to host")
        elif kind == Ev.TIMED_OUT:
            parts.append("connect() timed out")
        elif kind == Ev.BROKEN:
            why = {BrokenWhy.DEST_DELETED: "packets dropped (dest deleted)", BrokenWhy.RESET: "reset by the node",
                   BrokenWhy.POD_GONE: "pod gone"}[BrokenWhy(a)]
            parts.append(f"connection broken: {why}")
        elif kind == Ev.ORPHANED:
            why = "no route to the pod" if a == BrokenWhy.POD_GONE else "FIN dropped (dest deleted)"
            parts.append(f"close() returns but its FIN gets no answer ({why}): the orphaned FIN_WAIT1 socket "
                         "keeps the port and retransmits")
        elif kind == Ev.ORPHAN_GONE:
            parts.append("the orphan is reset (RST): port free" if a else "the orphan gives up: port free")
        elif kind == Ev.CLOSED:
            parts.append("reset by the client (SO_LINGER 0)" if a == Plan.CLIENT_RESETS
                         else f"closed ({CLOSERS[Plan(a)]} first)")
        elif kind == Ev.CT_KILLED:
            parts.append("conntrack entry killed" + (" — it belonged to a newer, live connection" if a else ""))
        elif kind == Ev.ENTRY_EXPIRED:
            parts.append(f"entry to {sys.pod_name(a)} expired")
        elif kind == Ev.DEST_ADDED:
            parts.append(f"real server {sys.pod_name(x)} added (weight {a})")
        elif kind == Ev.DEST_QUIESCED:
            parts.append(f"{sys.pod_name(x)} has {a} connection(s): weight 0, queued for deletion")
        elif kind == Ev.RS_READ:
            parts.append(f"kube-proxy reads {sys.pod_name(x)}'s counters ({b} connection(s)) and, before it deletes "
                         "the real server, " + (f"{sys.flow_name(a - 1)}'s packet reaches it" if a else "a packet "
                                                "passes elsewhere"))
        elif kind == Ev.DEST_DELETED:
            parts.append(f"real server {sys.pod_name(x)} deleted")
        elif kind == Ev.POD_DELETED:
            parts.append(f"{sys.pod_name(x)} terminating, endpoint removed")
        elif kind == Ev.POD_DESTROYED:
            parts.append(f"{sys.pod_name(x)} destroyed (its IP is gone)")
        elif kind == Ev.POD_ADDED:
            parts.append(f"{sys.pod_name(x)} created and ready")
        elif kind == Ev.POD_CRASHED:
            parts.append(f"{sys.pod_name(x)} died abruptly")
        elif kind == Ev.ENDPOINT_GONE:
            parts.append(f"endpoint of {sys.pod_name(x)} removed")
        elif kind == Ev.FLUSHED:
            parts.append(f"expire_nodest_conn work removed {x} entr{'y' if x == 1 else 'ies'}")
        elif kind == Ev.TIME:
            parts.append(f"{a} s pass")
        elif kind == Ev.TIME_WAIT_OVER:
            parts.append("client TIME_WAIT over: port free")
        elif kind == Ev.TIME_WAIT_TAKEN_OVER:
            parts.append("the bound port's connect takes over the client's own TIME_WAIT")
        elif kind == Ev.WEIGHT_SET:
            parts.append(f"weight of {sys.pod_name(x)} set to {a}")
        elif kind == Ev.DGRAM_FORWARDED:
            parts.append(f"datagram forwarded to {sys.pod_name(a)}{forward_notes(b, 'existing entry')}")
        elif kind == Ev.DGRAM_DROPPED:
            parts.append("datagram dropped by the server-status block: lost, the application must retry")
        elif kind == Ev.ANSWERED:
            parts.append(f"{sys.pod_name(a)} answers")
        elif kind == Ev.TEMPLATE_CREATED:
            parts.append(f"persistence template client-{x + 1} -> {sys.pod_name(a)} created")
        elif kind == Ev.TEMPLATE_INVALIDATED:
            parts.append(f"template client-{x + 1} -> {sys.pod_name(a)} invalidated (dest deleted or quiescent)")
        elif kind == Ev.SYN_QUEUED:
            parts.append(f"the node resolves {sys.pod_name(a)}'s gone address: the SYN waits (bridge)")
        elif kind == Ev.NEIGH_FAILED:
            parts.append(f"resolution of {sys.pod_name(x)}'s address failed: {a} client(s) told")
        elif kind == Ev.SYN_LOST:
            why = "starts probing its old MAC" if b == Neigh.PROBING else "still has its old MAC"
            parts.append(f"the node's neighbour entry for {sys.pod_name(a)} {why}: the SYN goes out to the gone pod "
                         "and is lost, no ICMP (bridge)")
        elif kind == Ev.NEIGH_STALE:
            parts.append(f"the node's neighbour entry for {sys.pod_name(x)} goes STALE"
                         + (" and is freed: the next packet resolves the address anew" if a else ""))
        elif kind == Ev.REPLY_INVALID:
            parts.append(f"{sys.pod_name(a)} answers, but its SYN-ACK matches no conntrack entry (the flow's names "
                         "another pod): INVALID, dropped by the node's FORWARD rule; the client retransmits")
        elif kind == Ev.CT_EXPIRED:
            parts.append("conntrack entry (SYN_SENT) timed out")
        elif kind == Ev.CLIENT_CRASHED:
            parts.append(f"the client lost its connection to {sys.pod_name(a)} without a packet")
        elif kind == Ev.CHALLENGED:
            parts.append(f"{sys.pod_name(a)}'s old socket answers with a challenge ACK; the client resets it and "
                         "retransmits at once")
        elif kind == Ev.TEMPLATE_EXPIRED:
            parts.append(f"template client-{x + 1} -> {sys.pod_name(a)} "
                         + ("still controls connections: re-armed for 60 s" if b else "expired"))
    return "; ".join(parts) if parts else "nothing changes"


# ---------------------------------------------------------------------- events, by name
# How a kind of value inside an event is named: flows, pods and clients by the system's names, the
# enums by their members' names. Version 1 files stored the raw integers: V1_DECODE reads them in the
# numbering version 1 was written with (frozen here), so migrating one never depends on today's enums.
Decoders = Mapping[str, Callable[[int], Any]]


def _flag_names(bits: tuple[tuple[int, str], ...]) -> Callable[[int], list[str]]:
    def names(v: int) -> list[str]:
        if v < 0 or v & ~sum(b for b, _ in bits):
            raise ValueError(f"expected a sum of {', '.join(f'{b} ({n})' for b, n in bits)}, got {v}")
        return [n for b, n in bits if v & b]
    return names


def _closer(v: int) -> str:
    return CLOSERS[Plan(v)]


DECODE: Decoders = {
    "tcp_state": lambda v: SHORT[TcpState(v)],
    "drop": lambda v: DropWhy(v).name,
    "broken": lambda v: BrokenWhy(v).name,
    "neigh": lambda v: Neigh(v).name.lower(),
    "closer": _closer,
    "flags": _flag_names(tuple(zip((SF_REUSED, SF_POD_DEAD, SF_DEST_W0, SF_DEST_DELETED, SF_RETRANSMIT), FLAG_NAMES,
                                   strict=True))),
}

# version 1's numbering: Ev, TcpState, DropWhy, BrokenWhy, Plan and the SF_* bits as they were then
V1_EVENTS = (
    "SYN_FORWARDED", "SYN_DROPPED", "REFUSED", "CONNECTED", "NO_ROUTE", "TIMED_OUT", "REUSE_HIT", "RESCHEDULED",
    "PKT_FORWARDED", "BROKEN", "CLOSED", "CT_KILLED", "ENTRY_EXPIRED", "DEST_ADDED", "DEST_QUIESCED",
    "DEST_DELETED", "POD_DELETED", "POD_DESTROYED", "POD_ADDED", "POD_CRASHED", "ENDPOINT_GONE", "SYNCED",
    "CHECKED", "FLUSHED", "TIME", "TIME_WAIT_OVER", "WEIGHT_SET", "DGRAM_FORWARDED", "DGRAM_DROPPED", "ANSWERED",
    "TEMPLATE_CREATED", "TEMPLATE_INVALIDATED", "TEMPLATE_EXPIRED",
)
_V1_TCP = ("NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT", "CLOSE", "CLOSE_WAIT",
           "LAST_ACK", "LISTEN", "SYNACK", "NORMAL")


def _pick(names: tuple[str, ...]) -> Callable[[int], str]:
    def name(v: int) -> str:
        if not 0 <= v < len(names):
            raise ValueError(f"expected 0..{len(names) - 1} ({', '.join(names)}), got {v}")
        return names[v]
    return name


V1_DECODE: Decoders = {
    "tcp_state": _pick(_V1_TCP),
    "drop": _pick(("REUSE", "NODEST")),
    "broken": _pick(("DEST_DELETED", "RESET", "POD_GONE")),
    "closer": _pick(CLOSER_NAMES),
    "flags": _flag_names(((1, "REUSED"), (2, "POD_DEAD"), (4, "DEST_W0"), (8, "DEST_DELETED"), (16, "RETRANSMIT"))),
}


def _named_event(sys: System, name: str, values: tuple[int, int, int], decode: Decoders) -> EventRecord:
    """Raises ValueError if a value does not fit the event's fields."""
    record: dict[str, Any] = {"event": name}
    for slot, v in zip(event_fields(Ev[name]), values, strict=True):
        if slot is None:
            if v != 0:
                raise ValueError(f"{name} has no field for the value {v}")
            continue
        key, kind = slot
        if kind in ("flow", "pod", "client") and v < -1:
            raise ValueError(f"{name}.{key}: expected an index, got {v}")
        if kind == "flow":
            record[key] = sys.flow_name(v)
        elif kind == "pod":
            record[key] = sys.pod_name(v)
        elif kind == "client":
            record[key] = f"client-{v + 1}"
        elif kind == "int":
            record[key] = v
        elif kind == "bool":
            if v not in (0, 1):
                raise ValueError(f"{name}.{key} must be 0 or 1, not {v}")
            record[key] = bool(v)
        else:
            try:
                record[key] = decode[kind](v)
            except (ValueError, KeyError) as e:
                raise ValueError(f"{name}.{key}: {e.args[0] if e.args else e}") from None
    return EVENT_MODELS[name].model_validate(record)


def event_to_json(sys: System, event: Event) -> EventRecord:
    kind, x, a, b = event
    return _named_event(sys, Ev(kind).name, (x, a, b), DECODE)


def _event_text(e: EventRecord) -> str:
    fields = e.model_dump()
    name = fields.pop("event")
    return f"{name}(" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"


# ---------------------------------------------------------------------- building traces
def _timing_mode(search_timing: str) -> str:
    # an event-driven run is an exact run; an untimed one replays only in the untimed semantics
    return "untimed" if search_timing == "untimed" else "exact"


def _step_record(sys: System, n: int, now: int, a: Action, ev: tuple[Event, ...], st: State) -> Step:
    actor, name, params = action_to_json(sys, a)
    return Step(step=n, time=now, actor=actor, action=name, params=Params(**params), outcome=outcome(sys, ev),
                events=[event_to_json(sys, e) for e in ev], state=state_view(sys, st, now))


def build_trace(
    cfg: Config, actions: list[Action], prop: Property | None, engine: str, timing: str,
    loop_start: int | None = None, pod: int = -1, seed: int | None = None, status: str = "violated",
    hypothesis: HypothesisInfo | None = None,
) -> TraceFile:
    sys = replay_system(cfg, _timing_mode(timing))
    st = sys.initial_states()[0]
    now = 0
    steps = []
    for n, a in enumerate(actions, 1):
        st, ev = sys.step(st, a)
        if a[0] == Act.WAIT:
            now += a[1]
        steps.append(_step_record(sys, n, now, a, ev, st))
    extra = {"hypothesis": hypothesis} if hypothesis is not None else {}
    return TraceFile(
        format=FORMAT, version=VERSION,
        property=prop.name if prop else None,
        property_number=prop.number if prop else None,
        kind="liveness" if loop_start is not None else "safety",
        status=status,  # type: ignore[arg-type]
        engine=engine, search_timing=timing, seed=seed,  # type: ignore[arg-type]
        config=config_model(cfg),
        pod=sys.pod_name(pod) if pod >= 0 else None,
        loop_start=loop_start,
        initial_state=state_view(sys, sys.initial_states()[0], 0),
        steps=steps, **extra,
    )


# ---------------------------------------------------------------------- loading (and migrating) trace files
class TraceError(UserError):
    pass


def load_trace(path: Path) -> TraceFile:
    """Raises TraceError, one line naming the file, the place and what was expected."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TraceError(f"{path}: cannot be read ({e})") from None
    except json.JSONDecodeError as e:
        raise TraceError(f"{path}:{e.lineno}:{e.colno}: not JSON ({e.msg})") from None
    return parse_trace(data, path)


def parse_trace(data: Any, path: Path | str = "<trace>") -> TraceFile:
    """A trace file's JSON (already parsed) as the version 2 model; a version 1 file is migrated."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TraceError(f"{path}: format: not an {FORMAT} file (expected \"format\": \"{FORMAT}\")")
    version = data.get("version")
    if version == 1:
        data = migrate_v1(data, path)
    elif version != VERSION or isinstance(version, bool):
        raise TraceError(f"{path}: version: expected {VERSION} (or 1, migrated on load), got {version!r}")
    try:
        trace = TraceFile.model_validate(data)
    except ValidationError as e:
        raise TraceError(f"{path}: {describe_error(e)}") from None
    if trace.property is not None and trace.property not in BY_NAME:
        raise TraceError(f"{path}: property: unknown property {trace.property!r} (expected one of: "
                         f"{', '.join(BY_NAME)})")
    return trace


def describe_error(e: ValidationError, prefix: tuple[str | int, ...] = ()) -> str:
    """The first error of a validation, as "place: what was expected"."""
    err = e.errors()[0]
    loc = list(prefix) + [x for x in err["loc"] if not (isinstance(x, str) and x in EVENT_MODELS)]
    place = ".".join(str(x) for x in loc) or "the file"
    kind, msg = err["type"], err["msg"]
    given = json.dumps(err.get("input"), default=str)
    given = given if len(given) <= 60 else given[:57] + "..."
    if kind == "missing":
        return f"{'.'.join(str(x) for x in loc[:-1]) or 'the file'}: missing key '{loc[-1]}'"
    if kind == "value_error":
        return f"{place}: {msg.removeprefix('Value error, ')}"
    if kind == "union_tag_invalid":
        return (f"{place}.event: unknown event {err['ctx']['tag']!r} (expected one of: "
                f"{', '.join(EVENT_MODELS)})")
    if kind == "union_tag_not_found":
        return f"{place}: missing key 'event' (the name of an event, one of: {', '.join(EVENT_MODELS)})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{place}: expected an object, got {given}"
    if kind == "list_type":
        return f"{place}: expected a list, got {given}"
    return f"{place}: {msg.replace('Input should be', 'expected')}, got {given}"


def migrate_v1(data: dict[str, Any], path: Path | str) -> dict[str, Any]:
    """A version 1 file as version 2 JSON: the same trace, its events named.

    Version 1 is migrated rather than refused: its events are raw integers, but read in the numbering
    version 1 was written with (V1_EVENTS, V1_DECODE, frozen), so their meaning is known for good, and
    the replay then checks every migrated step against the model like any other. Refusing would strand
    every trace saved before (.traces/hypothesis/, reports) for no gain in safety.
    """
    try:
        config = ConfigModel.model_validate(data.get("config"))
    except ValidationError as e:
        raise TraceError(f"{path}: {describe_error(e, ('config',))}") from None
    sys = replay_system(_config(config, path), _timing_mode(str(data.get("search_timing"))))
    steps = data.get("steps")
    if not isinstance(steps, list):
        return {**data, "version": VERSION}  # the model names what is wrong
    migrated = []
    for i, step in enumerate(steps):
        if isinstance(step, dict) and isinstance(step.get("events"), list):
            step = {**step, "events": [_v1_event(sys, e, f"{path}: steps.{i}.events.{j}")
                                       for j, e in enumerate(step["events"])]}
        migrated.append(step)
    return {**data, "version": VERSION, "steps": migrated}


def _v1_event(sys: System, e: Any, where: str) -> Any:
    if not (isinstance(e, list) and len(e) == 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in e)):
        raise TraceError(f"{where}: expected [kind, subject, a, b], four integers (format version 1), got "
                         f"{json.dumps(e)[:60]}")
    kind, x, a, b = e
    if not 0 <= kind < len(V1_EVENTS):
        raise TraceError(f"{where}: unknown version 1 event number {kind} (expected 0..{len(V1_EVENTS) - 1})")
    try:
        return _named_event(sys, V1_EVENTS[kind], (x, a, b), V1_DECODE).model_dump()
    except ValueError as err:
        raise TraceError(f"{where}: {err}") from None


def _config(config: ConfigModel, path: Path | str) -> Config:
    for name, value in config.sysctl_overrides.items():
        if name not in SYSCTL_RANGES:
            raise TraceError(f"{path}: config.sysctl_overrides.{name}: unknown sysctl (expected one of: "
                             f"{', '.join(SYSCTL_RANGES)})")
        low, high = SYSCTL_RANGES[name]
        if not low <= value <= high:
            raise TraceError(f"{path}: config.sysctl_overrides.{name}: expected {low}..{high}, got {value}")
    try:
        return config_from_json(config)
    except (KeyError, TypeError, ValueError) as e:  # an unknown variant, kube-proxy, scheduler ...
        raise TraceError(f"{path}: config: {e.args[0] if isinstance(e, KeyError) else e}") from None


# ---------------------------------------------------------------------- replaying
def flatten_view(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a JSON value by dotted path (config.scope.pods.0, ipvs.dests.pod-a.weight)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten_view(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, list) and obj:
        out = {}
        for i, v in enumerate(obj):
            out.update(flatten_view(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): obj}


def _differences(recorded: Any, replayed: Any, limit: int = 3) -> str:
    """What differs between two JSON values, as "key: the file says x, the replay gives y; ..."."""
    a, b = flatten_view(recorded), flatten_view(replayed)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, "(absent)") != b.get(k, "(absent)")]
    parts = [f"{k or 'value'}: the file says {json.dumps(a.get(k, '(absent)'))}, the replay gives "
             f"{json.dumps(b.get(k, '(absent)'))}" for k in keys[:limit]]
    more = f"; and {len(keys) - limit} more" if len(keys) > limit else ""
    return "; ".join(parts) + more


@dataclass
class Replay:
    """What replaying a trace in the model did. `trace` is the replay's own trace (what `show` renders);
    `problems` names each place where the file differs from it, or the step that no longer applies."""

    config: Config
    prop: Property | None
    states: list[State]
    events: list[tuple[Event, ...]]
    times: list[int]
    violated: bool
    trace: TraceFile
    problems: list[str] = field(default_factory=list)
    stopped_at: int | None = None  # the first step that no longer applies
    recorded_steps: int = 0
    actions: list[Action] = field(default_factory=list)  # the steps that were replayed

    @property
    def reproduces(self) -> bool:
        """The replay gives the file, step for step."""
        return not self.problems

    @property
    def exit_code(self) -> int:
        """0: the file is what the model does and (a counterexample) still violates its property; else 1."""
        return 0 if self.reproduces and (self.prop is None or self.violated) else 1

    def verdict(self) -> str:
        done = len(self.states) - 1
        if self.stopped_at is not None:
            return f"replayed {done} of {self.recorded_steps} steps: step {self.stopped_at} no longer applies"
        head = f"replayed {done} steps"
        if self.problems:
            head += (f": the file differs from the replay ({len(self.problems)} "
                     f"difference{'s' if len(self.problems) > 1 else ''})")
            if self.prop is not None:
                head += "; the replay " + ("still violates" if self.violated else "NO LONGER violates") + \
                        f" {self.prop.name}"
            return head
        if self.prop is None:
            return head + ": reproduced"
        return head + (": still violated" if self.violated else ": NO LONGER violated by the model")


def replay_trace(trace: TraceFile, path: Path | str = "<trace>") -> Replay:
    """Replay `trace` in the model and compare every step with it. Bad input raises TraceError; a trace the
    model does not reproduce is not an error here: the Replay's `problems` say where it differs."""
    cfg = _config(trace.config, path)
    prop = BY_NAME[trace.property] if trace.property is not None else None
    sys = replay_system(cfg, _timing_mode(trace.search_timing))
    st = sys.initial_states()[0]
    initial = state_view(sys, st, 0)
    states, events, times, actions, steps = [st], [], [0], [], []
    problems: list[str] = []
    stopped: int | None = None

    def compare(where: str, recorded: Any, replayed: Any) -> None:
        if recorded != replayed:
            problems.append(f"{where}: {_differences(recorded, replayed)}")

    compare("config", trace.config.model_dump(mode="json", exclude_unset=True), config_to_json(cfg))
    if prop is not None and trace.property_number != prop.number:
        problems.append(f"property_number: the file says {trace.property_number}, property {prop.name} is "
                        f"number {prop.number}")
    kind: Literal["safety", "liveness"] = "liveness" if trace.loop_start is not None else "safety"
    if trace.kind != kind:
        has = "with" if trace.loop_start is not None else "without"
        problems.append(f"kind: the file says {trace.kind}, but a trace {has} loop_start is {kind}")
    compare("initial_state", trace.initial_state.model_dump(mode="json"), initial.model_dump(mode="json"))
    now = 0
    for n, rec in enumerate(trace.steps, 1):
        where = f"step {n}"
        said = f"'{rec.action}' " + " ".join(f"{k}={v}" for k, v in rec.params.given().items())
        try:
            a = action_from_json(sys, rec.action, rec.params.given())
        except (KeyError, ValueError, TypeError) as e:
            problems.append(f"{where}: {said.strip()} no longer applies: {e}")
            stopped = n
            break
        if not sys.enabled(st, a):
            problems.append(f"{where}: {said.strip()} no longer applies (the model does not allow it here)")
            stopped = n
            break
        st, ev = sys.step(st, a)
        if a[0] == Act.WAIT:
            now += a[1]
        got = _step_record(sys, n, now, a, ev, st)
        if rec.step != n:
            problems.append(f"{where}: numbered {rec.step} in the file")
        for attr in ("time", "actor", "outcome"):
            if getattr(rec, attr) != getattr(got, attr):
                problems.append(f"{where}: {attr}: the file says {json.dumps(getattr(rec, attr))}, the replay "
                                f"gives {json.dumps(getattr(got, attr))}")
        mine, theirs = [e.model_dump() for e in rec.events], [e.model_dump() for e in got.events]
        if mine != theirs:
            i = next((i for i, (x, y) in enumerate(zip(mine, theirs, strict=False)) if x != y), min(len(mine),
                                                                                                   len(theirs)))
            said_ev = _event_text(rec.events[i]) if i < len(rec.events) else "nothing more"
            gives = _event_text(got.events[i]) if i < len(got.events) else "nothing more"
            problems.append(f"{where}: events: event {i + 1}: the file says {said_ev}, the replay gives {gives}")
        compare(f"{where}: state", rec.state.model_dump(mode="json"), got.state.model_dump(mode="json"))
        states.append(st)
        events.append(ev)
        times.append(now)
        actions.append(a)
        steps.append(got)
    if stopped is not None and stopped < len(trace.steps):
        problems.append(f"steps {stopped + 1}..{len(trace.steps)}: not replayed")
    extra = {"hypothesis": trace.hypothesis} if "hypothesis" in trace.model_fields_set else {}
    replayed = TraceFile(
        format=FORMAT, version=VERSION, property=trace.property, property_number=prop.number if prop else None,
        kind=kind, status=trace.status, engine=trace.engine, search_timing=trace.search_timing, seed=trace.seed,
        config=config_model(cfg), pod=trace.pod, loop_start=trace.loop_start, initial_state=initial, steps=steps,
        **extra,
    )
    violated = False
    if prop is not None and stopped is None and trace.status in ("violated", "undecided"):
        violated = _still_violated(sys, prop, replayed, actions, states, events)
    return Replay(cfg, prop, states, events, times, violated, replayed, problems, stopped, len(trace.steps), actions)


def _still_violated(sys: System, prop: Property, trace: TraceFile, actions: list[Action], states: list[State],
                    events: list[tuple[Event, ...]]) -> bool:
    if not events:
        return False
    if prop.kind == "safety":
        if prop.violated is None:
            return False
        return prop.violated(sys, states[-2], actions[-1], events[-1], states[-1])
    loop = trace.loop_start
    pods = {sys.pod_name(i): i for i in range(sys.n_pods)}
    if loop is None or not 0 <= loop < len(states) - 1 or trace.pod not in pods:
        return False
    pod = pods[trace.pod]
    live = prop.liveness
    if live is None or states[loop] != states[-1]:
        return False  # not a cycle
    return all(live.pending(sys, states[i], pod) for i in range(loop, len(states)))
