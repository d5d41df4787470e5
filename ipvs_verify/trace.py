"""The counterexample trace format (versioned JSON), its replay, and the readable state view.

A trace holds the configuration, the initial state, then steps: time, actor, action, parameters,
outcome, events, and the state after the step. Replaying rebuilds every state from the configuration in
the exact-time semantics and re-checks the violation; a step that no longer applies is named.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ipvs_verify.errors import UserError
from model.config import Config, Scope, Timing, make_config
from model.events import SF_DEST_DELETED, SF_DEST_W0, SF_POD_DEAD, SF_RETRANSMIT, SF_REUSED, BrokenWhy, Ev, Event
from model.state import DestStatus, Plan, PodPhase, Sock, State, counters
from model.system import ACTION_NAMES, ACTORS, Act, Action, System
from model.tcp_states import SHORT, TcpState
from properties.catalog import BY_NAME, Property

FORMAT = "ipvs-verify-trace"
VERSION = 1

ACTION_BY_NAME = {v: k for k, v in ACTION_NAMES.items()}
CLOSERS = {Plan.CLIENT_CLOSES: "client", Plan.SERVER_CLOSES: "server", Plan.HOLD: "none"}
CLOSER_BY_NAME = {v: k for k, v in CLOSERS.items()}


# ---------------------------------------------------------------------- configuration
def config_to_json(cfg: Config) -> dict[str, Any]:
    sc = asdict(cfg.scope)
    sc["pods"] = list(cfg.scope.pods)
    sc["spare_pods"] = list(cfg.scope.spare_pods)
    tm = asdict(cfg.timing)
    tm["ipvs_timeouts"] = {SHORT[TcpState(k)]: v for k, v in cfg.timing.ipvs_timeouts}
    return {
        "variant": cfg.variant.name,
        "kernel": cfg.kernel,
        "kube_proxy": cfg.kube_proxy.text,
        "sysctl_overrides": dict(cfg.overrides),
        "sysctls": cfg.sysctls.as_dict(),
        "nf_conntrack": cfg.nf_conntrack,
        "scheduler": cfg.scheduler,
        "scope": sc,
        "timing": tm,
    }


def config_from_json(d: dict[str, Any]) -> Config:
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
        scheduler=d.get("scheduler", "rr"),
    )


# ---------------------------------------------------------------------- actions
def action_to_json(sys: System, a: Action) -> tuple[str, str, dict[str, Any]]:
    """(actor, action name, parameters)."""
    kind, x, y = Act(a[0]), a[1], a[2]
    name = ACTION_NAMES[kind]
    actor = ACTORS[kind]
    params: dict[str, Any] = {}
    if kind in (Act.REQUEST, Act.CONNECT, Act.SEND, Act.CLOSE, Act.CLIENT_TIMER, Act.EXPIRE, Act.DATAGRAM):
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
                Act.SET_WEIGHT, Act.DELETE_DEST, Act.ADD_DEST):
        params["pod"] = sys.pod_names[x]
    if kind in (Act.SET_WEIGHT, Act.ADD_DEST):
        params["weight"] = y
    return actor, name, params


def action_from_json(sys: System, name: str, params: dict[str, Any]) -> Action:
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
        if closer not in ("client", "server"):
            raise ValueError(f"closer must be 'client' or 'server', not {closer!r}")
        return (kind, flow(), CLOSER_BY_NAME[closer])
    if kind in (Act.CONNECT, Act.SEND, Act.CLIENT_TIMER, Act.DATAGRAM):
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
    if kind in (Act.GRACE_END, Act.DELETE_POD, Act.ADD_POD, Act.CRASH_POD, Act.ENDPOINT_GONE, Act.DELETE_DEST):
        return (kind, pod(), 0)
    return (kind, 0, 0)


# ---------------------------------------------------------------------- state view
def state_view(sys: System, st: State, now: int) -> dict[str, Any]:
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
            text = "idle"
        elif c.sock == Sock.ESTABLISHED:
            text = f"connected to {sys.pod_name(c.pod)}"
        elif c.sock == Sock.TIME_WAIT:
            text = f"TIME_WAIT until {at(c.timer)}"
        else:
            text = f"SYN_SENT, retransmission {c.tries + 1} at {at(c.timer)}"
        clients[sys.flow_name(f)] = text
    pods = {}
    for p, pod in enumerate(st.pods):
        if pod.phase == PodPhase.ABSENT:
            continue
        phase = {PodPhase.RUNNING: "running", PodPhase.TERMINATING: f"terminating, destroyed at {at(pod.timer)}",
                 PodPhase.DESTROYED: "destroyed"}[PodPhase(pod.phase)]
        pods[sys.pod_name(p)] = phase + (", endpoint listed" if pod.listed else "")
    view: dict[str, Any] = {
        "ipvs": {
            "entries": entries, "dests": dests,
            "rr_cursor": sys.pod_name(st.cursor) if st.cursor >= 0 else "head",
            "flush_pending": st.flush_pending,
        },
        "conntrack": {sys.flow_name(f): ("live" if fl.ct_live else "none") for f, fl in enumerate(st.flows)},
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
    return view


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
        elif kind == Ev.CLOSED:
            parts.append(f"closed ({CLOSERS[Plan(a)]} first)")
        elif kind == Ev.CT_KILLED:
            parts.append("conntrack entry killed" + (" — it belonged to a newer, live connection" if a else ""))
        elif kind == Ev.ENTRY_EXPIRED:
            parts.append(f"entry to {sys.pod_name(a)} expired")
        elif kind == Ev.DEST_ADDED:
            parts.append(f"real server {sys.pod_name(x)} added (weight {a})")
        elif kind == Ev.DEST_QUIESCED:
            parts.append(f"{sys.pod_name(x)} has {a} connection(s): weight 0, queued for deletion")
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
        elif kind == Ev.TEMPLATE_EXPIRED:
            parts.append(f"template client-{x + 1} -> {sys.pod_name(a)} "
                         + ("still controls connections: re-armed for 60 s" if b else "expired"))
    return "; ".join(parts) if parts else "nothing changes"


# ---------------------------------------------------------------------- building and replaying traces
def build_trace(
    cfg: Config, actions: list[Action], prop: Property | None, engine: str, timing: str,
    loop_start: int | None = None, pod: int = -1, seed: int | None = None, status: str = "violated",
) -> dict[str, Any]:
    sys = System(cfg, "untimed" if timing == "untimed" else "exact")
    st = sys.initial_states()[0]
    now = 0
    steps = []
    for n, a in enumerate(actions, 1):
        st, ev = sys.step(st, a)
        if a[0] == Act.WAIT:
            now += a[1]
        actor, name, params = action_to_json(sys, a)
        steps.append({
            "step": n, "time": now, "actor": actor, "action": name, "params": params,
            "outcome": outcome(sys, ev), "events": [list(e) for e in ev], "state": state_view(sys, st, now),
        })
    return {
        "format": FORMAT, "version": VERSION,
        "property": prop.name if prop else None,
        "property_number": prop.number if prop else None,
        "kind": "liveness" if loop_start is not None else "safety",
        "status": status,
        "engine": engine, "search_timing": timing, "seed": seed,
        "config": config_to_json(cfg),
        "pod": sys.pod_name(pod) if pod >= 0 else None,
        "loop_start": loop_start,
        "initial_state": state_view(sys, sys.initial_states()[0], 0),
        "steps": steps,
    }


class TraceError(UserError):
    pass


@dataclass
class Replay:
    config: Config
    prop: Property | None
    states: list[State]
    events: list[tuple[Event, ...]]
    times: list[int]
    violated: bool


def load_trace(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise TraceError(f"{path}:{e.lineno}:{e.colno}: not JSON ({e.msg})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TraceError(f"{path}: not an {FORMAT} file (expected \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise TraceError(f"{path}: trace format version {data.get('version')!r}; this tool reads version {VERSION}")
    for key in ("config", "steps"):
        if key not in data:
            raise TraceError(f"{path}: missing key '{key}'")
    if not isinstance(data["steps"], list):
        raise TraceError(f"{path}: 'steps' must be a list")
    return data


def replay_trace(data: dict[str, Any], path: Path | str = "<trace>") -> Replay:
    try:
        cfg = config_from_json(data["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise TraceError(f"{path}: config: {e}") from None
    prop = None
    if data.get("property"):
        if data["property"] not in BY_NAME:
            raise TraceError(f"{path}: unknown property {data['property']!r}")
        prop = BY_NAME[data["property"]]
    # an event-driven run is an exact run; an untimed one replays only in the untimed semantics
    sys = System(cfg, "untimed" if data.get("search_timing") == "untimed" else "exact")
    st = sys.initial_states()[0]
    states, events, times = [st], [], [0]
    now = 0
    for n, step in enumerate(data["steps"], 1):
        where = f"{path}: step {n}"
        if not isinstance(step, dict) or "action" not in step:
            raise TraceError(f"{where}: expected an object with 'action' and 'params'")
        try:
            a = action_from_json(sys, step["action"], step.get("params", {}))
        except (KeyError, ValueError, TypeError) as e:
            raise TraceError(f"{where}: {e}") from None
        if not sys.enabled(st, a):
            raise TraceError(f"{where}: '{step['action']}' {step.get('params', {})} is not possible here "
                             f"(the model no longer allows this step)")
        st, ev = sys.step(st, a)
        if a[0] == Act.WAIT:
            now += a[1]
        if "state" in step and step["state"] != state_view(sys, st, now):
            raise TraceError(f"{where}: the state after '{step['action']}' differs from the recorded one")
        states.append(st)
        events.append(ev)
        times.append(now)
    violated = False
    if prop is not None and data.get("status", "violated") in ("violated", "undecided"):
        violated = _still_violated(sys, prop, data, states, events)
    return Replay(cfg, prop, states, events, times, violated)


def _still_violated(sys: System, prop: Property, data: dict[str, Any], states: list[State],
                    events: list[tuple[Event, ...]]) -> bool:
    if not events:
        return False
    if prop.kind == "safety":
        assert prop.violated is not None
        acts = [action_from_json(sys, s["action"], s.get("params", {})) for s in data["steps"]]
        return prop.violated(sys, states[-2], acts[-1], events[-1], states[-1])
    loop = data.get("loop_start")
    pods = {sys.pod_name(i): i for i in range(sys.n_pods)}
    if loop is None or data.get("pod") not in pods:
        return False
    pod = pods[data["pod"]]
    live = prop.liveness
    assert live is not None
    if states[loop] != states[-1]:
        return False  # not a cycle
    cycle = range(loop, len(states) - 1)
    return len(cycle) > 0 and all(live.pending(sys, states[i], pod) for i in range(loop, len(states)))
