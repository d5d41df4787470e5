"""Incident scenarios: YAML files of configuration and steps, replayed through the model.

Read with ruamel.yaml (which keeps line numbers) and validated with pydantic, so every error names the
file, the line and what was expected. Between steps, timers that fall due fire in a fixed order, so a
scenario's run is deterministic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from ipvs_verify.errors import UserError
from ipvs_verify.trace import outcome
from model.config import Config, Scope, Timing, make_config
from model.events import Ev, Event
from model.kube_proxy import UnknownKubeProxy
from model.state import DestStatus, Plan, PodPhase, State, counters
from model.system import Act, Action, System
from model.tcp_states import SHORT, TcpState
from model.variants import UnknownKernel

OUTCOMES = ("connected", "refused", "no-route", "dropped", "timed-out", "broken", "closed", "answered", "lost",
            "none")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScenarioConfig(Strict):
    variant: str | None = None
    kernel: str | None = None
    kube_proxy: str = "1.30"
    sysctls: dict[Literal["conn_reuse_mode", "conntrack", "expire_nodest_conn", "expire_quiescent_template",
                          "conn_reuse_old_conntrack"], int] = Field(default_factory=dict)
    pods: list[str] = Field(default_factory=lambda: ["a", "b"], min_length=1)
    spare_pods: list[str] = Field(default_factory=list)
    clients: int = Field(1, ge=1, le=8)
    ports: int = Field(1, ge=1, le=8)
    grace_period: int = Field(30, ge=0)
    nf_conntrack: bool = True
    protocol: Literal["tcp", "udp"] = "tcp"  # the service's protocol; udp clients use `datagram` steps
    persistence: int = Field(0, ge=0)  # sessionAffinity ClientIP: the persistent service's timeout (s)
    scheduler: Literal["rr", "lc", "wlc", "sh", "sh-fallback"] = "rr"  # kube-proxy --ipvs-scheduler
    # ipvsadm --set TCP TCPFIN UDP (kube-proxy --ipvs-tcp-timeout, --ipvs-tcpfin-timeout, --ipvs-udp-timeout):
    # the only timeouts IP_VS_SO_SET_TIMEOUT changes (ESTABLISHED, FIN_WAIT, UDP); 0 leaves one as it is
    ipvs_timeouts: dict[Literal["tcp", "tcpfin", "udp"], Annotated[int, Field(ge=0)]] = Field(default_factory=dict)


class Expect(Strict):
    outcome: Literal[OUTCOMES] | None = None  # type: ignore[valid-type]
    pod: str | None = None  # the pod reached
    entry_state: str | None = None  # newest IPVS entry of the step's flow
    entry_dest: str | None = None
    weight: dict[str, int] | None = None
    active: dict[str, int] | None = None
    inactive: dict[str, int] | None = None
    dest_deleted: list[str] | None = None


class Step(Strict):
    connect: str | None = None  # "client-1:port-1" (a long-lived connection)
    request: str | None = None  # a short request (connect + close)
    send: str | None = None
    close: str | None = None
    datagram: str | None = None  # UDP: one datagram from this client port, answered by the pod
    closer: Literal["client", "server"] = "client"
    wait: int | None = Field(None, ge=0)
    delete_pod: str | None = Field(None, alias="delete-pod")  # endpoint removed, pod terminating
    add_pod: str | None = Field(None, alias="add-pod")  # endpoint added
    destroy_pod: str | None = Field(None, alias="destroy-pod")  # the terminating pod's containers exit
    crash_pod: str | None = Field(None, alias="crash-pod")  # dies before kube-proxy knows
    endpoint_gone: str | None = Field(None, alias="endpoint-gone")
    sync: bool | None = None  # run kube-proxy's pending sync now
    check: bool | None = None  # wait for the next graceful-deletion check
    set_weight: str | None = Field(None, alias="set-weight")
    weight: int | None = Field(None, ge=0, le=65535)
    delete_dest: str | None = Field(None, alias="delete-dest")
    add_dest: str | None = Field(None, alias="add-dest")
    expect: dict[str, Expect] | Expect | None = None  # per variant name, "default", or one for all

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ConformanceOptions(Strict):
    """Options for `ipvs-verify conformance` (the real-kernel run); the model ignores them."""

    slow: bool = False  # its real waits are too long for the default suite (e.g. TIME_WAIT expiry)
    known_mismatch: str | None = None  # the kernel contradicts an expectation: why (pytest xfails it)
    pod_network: Literal["routed", "bridge"] = "routed"  # /32 route per pod, or a bridge with a subnet route


class ScenarioFile(Strict):
    name: str
    description: str = ""
    config: ScenarioConfig
    steps: list[Step] = Field(min_length=1)
    conformance: ConformanceOptions = Field(default_factory=lambda: ConformanceOptions())


@dataclass
class Scenario:
    path: Path
    data: ScenarioFile
    lines: list[int]  # line of each step

    @property
    def variant(self) -> str:
        return self.data.config.variant or self.data.config.kernel or "K516"


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    line = None
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            line = node.lc.key(key)[0] + 1
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        else:
            break
    return line


def load_scenario(path: Path) -> Scenario:
    try:
        raw = YAML().load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, CommentedMap):
        raise UserError(f"{path}: expected a mapping with 'name', 'config' and 'steps'")
    try:
        data = ScenarioFile.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = tuple(first["loc"])
        line = _line_of(raw, loc)
        place = ".".join(str(x) for x in loc)
        raise UserError(f"{path}:{line or 1}: {place}: {first['msg']}") from None
    steps = raw["steps"]
    lines = [steps.lc.item(i)[0] + 1 for i in range(len(steps))]
    return Scenario(path, data, lines)


# ---------------------------------------------------------------------- running
@dataclass
class StepResult:
    index: int
    line: int
    time: int
    what: str
    outcome: str
    summary: str  # connected / refused / ...
    pod: str | None
    entry: dict[str, Any] | None
    dests: dict[str, dict[str, Any]]
    failures: list[str] = field(default_factory=list)


@dataclass
class Run:
    scenario: Scenario
    variant: str
    config: Config
    steps: list[StepResult]

    @property
    def ok(self) -> bool:
        return all(not s.failures for s in self.steps)


def scenario_config(sc: Scenario, variant: str) -> Config:
    c = sc.data.config
    try:
        return make_config(
            variant, c.kube_proxy, {str(k): v for k, v in c.sysctls.items()},
            Scope(clients=c.clients, ports=c.ports, pods=tuple(c.pods), spare_pods=tuple(c.spare_pods),
                  changes=0, crashes=False, long_lived=True, protocol=c.protocol, persistence=c.persistence),
            _timing(c), kernel=c.kernel if variant == sc.variant else None,
            nf_conntrack=c.nf_conntrack, scheduler=c.scheduler,
        )
    except (UnknownKernel, UnknownKubeProxy) as e:
        raise UserError(f"{sc.path}: config: {e}") from None


_SET_TIMEOUT = {"tcp": TcpState.ESTABLISHED, "tcpfin": TcpState.FIN_WAIT, "udp": TcpState.NORMAL}


def _timing(c: ScenarioConfig) -> Timing:
    timeouts = dict(Timing().ipvs_timeouts)
    for key, seconds in c.ipvs_timeouts.items():
        if seconds > 0:
            timeouts[_SET_TIMEOUT[key]] = seconds
    return Timing(grace_period=c.grace_period, ipvs_timeouts=tuple(sorted(timeouts.items())))


_DUE_ORDER = (Act.FLUSH, Act.EXPIRE, Act.TEMPLATE_EXPIRE, Act.SYNC, Act.CHECK, Act.GRACE_END, Act.CLIENT_TIMER)


def _fire_due(sys: System, st: State, now: int, log: list[Event]) -> State:
    """Fire every due timer, in a fixed order (expire-now and the nodest flush first)."""
    while True:
        due = [a for a in sys.actions(st) if a[0] in _DUE_ORDER and _is_due(st, a)]
        if not due:
            return st
        due.sort(key=lambda a: (_DUE_ORDER.index(Act(a[0])), a[1], a[2]))
        st, ev = sys.step(st, due[0])
        log.extend(ev)


def _is_due(st: State, a: Action) -> bool:
    kind = a[0]
    if kind == Act.SYNC:
        return st.sync_timer == 0
    return True  # in exact timing every other timer action is offered only when due


def _advance(sys: System, st: State, now: int, seconds: int, log: list[Event]) -> tuple[State, int]:
    left = seconds
    st = _fire_due(sys, st, now, log)
    while left > 0:
        d = min(left, sys._next_deadline(st))
        st, _ = sys.step(st, (Act.WAIT, d, 0))
        now += d
        left -= d
        st = _fire_due(sys, st, now, log)
    return st, now


def run_scenario(sc: Scenario, variant: str) -> Run:
    cfg = scenario_config(sc, variant)
    sys = System(cfg, "exact")
    st = sys.initial_states()[0]
    now = 0
    flows = {sys.flow_name(f): f for f in range(sys.n_flows)}
    pods = {n: i for i, n in enumerate(sys.pod_names)}
    results: list[StepResult] = []
    for i, (step, line) in enumerate(zip(sc.data.steps, sc.lines, strict=True), 1):
        where = f"{sc.path}:{line}"

        def flow(name: str, where: str = where) -> int:
            if name not in flows:
                raise UserError(f"{where}: unknown flow '{name}' (expected one of: {', '.join(flows)})")
            return flows[name]

        def pod(name: str, where: str = where) -> int:
            if name not in pods:
                raise UserError(f"{where}: unknown pod '{name}' (expected one of: {', '.join(pods)})")
            return pods[name]

        log: list[Event] = []
        flow_of_step = -1
        set_fields = [k for k, v in step.model_dump(exclude={"expect", "closer", "weight"}).items() if v is not None]
        if len(set_fields) != 1:
            raise UserError(f"{where}: a step does exactly one thing (got {', '.join(set_fields) or 'nothing'})")
        what = set_fields[0]
        action: Action | None = None
        if step.connect or step.request:
            flow_of_step = flow(step.connect or step.request or "")
            closes = Plan.CLIENT_CLOSES if step.closer == "client" else Plan.SERVER_CLOSES
            plan = Plan.HOLD if step.connect else closes
            action = (Act.CONNECT, flow_of_step, 0) if step.connect else (Act.REQUEST, flow_of_step, plan)
        elif step.send:
            flow_of_step = flow(step.send)
            action = (Act.SEND, flow_of_step, 0)
        elif step.datagram:
            flow_of_step = flow(step.datagram)
            action = (Act.DATAGRAM, flow_of_step, 0)
        elif step.close:
            flow_of_step = flow(step.close)
            action = (Act.CLOSE, flow_of_step, Plan.CLIENT_CLOSES if step.closer == "client" else Plan.SERVER_CLOSES)
        elif step.delete_pod:
            action = (Act.DELETE_POD, pod(step.delete_pod), 0)
        elif step.add_pod:
            action = (Act.ADD_POD, pod(step.add_pod), 0)
        elif step.destroy_pod:
            action = (Act.GRACE_END, pod(step.destroy_pod), 0)
        elif step.crash_pod:
            action = (Act.CRASH_POD, pod(step.crash_pod), 0)
        elif step.endpoint_gone:
            action = (Act.ENDPOINT_GONE, pod(step.endpoint_gone), 0)
        elif step.set_weight:
            action = (Act.SET_WEIGHT, pod(step.set_weight), step.weight if step.weight is not None else 0)
        elif step.delete_dest:
            action = (Act.DELETE_DEST, pod(step.delete_dest), 0)
        elif step.add_dest:
            action = (Act.ADD_DEST, pod(step.add_dest), step.weight if step.weight is not None else 1)
        if action is not None:
            _check_possible(sys, st, action, where, what)
            st, ev = sys.step(st, action)
            log.extend(ev)
            st = _fire_due(sys, st, now, log)
        elif step.wait is not None:
            st, now = _advance(sys, st, now, step.wait, log)
        elif step.sync:
            if st.sync_timer < 0:
                raise UserError(f"{where}: 'sync': kube-proxy has no pending sync (nothing changed)")
            st, ev = sys.step(st, (Act.SYNC, 0, 0))
            log.extend(ev)
            st = _fire_due(sys, st, now, log)
        elif step.check:
            st, now = _advance(sys, st, now, st.check_timer, log)
        results.append(_result(sys, st, i, line, now, what, log, flow_of_step, step, variant))
    return Run(sc, variant, cfg, results)


def _check_possible(sys: System, st: State, a: Action, where: str, what: str) -> None:
    kind = a[0]
    if kind == Act.GRACE_END:
        if st.pods[a[1]].phase != PodPhase.TERMINATING:
            raise UserError(f"{where}: destroy-pod: the pod is not terminating (delete it first, or crash-pod)")
        return
    if kind in (Act.CRASH_POD, Act.DELETE_POD, Act.ADD_POD):
        ok = (st.pods[a[1]].phase == PodPhase.RUNNING) if kind != Act.ADD_POD else (
            st.pods[a[1]].phase == PodPhase.ABSENT)
        if not ok:
            raise UserError(f"{where}: {what}: not possible for a pod that is {PodPhase(st.pods[a[1]].phase).name}")
        return
    if kind in (Act.SET_WEIGHT, Act.DELETE_DEST, Act.ADD_DEST):
        if not sys.enabled(st, a):
            raise UserError(f"{where}: {what}: the real server is not in a state that allows it")
        return
    if not sys.enabled(st, a):
        raise UserError(f"{where}: {what}: not possible now (is the port busy, in TIME_WAIT, or not connected?)")


def _summary(events: list[Event]) -> tuple[str, int]:
    pod = -1
    summary = "none"
    for kind, _x, a, _b in events:
        if kind == Ev.SYN_FORWARDED:
            pod = a
        if kind == Ev.CONNECTED:
            summary, pod = "connected", a
        elif kind == Ev.REFUSED:
            summary = "refused"
        elif kind == Ev.NO_ROUTE:
            summary = "no-route"
        elif kind == Ev.SYN_DROPPED and summary == "none":
            summary = "dropped"
        elif kind == Ev.TIMED_OUT:
            summary = "timed-out"
        elif kind == Ev.BROKEN:
            summary = "broken"
        elif kind == Ev.CLOSED and summary == "none":
            summary = "closed"
        elif kind == Ev.DGRAM_FORWARDED:
            pod = a
        elif kind == Ev.ANSWERED:
            summary, pod = "answered", a
        elif kind == Ev.DGRAM_DROPPED:
            summary = "lost"
    return summary, pod


def _result(sys: System, st: State, i: int, line: int, now: int, what: str, log: list[Event], f: int,
            step: Step, variant: str) -> StepResult:
    summary, pod = _summary(log)
    entry = None
    if f >= 0 and st.flows[f].entries:
        e = st.flows[f].entries[0]
        entry = {"state": SHORT[TcpState(e.state)], "dest": sys.pod_names[e.dest],
                 "expires_at": now + max(e.timer, 0)}
    dests = {}
    for p, d in enumerate(st.dests):
        if d.status != DestStatus.ABSENT:
            a, n = counters(st, p)
            dests[sys.pod_names[p]] = {"weight": d.weight, "deleted": d.status == DestStatus.TRASH,
                                       "active": a, "inactive": n}
    res = StepResult(i, line, now, what, outcome(sys, tuple(log)), summary,
                     sys.pod_names[pod] if pod >= 0 else None, entry, dests)
    exp = step.expect
    if isinstance(exp, dict):
        exp = exp.get(variant, exp.get("default"))
    if exp is not None:
        res.failures = _compare(exp, res)
    return res


def _compare(exp: Expect, res: StepResult) -> list[str]:
    bad: list[str] = []
    if exp.outcome is not None and exp.outcome != res.summary:
        bad.append(f"outcome {res.summary}, expected {exp.outcome}")
    if exp.pod is not None and exp.pod != res.pod:
        bad.append(f"pod reached {res.pod}, expected {exp.pod}")
    for field_name, want_entry in (("state", exp.entry_state), ("dest", exp.entry_dest)):
        got_entry = (res.entry or {}).get(field_name)
        if want_entry is not None and got_entry != want_entry:
            bad.append(f"entry {field_name} {got_entry}, expected {want_entry}")
    for key in ("weight", "active", "inactive"):
        want = getattr(exp, key)
        for name, val in (want or {}).items():
            got = res.dests.get(name, {}).get(key)
            if got != val:
                bad.append(f"{key} of {name} is {got}, expected {val}")
    for name in exp.dest_deleted or []:
        if not res.dests.get(name, {}).get("deleted"):
            bad.append(f"{name} is not deleted")
    return bad


def print_run(run: Run, console: Console, as_json: bool) -> None:
    if as_json:
        for s in run.steps:
            print(json.dumps({
                "scenario": run.scenario.data.name, "variant": run.variant, "step": s.index, "line": s.line,
                "time": s.time, "action": s.what, "outcome": s.summary, "pod": s.pod, "detail": s.outcome,
                "ipvs_entry": s.entry, "dests": s.dests, "ok": not s.failures, "failures": s.failures,
            }))
        return
    console.print(f"[bold]{run.scenario.data.name}[/] on {run.variant} ({run.config.label})")
    for s in run.steps:
        mark = "[red]FAIL[/]" if s.failures else ("[green]ok[/]" if s.failures == [] else "")
        console.print(f" {s.index:>2}. t={s.time:<4} {s.what:<12} -> {s.summary:<10} {mark}  {s.outcome}",
                      highlight=False)
        for f in s.failures:
            console.print(f"       [red]{f}[/] ({run.scenario.path}:{s.line})", highlight=False)
    console.print("all expectations met" if run.ok else "[red]some expectations failed[/]")
