"""Incident scenarios: YAML files of configuration and steps, replayed through the model.

Read with ruamel.yaml (which keeps line numbers) and validated with pydantic (strict types: a bare 1.30
is a number, so versions go in quotes), then checked for what types cannot say: names that must exist
(flows within config.clients x config.ports, pods, variants keying expectations), values that must agree
(config.kernel with config.variant, steps and outcomes with the protocol) and the limits below. Every
problem is one UserError `FILE:LINE: place: what was expected` (exit 2). Between steps, timers that fall
due fire in a fixed order, so a scenario's run is deterministic.

Limits: a `wait` of at most 30 days (MAX_WAIT), and all of a scenario's waits together at most that;
persistence at most 86400 s (Kubernetes' limit); ipvs_timeouts at most 2147483 s (the kernel's INT_MAX / HZ);
grace_period at most 30 days; weights 0..65535; sysctls within model.sysctls.SYSCTL_RANGES; at most 16 pods.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag
from pydantic.fields import FieldInfo
from rich.console import Console

from ipvs_verify.errors import UserError
from ipvs_verify.limits import (
    MAX_CT_TIMEOUT,
    MAX_GRACE,
    MAX_IPVS_TIMEOUT,
    MAX_PERSISTENCE,
    MAX_PODS,
    MAX_WAIT,
    MAX_WEIGHT,
)
from ipvs_verify.model.config import Config, Scope, Timing, make_config
from ipvs_verify.model.events import SF_POD_DEAD, Ev, Event
from ipvs_verify.model.kube_proxy import UnknownKubeProxy, kube_proxy_version
from ipvs_verify.model.state import DestStatus, Neigh, Plan, PodPhase, Sock, State, counters
from ipvs_verify.model.sysctls import SYSCTL_RANGES
from ipvs_verify.model.system import Act, Action, System, replay_system
from ipvs_verify.model.tcp_states import SHORT, TcpState
from ipvs_verify.model.variants import VARIANTS, Feature, UnknownKernel, resolve_variant, variant_for_kernel
from ipvs_verify.presentation.trace import CLOSER_BY_NAME, outcome
from ipvs_verify.yaml_input import (
    as_plain,
    first_problem,
    got,
    line_of,
    model_in,
    parse_yaml,
    read_text,
    token_at,
    validate,
)

OUTCOMES = ("connected", "refused", "no-route", "dropped", "queued", "challenged", "timed-out", "broken", "closed",
            "addr-not-available", "answered", "lost", "none")
PROTOCOL_OUTCOMES = {  # what _summary can say for a service of each protocol (datapath.py's events)
    "tcp": ("connected", "refused", "no-route", "dropped", "queued", "lost", "challenged", "timed-out", "broken",
            "closed", "addr-not-available", "none"),
    "udp": ("answered", "lost", "no-route", "refused", "none"),
}
TCP_ENTRY_STATES = tuple(SHORT[s] for s in TcpState if s != TcpState.NORMAL)
NEIGH_STATES = tuple(n.name.lower() for n in Neigh)  # model/state.py Neigh: none, live, stale, probing, incomplete
UDP_ENTRY_STATES = (SHORT[TcpState.NORMAL],)

# The limits a scenario is checked against (each named in the message that enforces it).
POD_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a lowercase DNS label, as Kubernetes names pods
FLOW_NAME = re.compile(r"client-([1-9][0-9]*):port-([1-9][0-9]*)")
SYSCTL_WHAT = {"conn_reuse_mode": "an integer 0..3 (a bitmap; the kernel's default is 1)"} | {
    name: "0 or 1" for name in SYSCTL_RANGES if name != "conn_reuse_mode"}
FLOW = "a flow 'client-C:port-P' (C counts config.clients, P config.ports)"
POD = "a pod name from config.pods or config.spare_pods"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ScenarioConfig(Strict):
    variant: str | None = Field(default=None, description="a kernel variant (" + ", ".join(VARIANTS) + ") or a kernel "
                                "version in quotes (e.g. \"4.19.140\")")
    kernel: str | None = Field(default=None, description="a kernel version in quotes, e.g. \"5.4.163\" (the version "
                               "kube-proxy reads; it must map to config.variant)")
    kube_proxy: str = Field(default="1.30", description="a kube-proxy release in quotes, e.g. \"1.30\" or \"1.14.0\"")
    sysctls: dict[Literal["conn_reuse_mode", "conntrack", "expire_nodest_conn", "expire_quiescent_template",
                          "conn_reuse_old_conntrack"], int] = Field(
        default_factory=dict, description="a mapping of sysctl name to value: " + "; ".join(
            f"{k} {v}" for k, v in SYSCTL_WHAT.items()))
    pods: list[str] = Field(default_factory=lambda: ["a", "b"], min_length=1, description=(
        "a list of at least one pod name (lowercase letters, digits and '-'), running at the start"))
    spare_pods: list[str] = Field(default_factory=list, description=(
        "a list of pod names (lowercase letters, digits and '-') that add-pod may start"))
    clients: int = Field(default=1, ge=1, le=8, description="an integer 1..8 (client addresses)")
    ports: int = Field(default=1, ge=1, le=8, description="an integer 1..8 (ephemeral ports per client)")
    # the client binds its ports, as load testers do: a connect takes over the port's own TIME_WAIT
    bound_ports: bool = Field(default=False, description="true or false")
    grace_period: int = Field(default=30, ge=0, le=MAX_GRACE, description=f"whole seconds 0..{MAX_GRACE}")
    nf_conntrack: bool = Field(default=True, description="true or false")
    # the node's FORWARD drops what conntrack finds INVALID (kube-proxy's iptables mode, Calico): model/config.py
    invalid_drop: bool = Field(default=False, description="true or false")
    # how the node reaches its pods: a /32 route per pod, or a bridge with a subnet route (model/config.py)
    pod_network: Literal["routed", "bridge"] = Field(default="routed", description="routed or bridge")
    protocol: Literal["tcp", "udp"] = Field(default="tcp", description="tcp or udp")  # udp clients use `datagram` steps
    # sessionAffinity ClientIP: the persistent service's timeout (s)
    persistence: int = Field(default=0, ge=0, le=MAX_PERSISTENCE, description=(
        f"whole seconds 0..{MAX_PERSISTENCE} (sessionAffinity ClientIP's timeout; 0: none)"))
    # kube-proxy --ipvs-scheduler; sh's flags (ipvsadm -b sh-fallback,sh-port) follow its name
    scheduler: Literal["rr", "lc", "wlc", "sh", "sh-fallback", "sh-port", "sh-fallback-port"] = Field(
        default="rr", description="one of: rr, lc, wlc, sh, sh-fallback, sh-port, sh-fallback-port")
    # ipvsadm --set TCP TCPFIN UDP (kube-proxy --ipvs-tcp-timeout, --ipvs-tcpfin-timeout, --ipvs-udp-timeout):
    # the only timeouts IP_VS_SO_SET_TIMEOUT changes (ESTABLISHED, FIN_WAIT, UDP); 0 leaves one as it is
    ipvs_timeouts: dict[Literal["tcp", "tcpfin", "udp"], Annotated[int, Field(ge=0, le=MAX_IPVS_TIMEOUT)]] = Field(
        default_factory=dict, description=f"a mapping of tcp, tcpfin or udp to whole seconds 0..{MAX_IPVS_TIMEOUT} "
        "(0 leaves that timeout as it is)")


class Expect(Strict):
    outcome: Literal[OUTCOMES] | None = Field(  # type: ignore[valid-type]
        None, description="one of: " + ", ".join(OUTCOMES))
    pod: str | None = Field(default=None, description=POD + " (the pod reached)")
    entry_state: str | None = Field(default=None, description="an IPVS entry state: one of " + ", ".join(
        TCP_ENTRY_STATES + UDP_ENTRY_STATES))  # newest IPVS entry of the step's flow
    entry_dest: str | None = Field(default=None, description=POD + " (the dest of the flow's newest IPVS entry)")
    weight: dict[str, Annotated[int, Field(ge=0, le=MAX_WEIGHT)]] | None = Field(
        default=None, description=f"a mapping of pod name to weight 0..{MAX_WEIGHT}")
    active: dict[str, Annotated[int, Field(ge=0)]] | None = Field(
        default=None, description="a mapping of pod name to a count (ActiveConn), 0 or more")
    inactive: dict[str, Annotated[int, Field(ge=0)]] | None = Field(
        default=None, description="a mapping of pod name to a count (InActConn), 0 or more")
    dest_deleted: list[str] | None = Field(default=None, description="a list of pod names whose real server is deleted")
    neighbour: dict[str, Literal[NEIGH_STATES]] | None = Field(  # type: ignore[valid-type]
        default=None, description="bridge pod network: a mapping of destroyed pod name to the node's neighbour "
        "entry for its address, one of: " + ", ".join(NEIGH_STATES))


EXPECT_KEYS = tuple(Expect.model_fields)
VARIANT_KEYS = (*VARIANTS, "default")


def _expect_form(v: Any) -> str:
    """One expectation for every variant, or a mapping of variant name (or `default`) to one."""
    if isinstance(v, dict) and v and not any(k in Expect.model_fields for k in v):
        return "per_variant"
    return "one"


ExpectField = Annotated[
    Annotated[Expect, Tag("one")]
    | Annotated[dict[Literal[VARIANT_KEYS], Expect], Tag("per_variant")],  # type: ignore[valid-type]
    Discriminator(_expect_form),
]


class Step(Strict):
    connect: str | None = Field(default=None, description=FLOW)  # "client-1:port-1" (a long-lived connection)
    request: str | None = Field(default=None, description=FLOW)  # a short request (connect + close)
    send: str | None = Field(default=None, description=FLOW)
    close: str | None = Field(default=None, description=FLOW)
    # the client host loses its established connection without a packet and may reuse the port at once
    client_crash: str | None = Field(default=None, alias="client-crash", description=FLOW)
    datagram: str | None = Field(default=None, description=FLOW)  # UDP: one datagram from this client port, answered
    # who closes first; reset: the client aborts (SO_LINGER 0: a RST, no TIME_WAIT)
    closer: Literal["client", "server", "reset"] = Field(default="client",
                                                         description="client, server or reset (who closes first)")
    wait: int | None = Field(default=None, ge=0, le=MAX_WAIT, description=f"whole seconds 0..{MAX_WAIT} (30 days)")
    # endpoint removed, pod terminating
    delete_pod: str | None = Field(default=None, alias="delete-pod", description=POD)
    add_pod: str | None = Field(default=None, alias="add-pod", description=POD)  # endpoint added
    destroy_pod: str | None = Field(default=None, alias="destroy-pod", description=POD)  # the terminating pod's exit
    crash_pod: str | None = Field(default=None, alias="crash-pod", description=POD)  # dies before kube-proxy knows
    endpoint_gone: str | None = Field(default=None, alias="endpoint-gone", description=POD)
    sync: bool | None = Field(default=None, description="true (run kube-proxy's pending sync now)")
    # with sync: a connect from this flow between deleteRsFunc's read of a real server's counters and its delete
    window: str | None = Field(default=None, description=FLOW)
    check: bool | None = Field(default=None, description="true (wait for the next graceful-deletion check)")
    set_weight: str | None = Field(default=None, alias="set-weight", description=POD)
    weight: int | None = Field(default=None, ge=0, le=MAX_WEIGHT, description=f"an integer 0..{MAX_WEIGHT}")
    delete_dest: str | None = Field(default=None, alias="delete-dest", description=POD)
    add_dest: str | None = Field(default=None, alias="add-dest", description=POD)
    # a confirmed conntrack entry for this flow (SYN_SENT, unreplied) whose reply tuple names reply_from's pod, as a
    # failed connect leaves one and K41, K310 and KT17 then reschedule past it (the harness: `conntrack -I`)
    conntrack_insert: str | None = Field(default=None, alias="conntrack-insert", description=FLOW)
    reply_from: str | None = Field(default=None, description=POD + " (the pod the entry's reply tuple names)")
    timeout: int | None = Field(default=None, ge=1, le=MAX_CT_TIMEOUT, description=(
        f"whole seconds 1..{MAX_CT_TIMEOUT} (the entry's timeout; SYN_SENT's is 120)"))
    expect: ExpectField | None = Field(  # per variant name, "default", or one for all
        None, description="a mapping of expectations (" + ", ".join(EXPECT_KEYS) + "), or of variant names "
        "(and default) to such mappings")

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    @property
    def kind(self) -> str:
        """The step's one kind, as the file spells it (delete-pod)."""
        return next(_key_name(Step, f) for f in STEP_KINDS if getattr(self, f) is not None)


MODIFIERS = ("closer", "weight", "expect", "window", "reply_from", "timeout")  # what a step kind may carry
STEP_KINDS = tuple(f for f in Step.model_fields if f not in MODIFIERS)
FLOW_KINDS = ("connect", "request", "send", "close", "datagram", "client_crash")
TCP_KINDS = ("connect", "request", "send", "close", "client_crash")


class ConformanceOptions(Strict):
    """Options for `ipvs-verify conformance` (the real-kernel run); the model ignores them."""

    # its real waits are too long for the default suite (e.g. TIME_WAIT expiry)
    slow: bool = Field(default=False, description="true or false")
    # the kernel contradicts an expectation: why (pytest xfails it)
    known_mismatch: str | None = Field(default=None, description="a string: why the kernel contradicts an expectation")


class ScenarioFile(Strict):
    name: str = Field(min_length=1, description="a non-empty string (the scenario's title)")
    description: str = Field("", description="a string")
    config: ScenarioConfig
    steps: list[Step] = Field(min_length=1, description="a list of at least one step")
    conformance: ConformanceOptions = Field(default_factory=lambda: ConformanceOptions())


MODEL_WHAT: dict[type[BaseModel], str] = {
    ScenarioFile: "a mapping with name, config and steps",
    ScenarioConfig: "a mapping of settings (" + ", ".join(ScenarioConfig.model_fields) + ")",
    Step: "a mapping with one step kind, e.g. `request: client-1:port-1` or `wait: 5`",
    Expect: "a mapping of expectations (" + ", ".join(EXPECT_KEYS) + "), or of variant names (and default) "
            "to such mappings",
    ConformanceOptions: "a mapping of " + ", ".join(ConformanceOptions.model_fields),
}


@dataclass
class Scenario:
    path: Path
    data: ScenarioFile
    lines: list[int]  # line of each step

    @property
    def variant(self) -> str:
        return self.data.config.variant or self.data.config.kernel or "K516"


# ---------------------------------------------------------------------- reading and checking
def _key_name(model: type[BaseModel], field_name: str) -> str:
    return model.model_fields[field_name].alias or field_name


def _field_named(model: type[BaseModel], key: Any) -> str | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return name
    return None


@dataclass
class _Site:
    """What a location in the file points at, by the schema."""

    model: type[BaseModel] | None  # the model its value must be (Step for steps.0), if any
    field_name: str | None  # the innermost field it runs through (wait for steps.0.wait)
    info: FieldInfo | None  # that field's schema entry
    at_field: bool  # it ends at that field's own key, not inside its value


def _site(loc: tuple[Any, ...]) -> _Site:
    model: type[BaseModel] | None = ScenarioFile
    field_name: str | None = None
    info: FieldInfo | None = None
    at_field = False
    for key in loc:
        name = _field_named(model, key) if model is not None else None
        if name is not None and model is not None:
            field_name, info, at_field = name, model.model_fields[name], True
            model = model_in(info.annotation)
        else:
            at_field = False
    return _Site(model, field_name, info, at_field)


_POD_NAME_WHAT = "a pod name of lowercase letters, digits and '-'"
_VALUE_WHAT: dict[str, Any] = {
    "sysctls": lambda key: SYSCTL_WHAT.get(key, "a sysctl value"),
    "ipvs_timeouts": lambda _key: f"whole seconds 0..{MAX_IPVS_TIMEOUT} (0 leaves that timeout as it is)",
    "pods": lambda _key: _POD_NAME_WHAT,
    "spare_pods": lambda _key: _POD_NAME_WHAT,
    "weight": lambda _key: f"a weight 0..{MAX_WEIGHT}",
    "active": lambda _key: "a count (ActiveConn), 0 or more",
    "inactive": lambda _key: "a count (InActConn), 0 or more",
    "dest_deleted": lambda _key: "a pod name",
}


def _expected(loc: tuple[Any, ...], shape_error: bool = False) -> str:
    """What the file should have at `loc`, from the schema's descriptions."""
    site = _site(loc)
    description = site.info.description if site.info is not None else None
    inner = _clean_loc(loc)
    if not site.at_field and site.field_name in _VALUE_WHAT and len(inner) >= 2 and inner[-2] == _key_name(
            ScenarioConfig if site.field_name in ("sysctls", "ipvs_timeouts", "pods", "spare_pods") else Expect,
            site.field_name):
        return _VALUE_WHAT[site.field_name](inner[-1])  # one value of a mapping or list field
    if site.model in MODEL_WHAT and (shape_error or not site.at_field or description is None):
        return MODEL_WHAT[site.model]  # type: ignore[index]
    return description or "a valid value"


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Without pydantic's own parts: the union tag after `expect` and the `[key]` of a key error."""
    out: list[Any] = []
    for i, key in enumerate(loc):
        if key == "[key]" or (key in ("one", "per_variant") and i > 0 and loc[i - 1] == "expect"):
            continue
        out.append(key)
    return tuple(out)


def _place(loc: tuple[Any, ...], raw: Any = None) -> str:
    """steps.2.expect.K46.outcome -> 'step 3, expect.K46.outcome'; config.pods.1 -> 'config.pods #2'."""
    loc = _clean_loc(loc)
    head = ""
    node = raw  # followed along, to tell a list's index from a mapping's number key
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = raw.get("steps") if isinstance(raw, dict) else None
        node = steps[loc[1]] if isinstance(steps, list) and loc[1] < len(steps) else None
        head, loc = f"step {loc[1] + 1}", loc[2:]
    rest = ""
    for key in loc:
        if isinstance(key, int) and (node is None or isinstance(node, list)):
            rest += f" #{key + 1}"
        else:
            rest += f".{key}" if rest else str(key)
        try:
            node = node[key] if node is not None else None
        except (KeyError, IndexError, TypeError):
            node = None
    return ", ".join(x for x in (head, rest) if x) or "the top level"


def _message(err: Any, raw: Any, text: str) -> tuple[tuple[Any, ...], str]:
    """A pydantic error as (location, what was expected)."""
    loc = tuple(err["loc"])
    kind = err["type"]
    model = _site(loc).model
    if kind == "missing":
        return loc, f"missing: expected {_expected(loc)}"
    if kind == "extra_forbidden":
        key = loc[-1]
        if model is Expect:
            return loc, (f"unknown key '{key}' (expected one of the expectation keys: {', '.join(EXPECT_KEYS)}; "
                         "per-variant expectations are a mapping of variant names and default only)")
        if model is Step:
            kinds = ", ".join(_key_name(Step, f) for f in STEP_KINDS)
            return loc, f"unknown key '{key}' (expected one step kind: {kinds}; or {', '.join(MODIFIERS)})"
        keys = ", ".join(_key_name(model, f) for f in model.model_fields) if model is not None else ""
        return loc, f"unknown key '{key}' (expected one of: {keys})"
    if loc[-1:] == ("[key]",):
        key = loc[-2]
        name = _site(loc[:-1]).field_name
        if model is Expect:
            return loc, (f"'{key}' is neither an expectation key ({', '.join(EXPECT_KEYS)}) nor a variant name "
                         f"({', '.join(VARIANT_KEYS)})")
        if name == "sysctls":
            return loc, f"unknown sysctl '{key}' (expected one of: {', '.join(SYSCTL_RANGES)})"
        if name == "ipvs_timeouts":
            return loc, f"unknown timeout '{key}' (expected one of: tcp, tcpfin, udp)"
        return loc, f"expected a key that is a name, got {got(key)}"
    if kind == "invalid_key":
        return loc, f"expected a key that is a name, got {got(loc[-1])}"
    value = err.get("input")
    hint = ""
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        token = token_at(raw, _clean_loc(loc), text)
        hint = f" (write it in quotes: \"{token or value}\")"
    shape = kind in ("model_type", "model_attributes_type")
    return loc, f"expected {_expected(loc, shape)}, got {got(value)}{hint}"


class _Fail:
    """Raises the one-line error of a scenario file at a place."""

    def __init__(self, path: Path, raw: Any) -> None:
        self.path = path
        self.raw = raw

    def line(self, loc: tuple[Any, ...]) -> int:
        return line_of(self.raw, loc, ("one", "per_variant", "[key]")) or 1

    def __call__(self, loc: tuple[Any, ...], what: str) -> UserError:
        return UserError(f"{self.path}:{self.line(loc)}: {_place(loc, self.raw)}: {what}")


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file; any problem is a UserError `FILE:LINE: place: what was expected`."""
    text = read_text(path, "a scenario YAML file")
    raw = parse_yaml(path, text, "a mapping with name, config and steps")
    fail = _Fail(path, raw)
    data, problems = validate(ScenarioFile, as_plain(raw),
                              lambda loc: f"expected {_expected(loc)}, got nothing (an empty value)",
                              lambda err: _message(err, raw, text))
    if problems:
        raise fail(*first_problem(problems, fail.line))
    assert data is not None
    _check(data, fail)
    steps = raw["steps"]
    lines = [steps.lc.item(i)[0] + 1 for i in range(len(steps))]
    return Scenario(path, data, lines)


def check_variant_option(name: str) -> str:
    """`replay --variant NAME`: the variant's name, or a UserError that blames the option."""
    try:
        return resolve_variant(name).name
    except UnknownKernel as e:
        raise UserError(f"--variant: {e}") from None


def _check(data: ScenarioFile, fail: _Fail) -> None:
    """What the types alone do not say: names that must exist, values that must agree, steps that must fit."""
    c = data.config
    variant = None
    if c.variant is not None:
        try:
            variant = resolve_variant(c.variant)
        except UnknownKernel as e:
            raise fail(("config", "variant"), str(e)) from None
    if c.kernel is not None:
        try:
            kernel_variant = variant_for_kernel(c.kernel)
        except UnknownKernel as e:
            raise fail(("config", "kernel"), str(e)) from None
        if variant is not None and kernel_variant is not variant:
            raise fail(("config", "kernel"), f"kernel {c.kernel} is variant {kernel_variant.name}, but "
                       f"config.variant is {variant.name} (expected a kernel of {variant.name}: "
                       f"{variant.kernels}; or give only one of them)")
        variant = kernel_variant
    variant = variant or resolve_variant("K516")
    try:
        kube_proxy_version(c.kube_proxy)
    except UnknownKubeProxy as e:
        raise fail(("config", "kube_proxy"), str(e)) from None
    seen: dict[str, tuple[Any, ...]] = {}
    for key in ("pods", "spare_pods"):
        for i, name in enumerate(getattr(c, key)):
            if not POD_NAME.fullmatch(name):
                raise fail(("config", key, i), f"expected a pod name of lowercase letters, digits and '-' "
                           f"(at most 63, starting and ending with a letter or digit), got {got(name)}")
            if name in seen:
                raise fail(("config", key, i), f"pod '{name}' is named twice (also at {_place(seen[name])}); "
                           "expected distinct pod names")
            seen[name] = ("config", key, i)
    if len(seen) > MAX_PODS:
        raise fail(("config", "spare_pods" if c.spare_pods else "pods"),
                   f"expected at most {MAX_PODS} pods in all (pods and spare_pods), got {len(seen)}")
    pods = tuple(seen)
    for key, value in c.sysctls.items():
        lo, hi = SYSCTL_RANGES[key]
        if not lo <= value <= hi:
            raise fail(("config", "sysctls", key), f"expected {SYSCTL_WHAT[key]}, got {got(value)}")
    if "conn_reuse_mode" in c.sysctls and not variant.has(Feature.REUSE):
        raise fail(("config", "sysctls", "conn_reuse_mode"), f"{variant.name} ({variant.kernels}) has no "
                   "conn_reuse_mode (it came in 4.1, d752c3645717); expected a variant from K41 on")
    if "conn_reuse_old_conntrack" in c.sysctls and not variant.has(Feature.TENCENT_OLD_CT):
        raise fail(("config", "sysctls", "conn_reuse_old_conntrack"), f"only the TencentOS kernel (KT17) has "
                   f"conn_reuse_old_conntrack, not {variant.name}")
    if c.invalid_drop and not c.nf_conntrack:
        raise fail(("config", "invalid_drop"), "a rule matching --ctstate INVALID is a conntrack user; expected "
                   "nf_conntrack: true with invalid_drop: true")
    waited = 0
    for i, step in enumerate(data.steps):
        _check_step(step, i, c, pods, fail)
        if step.wait is not None:
            waited += step.wait
            if waited > MAX_WAIT:
                raise fail(("steps", i, "wait"), f"the waits add up to {waited} s here; expected at most "
                           f"{MAX_WAIT} s (30 days) in all")


def _check_step(step: Step, i: int, c: ScenarioConfig, pods: tuple[str, ...], fail: _Fail) -> None:
    at: tuple[Any, ...] = ("steps", i)
    kinds = [f for f in STEP_KINDS if getattr(step, f) is not None]
    every = ", ".join(_key_name(Step, f) for f in STEP_KINDS)
    if not kinds:
        raise fail(at, f"expected one step kind ({every}), got none")
    if len(kinds) > 1:
        names = [_key_name(Step, f) for f in kinds]
        raise fail((*at, names[1]), f"a step does one thing: expected one step kind, got {' and '.join(names)} "
                   "(write one step each)")
    kind = kinds[0]
    key = _key_name(Step, kind)
    value = getattr(step, kind)
    if value is False:  # sync: false, check: false
        raise fail((*at, key), f"expected {_expected((*at, key))}, got false")

    def known_pod(loc: tuple[Any, ...], name: str) -> None:
        if name not in pods:
            raise fail(loc, f"unknown pod '{name}' (expected one of: {', '.join(pods)})")

    def known_flow(loc: tuple[Any, ...], name: str) -> None:
        m = FLOW_NAME.fullmatch(name)
        if not m or not (int(m[1]) <= c.clients and int(m[2]) <= c.ports):
            raise fail(loc, f"unknown flow '{name}' (expected client-C:port-P with C in 1..{c.clients} "
                       f"(config.clients) and P in 1..{c.ports} (config.ports))")

    if kind in FLOW_KINDS or kind == "conntrack_insert":
        known_flow((*at, key), value)
        if c.protocol == "udp" and kind in TCP_KINDS:
            raise fail((*at, key), "a TCP step in a UDP service (config.protocol: udp); expected datagram")
        if c.protocol == "tcp" and kind == "datagram":
            raise fail((*at, key), "a UDP step in a TCP service; expected connect, request, send or close (or "
                       "config.protocol: udp)")
    elif isinstance(value, str):
        known_pod((*at, key), value)
    if "closer" in step.model_fields_set and kind not in ("request", "close"):
        raise fail((*at, "closer"), f"only a request or a close step has a closer, not a {key} step")
    if step.weight is not None and kind not in ("set_weight", "add_dest"):
        raise fail((*at, "weight"), f"only a set-weight or an add-dest step has a weight, not a {key} step")
    if (step.reply_from is not None or step.timeout is not None) != (kind == "conntrack_insert"):
        if kind == "conntrack_insert":
            raise fail(at, "a conntrack-insert step names its entry: expected reply_from (a pod) and timeout (s)")
        raise fail((*at, "reply_from" if step.reply_from is not None else "timeout"),
                   f"only a conntrack-insert step has reply_from and timeout, not a {key} step")
    if kind == "conntrack_insert":
        if step.reply_from is None or step.timeout is None:
            raise fail(at, "a conntrack-insert step expects both reply_from (a pod) and timeout (s)")
        known_pod((*at, "reply_from"), step.reply_from)
        if c.protocol != "tcp":
            raise fail((*at, key), "a conntrack-insert step makes a TCP entry; expected config.protocol: tcp")
        if not c.nf_conntrack:
            raise fail((*at, key), "a conntrack-insert step needs conntrack; expected config.nf_conntrack: true")
    if step.window is not None:
        if kind != "sync":
            raise fail((*at, "window"), f"only a sync step has a window (a connect between kube-proxy's read of a "
                       f"real server and its delete), not a {key} step")
        known_flow((*at, "window"), step.window)
        if c.protocol == "udp":
            raise fail((*at, "window"), "a window connects over TCP; expected config.protocol: tcp")
    exp = step.expect
    if exp is None:
        return
    items = [((*at, "expect"), exp)] if isinstance(exp, Expect) else [
        ((*at, "expect", name), e) for name, e in exp.items()]
    for loc, e in items:
        if not e.model_fields_set:
            raise fail(loc, f"expected at least one of: {', '.join(EXPECT_KEYS)}")
        valid = PROTOCOL_OUTCOMES[c.protocol]
        if e.outcome is not None and e.outcome not in valid:
            raise fail((*loc, "outcome"), f"'{e.outcome}' is not an outcome of a {c.protocol.upper()} service "
                       f"(expected one of: {', '.join(valid)})")
        for name in ("pod", "entry_dest"):
            if getattr(e, name) is not None:
                known_pod((*loc, name), getattr(e, name))
        if e.entry_state is not None:
            states = UDP_ENTRY_STATES if c.protocol == "udp" else TCP_ENTRY_STATES
            if e.entry_state not in states:
                raise fail((*loc, "entry_state"), f"unknown entry state '{e.entry_state}' for a "
                           f"{c.protocol.upper()} service (expected one of: {', '.join(states)})")
        for name in ("entry_state", "entry_dest"):
            if getattr(e, name) is not None and kind not in FLOW_KINDS:
                flows = ", ".join(k.replace("_", "-") for k in FLOW_KINDS)
                raise fail((*loc, name), f"only a step of a flow ({flows}) has an entry to check, not a {key} step")
        for name in ("weight", "active", "inactive"):
            for pod in getattr(e, name) or {}:
                known_pod((*loc, name, pod), pod)
        for j, pod in enumerate(e.dest_deleted or []):
            known_pod((*loc, "dest_deleted", j), pod)


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
    neigh: dict[str, str] = field(default_factory=dict)  # bridge: destroyed pod -> its neighbour entry (Neigh)


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
    if variant != sc.variant:
        check_variant_option(variant)  # the file's own was checked when it was read
    try:
        return make_config(
            variant, c.kube_proxy, {str(k): v for k, v in c.sysctls.items()},
            Scope(clients=c.clients, ports=c.ports, pods=tuple(c.pods), spare_pods=tuple(c.spare_pods),
                  changes=0, crashes=False, long_lived=True, protocol=c.protocol, persistence=c.persistence,
                  client_crashes=True, client_resets=True, bound_ports=c.bound_ports, kp_window=True),
            _timing(c), kernel=c.kernel if variant == sc.variant else None,
            nf_conntrack=c.nf_conntrack, scheduler=c.scheduler, pod_network=c.pod_network,
            invalid_drop=c.invalid_drop,
        )
    except (UnknownKernel, UnknownKubeProxy) as e:  # not expected: load_scenario checked them
        raise UserError(f"{sc.path}: config: {e}") from None


def _timing(c: ScenarioConfig) -> Timing:
    return Timing(grace_period=c.grace_period).with_set_timeouts({str(k): v for k, v in c.ipvs_timeouts.items()})


# A SYN retransmission due at the instant a neighbour resolution fails goes first: on the real kernel it left
# before the ICMP of the failure reached the client, and passed IPVS again (scenarios/conformance/B02-B08)
_DUE_ORDER = (Act.FLUSH, Act.EXPIRE, Act.CT_EXPIRE, Act.TEMPLATE_EXPIRE, Act.SYNC, Act.CHECK, Act.GRACE_END,
              Act.NEIGH_STALE, Act.CLIENT_TIMER, Act.NEIGH_FAILED)


def _fire_due(sys: System, st: State, contacted: set[int], log: list[Event]) -> State:
    """Fire every due timer, in a fixed order (expire-now and the nodest flush first)."""
    while True:
        due = [a for a in sys.actions(st) if a[0] in _DUE_ORDER and not (a[0] in (Act.SYNC, Act.CHECK) and a[1])
               and _is_due(sys, st, a, contacted)]
        if not due:
            return st
        due.sort(key=lambda a: (_DUE_ORDER.index(Act(a[0])), a[1], a[2]))
        st, ev = sys.step(st, due[0])
        _note_contacts(ev, contacted)
        log.extend(ev)


def _is_due(sys: System, st: State, a: Action, contacted: set[int]) -> bool:
    kind = a[0]
    if kind == Act.SYNC:
        return st.sync_timer == 0
    if kind == Act.NEIGH_STALE:  # at any moment up to its deadline; a scenario takes the deadline
        return st.pods[a[1]].timer == 0
    if kind == Act.GRACE_END:
        return a[2] == _neigh_at_destroy(sys, a[1], contacted)
    return True  # in exact timing every other timer action is offered only when due


def _neigh_at_destroy(sys: System, p: int, contacted: set[int]) -> Neigh:
    """The node's neighbour entry for a pod it destroys: live if the node had resolved its address (it forwarded
    a packet to the pod in this scenario; the harness runs no kubelet probes), none if not."""
    return Neigh.LIVE if sys.neigh_tracked and p in contacted else Neigh.NONE


def _note_contacts(events: tuple[Event, ...], contacted: set[int]) -> None:
    for kind, _f, p, flags in events:
        if (kind == Ev.SYN_FORWARDED or kind == Ev.DGRAM_FORWARDED) and not flags & SF_POD_DEAD:
            contacted.add(p)


def _advance(sys: System, st: State, now: int, seconds: int, log: list[Event],
             contacted: set[int]) -> tuple[State, int]:
    left = seconds
    st = _fire_due(sys, st, contacted, log)
    while left > 0:
        d = min(left, sys._next_deadline(st))
        st, _ = sys.step(st, (Act.WAIT, d, 0))
        now += d
        left -= d
        st = _fire_due(sys, st, contacted, log)
    return st, now


def run_scenario(sc: Scenario, variant: str) -> Run:
    """Run on a variant (a name or a kernel version; not the file's own: a UserError blames `--variant`)."""
    cfg = scenario_config(sc, variant)
    sys = replay_system(cfg, "exact")  # past a read/delete window (a sync step's window) the scenario goes on
    st = sys.initial_states()[0]
    now = 0
    contacted: set[int] = set()  # pods whose address the node has resolved (see _neigh_at_destroy)
    flows = {sys.flow_name(f): f for f in range(sys.n_flows)}
    pods = {n: i for i, n in enumerate(sys.pod_names)}
    results: list[StepResult] = []
    for i, (step, line) in enumerate(zip(sc.data.steps, sc.lines, strict=True), 1):
        where = f"{sc.path}:{line}: step {i}, {step.kind}"  # the kinds were checked when it was read

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
        set_fields = [k for k, v in step.model_dump(exclude=set(MODIFIERS)).items()
                      if v is not None]
        if len(set_fields) != 1:
            raise UserError(f"{where}: a step does exactly one thing (got {', '.join(set_fields) or 'nothing'})")
        what = set_fields[0]
        action: Action | None = None
        if step.connect or step.request:
            flow_of_step = flow(step.connect or step.request or "")
            plan = Plan.HOLD if step.connect else CLOSER_BY_NAME[step.closer]
            action = (Act.CONNECT, flow_of_step, 0) if step.connect else (Act.REQUEST, flow_of_step, plan)
        elif step.send:
            flow_of_step = flow(step.send)
            action = (Act.SEND, flow_of_step, 0)
        elif step.datagram:
            flow_of_step = flow(step.datagram)
            action = (Act.DATAGRAM, flow_of_step, 0)
        elif step.client_crash:
            flow_of_step = flow(step.client_crash)
            action = (Act.CLIENT_CRASH, flow_of_step, 0)
        elif step.close:
            flow_of_step = flow(step.close)
            action = (Act.CLOSE, flow_of_step, CLOSER_BY_NAME[step.closer])
        elif step.delete_pod:
            action = (Act.DELETE_POD, pod(step.delete_pod), 0)
        elif step.add_pod:
            action = (Act.ADD_POD, pod(step.add_pod), 0)
        elif step.destroy_pod:
            p = pod(step.destroy_pod)
            action = (Act.GRACE_END, p, _neigh_at_destroy(sys, p, contacted))
        elif step.crash_pod:
            p = pod(step.crash_pod)
            action = (Act.CRASH_POD, p, _neigh_at_destroy(sys, p, contacted))
        elif step.endpoint_gone:
            action = (Act.ENDPOINT_GONE, pod(step.endpoint_gone), 0)
        elif step.set_weight:
            action = (Act.SET_WEIGHT, pod(step.set_weight), step.weight if step.weight is not None else 0)
        elif step.delete_dest:
            action = (Act.DELETE_DEST, pod(step.delete_dest), 0)
        elif step.add_dest:
            action = (Act.ADD_DEST, pod(step.add_dest), step.weight if step.weight is not None else 1)
        if action is not None and action[0] in (Act.CONNECT, Act.REQUEST) and (
                st.flows[action[1]].client.sock == Sock.ORPHAN):
            # connect() fails EADDRNOTAVAIL at once, nothing on the wire: the orphaned FIN_WAIT1 socket has the
            # 4-tuple (inet_hashtables.c __inet_check_established); not a model action, the state is unchanged
            results.append(_result(sys, st, i, line, now, what, log, flow_of_step, step, cfg.variant.name,
                                   busy=True))
            continue
        if action is not None:
            _check_possible(sys, st, action, where, what)
            st, ev = sys.step(st, action)
            _note_contacts(ev, contacted)
            log.extend(ev)
            st = _fire_due(sys, st, contacted, log)
        elif step.wait is not None:
            st, now = _advance(sys, st, now, step.wait, log, contacted)
        elif step.conntrack_insert:
            flow_of_step = flow(step.conntrack_insert)
            st = _conntrack_insert(sys, st, flow_of_step, pod(step.reply_from or ""), step.timeout or 0, where)
        elif step.sync:
            if st.sync_timer < 0:
                raise UserError(f"{where}: kube-proxy has no pending sync (nothing changed); expected a change first")
            sync: Action = (Act.SYNC, 0, 0)
            if step.window:
                flow_of_step = flow(step.window)
                sync = _window_sync(sys, st, flow_of_step, where)
            st, ev = sys.step(st, sync)
            _note_contacts(ev, contacted)
            log.extend(ev)
            st = _fire_due(sys, st, contacted, log)
        elif step.check:
            st, now = _advance(sys, st, now, st.check_timer, log, contacted)
        results.append(_result(sys, st, i, line, now, what, log, flow_of_step, step, cfg.variant.name))
    return Run(sc, variant, cfg, results)


def _conntrack_insert(sys: System, st: State, f: int, p: int, timeout: int, where: str) -> State:
    """`conntrack -I`: a confirmed SYN_SENT entry for flow f whose reply tuple names pod p (ctnetlink_create_conntrack
    inserts it confirmed). It fails with EEXIST if the tuple has an entry, so the flow must have none, nor an IPVS
    entry whose expiry would kill it (the model would not know whose it is)."""
    fl = st.flows[f]
    if fl.entries or fl.ct_live or fl.client.sock != Sock.FREE:
        raise UserError(f"{where}: {sys.flow_name(f)} already has entries or a socket; expected a flow not used yet")
    ct = sys.ct_naming(p)
    return st._replace(flows=st.flows[:f] + (fl._replace(ct_live=ct, ct_timer=timeout),) + st.flows[f + 1:])


def _window_sync(sys: System, st: State, f: int, where: str) -> Action:
    """The sync with flow f's connect between deleteRsFunc's read of a real server and its delete."""
    pods = sys.window_pods(st, False)
    if len(pods) != 1:
        raise UserError(f"{where}: window: this sync reads and then deletes {len(pods)} real servers a connect could "
                        "reach (expected exactly one: delete one pod first)")
    connect = (Act.CONNECT, f, 0)
    if connect not in sys.actions(st):
        raise UserError(f"{where}: window: {sys.flow_name(f)} cannot connect now (is the port busy, in TIME_WAIT, or "
                        "connected?)")
    return (Act.SYNC, pods[0] + 1, sys.racers.index(connect))


def _check_possible(sys: System, st: State, a: Action, where: str, what: str) -> None:
    kind = a[0]
    if kind == Act.GRACE_END:
        if st.pods[a[1]].phase != PodPhase.TERMINATING:
            raise UserError(f"{where}: the pod is not terminating (expected delete-pod first, or crash-pod)")
        return
    if kind in (Act.CRASH_POD, Act.DELETE_POD, Act.ADD_POD):
        ok = (st.pods[a[1]].phase == PodPhase.RUNNING) if kind != Act.ADD_POD else (
            st.pods[a[1]].phase == PodPhase.ABSENT)
        if not ok:
            raise UserError(f"{where}: not possible for a pod that is {PodPhase(st.pods[a[1]].phase).name}")
        return
    if kind in (Act.SET_WEIGHT, Act.DELETE_DEST, Act.ADD_DEST):
        if not sys.enabled(st, a):
            raise UserError(f"{where}: the real server is not in a state that allows it")
        return
    if not sys.enabled(st, a):
        raise UserError(f"{where}: not possible now (is the port busy, in TIME_WAIT, or not connected?)")


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
        elif (kind == Ev.SYN_DROPPED or kind == Ev.REPLY_INVALID) and summary == "none":
            summary = "dropped"  # no answer reached the client (its SYN, or the pod's SYN-ACK, was dropped)
        elif kind == Ev.SYN_QUEUED and summary == "none":
            summary = "queued"  # bridge: the SYN waits on the neighbour resolution of a gone pod's address
        elif kind == Ev.SYN_LOST and summary == "none":
            summary = "lost"  # bridge: the SYN went out to a gone pod's old MAC (a live neighbour entry)
        elif kind == Ev.CHALLENGED and summary == "none":
            summary = "challenged"  # the pod's old socket answered with a challenge ACK; the client reset it
        elif kind == Ev.TIMED_OUT:
            summary = "timed-out"
        elif kind == Ev.BROKEN:
            summary = "broken"
        elif (kind == Ev.CLOSED or kind == Ev.ORPHANED) and summary == "none":
            summary = "closed"  # an orphan's close() has returned too: its FIN_WAIT1 socket lives on"
        elif kind == Ev.DGRAM_FORWARDED:
            pod = a
        elif kind == Ev.ANSWERED:
            summary, pod = "answered", a
        elif kind == Ev.DGRAM_DROPPED:
            summary = "lost"
    return summary, pod


def _result(sys: System, st: State, i: int, line: int, now: int, what: str, log: list[Event], f: int,
            step: Step, variant: str, busy: bool = False) -> StepResult:
    summary, pod = ("addr-not-available", -1) if busy else _summary(log)
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
    said = "connect() fails at once: EADDRNOTAVAIL (the client's orphaned socket holds the port)" if busy else (
        outcome(sys, tuple(log)))
    # bridge: the node's neighbour entry for each destroyed pod's address
    neigh = {sys.pod_names[p]: Neigh(q.neigh).name.lower() for p, q in enumerate(st.pods)
             if sys.neigh_tracked and q.phase == PodPhase.DESTROYED}
    res = StepResult(i, line, now, what, said, summary,
                     sys.pod_names[pod] if pod >= 0 else None, entry, dests, neigh=neigh)
    exp = step.expect
    if isinstance(exp, dict):  # keyed by variant name: `variant` is the one run (K46 for --variant 4.19.0)
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
    for name, want_neigh in (exp.neighbour or {}).items():
        got_neigh = res.neigh.get(name, "(not a destroyed pod on a bridge)")
        if got_neigh != want_neigh:
            bad.append(f"neighbour of {name} is {got_neigh}, expected {want_neigh}")
    return bad


def print_run(run: Run, console: Console, as_json: bool) -> None:
    if as_json:
        for s in run.steps:
            print(json.dumps({
                "scenario": run.scenario.data.name, "variant": run.variant, "step": s.index, "line": s.line,
                "time": s.time, "action": s.what, "outcome": s.summary, "pod": s.pod, "detail": s.outcome,
                "ipvs_entry": s.entry, "dests": s.dests, "neighbour": s.neigh, "ok": not s.failures,
                "failures": s.failures,
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
