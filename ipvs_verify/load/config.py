"""A load simulation's YAML file: its schema, the checks types cannot make, and the model configuration it names.

Read with ruamel.yaml (line numbers) and checked with pydantic (strict: a bare 1.30 is a number, so versions go in
quotes), then for what the types cannot say: the variant, kube-proxy release and patches must exist, the pod
changes must apply in order (a pod is deleted while it runs, added while absent), the port range must not be
upside down, the scheduler must let a connection's step be confined to its own flow (sim.py). Every problem is one
UserError `FILE:LINE: place: what was expected` (exit 2), as for scenario and patch files.

`LoadSpec` is the checked file; `model_config(spec)` the model's Config it simulates (make_config: the variant,
kube-proxy's start-up sysctls, the file's sysctls, then its patches).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ipvs_verify.errors import UserError
from ipvs_verify.model.actions import Act
from ipvs_verify.model.config import Config, Scope, make_config
from ipvs_verify.model.decision_points import PatchError
from ipvs_verify.model.kube_proxy import UnknownKubeProxy, kube_proxy_version
from ipvs_verify.model.patch import ModelPatch
from ipvs_verify.model.sysctls import SYSCTL_RANGES
from ipvs_verify.model.system import System
from ipvs_verify.model.variants import VARIANTS, UnknownKernel, resolve_variant, variant_for_kernel
from ipvs_verify.yaml_input import (
    as_plain,
    first_problem,
    got,
    line_of,
    model_in,
    parse_yaml,
    place,
    read_text,
    token_at,
    validate,
)

MAX_DURATION = 86_400  # one simulated day
MAX_RATE = 1_000_000  # connections per second (open loop)
MAX_WORKERS = 100_000
MAX_REPLICAS = 64
PORT_SELECTIONS = ("hint", "perturb")  # client_ports.py
SysctlName = Literal["conn_reuse_mode", "conntrack", "expire_nodest_conn", "expire_quiescent_template",
                     "conn_reuse_old_conntrack"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class LoadShape(Strict):
    mode: Literal["open", "closed"] = Field(description="open (a connection rate) or closed (workers that reconnect)")
    rate: float = Field(default=0.0, ge=0, le=MAX_RATE, description=f"connections per second, 0..{MAX_RATE} (open "
                        "loop)")
    arrivals: Literal["uniform", "poisson"] = Field(default="uniform", description="uniform or poisson (open loop)")
    workers: int = Field(default=0, ge=0, le=MAX_WORKERS, description=f"an integer 0..{MAX_WORKERS} (closed loop: "
                         "workers, each with one connection at a time)")
    hold: float = Field(default=0.0, ge=0, le=3600, description="seconds a connection stays open once connected, "
                        "0..3600 (0: the request is the handshake and the close, one model step)")
    think: float = Field(default=0.0, ge=0, le=3600, description="seconds a closed-loop worker waits between "
                         "connections, 0..3600")
    retry_after: float = Field(default=0.01, gt=0, le=3600, description="seconds a closed-loop worker waits after "
                               "a failed connection, more than 0 and at most 3600")
    closer: Literal["client", "server"] = Field(default="server", description="client or server (who closes first: "
                                                "a client that closes first keeps the port in TIME_WAIT 60 s)")


CLOSED_LOOP_NEEDS_TIME = ("expected hold or think above 0 for a closed loop (its workers would reconnect without "
                          "time passing)")


class Clients(Strict):
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS, description=f"an integer 1..{MAX_REPLICAS} (client "
                          "addresses; the load is spread evenly over them)")
    port_range: list[int] = Field(default_factory=lambda: [32768, 60999], min_length=2, max_length=2, description=(
        "two port numbers [low, high], 1..65535 (net.ipv4.ip_local_port_range; default 32768 60999)"))
    port_selection: Literal["hint", "perturb"] = Field(default="perturb", description="hint (Linux 4.6 .. the 2022 "
                                                       "fixes) or perturb (5.12+ and the 2022 stable updates)")


class Change(Strict):
    at: float = Field(ge=0, le=MAX_DURATION, description=f"seconds from the start, 0..{MAX_DURATION}")
    delete_pod: str | None = Field(default=None, alias="delete-pod", description="a pod name from pods")
    add_pod: str | None = Field(default=None, alias="add-pod", description="a pod name from spare_pods")
    crash_pod: str | None = Field(default=None, alias="crash-pod", description="a pod name")
    endpoint_gone: str | None = Field(default=None, alias="endpoint-gone", description="a crashed pod's name")


CHANGE_KINDS = {"delete_pod": Act.DELETE_POD, "add_pod": Act.ADD_POD, "crash_pod": Act.CRASH_POD,
                "endpoint_gone": Act.ENDPOINT_GONE}


class RollingUpdate(Strict):
    at: float = Field(ge=0, le=MAX_DURATION, description=f"seconds from the start, 0..{MAX_DURATION}")
    interval: float = Field(default=40.0, ge=0, le=MAX_DURATION, description="seconds between its steps (each adds "
                            "the next spare pod and deletes the next old one: maxSurge 1, maxUnavailable 0)")


class LoadFile(Strict):
    name: str = Field(min_length=1, description="a non-empty string (the run's title)")
    description: str = Field(default="", description="a string")
    seed: int = Field(default=1, ge=0, le=2**32 - 1, description="an integer 0..4294967295")
    duration: float = Field(gt=0, le=MAX_DURATION, description=f"simulated seconds, more than 0 and at most "
                            f"{MAX_DURATION}")
    variant: str = Field(default="K516", description="a kernel variant (" + ", ".join(VARIANTS) + ") or a kernel "
                         "version in quotes")
    kernel: str | None = Field(default=None, description="a kernel version in quotes (the one kube-proxy reads)")
    kube_proxy: str = Field(default="1.30", description="a kube-proxy release in quotes, e.g. \"1.30\"")
    sysctls: dict[SysctlName, int] = Field(default_factory=dict, description="a mapping of IPVS sysctl to value: "
                                           + ", ".join(SYSCTL_RANGES))
    patches: list[str] = Field(default_factory=list, description="a list of patch files or shipped patch ids")
    nf_conntrack: bool = Field(default=True, description="true or false")
    pod_network: Literal["routed", "bridge"] = Field(default="routed", description="routed or bridge")
    scheduler: str = Field(default="rr", description="an IPVS scheduler; the simulation runs rr")
    pods: list[str] = Field(default_factory=lambda: ["a", "b"], min_length=1, max_length=16, description=(
        "a list of 1..16 pod names, running at the start"))
    spare_pods: list[str] = Field(default_factory=list, max_length=16, description="a list of pod names a change "
                                  "may add")
    grace_period: int = Field(default=30, ge=0, le=86_400, description="whole seconds 0..86400")
    load: LoadShape
    clients: Clients = Field(default_factory=lambda: Clients())
    changes: list[Change] = Field(default_factory=list, description="a list of timed pod changes")
    rolling_update: RollingUpdate | None = None
    bucket: float = Field(default=5.0, gt=0, le=MAX_DURATION, description="seconds per bucket of the per-pod "
                          "shares over time")


@dataclass(frozen=True)
class LoadSpec:
    """A checked load file (or a sweep point): everything the simulation needs, times in seconds."""

    name: str
    duration: float
    load: LoadShape
    clients: Clients
    seed: int = 1
    variant: str = "K516"
    kernel: str | None = None
    kube_proxy: str = "1.30"
    sysctls: tuple[tuple[str, int], ...] = ()
    patches: tuple[ModelPatch, ...] = ()
    patch_ids: tuple[str, ...] = ()
    nf_conntrack: bool = True
    pod_network: str = "routed"
    scheduler: str = "rr"
    pods: tuple[str, ...] = ("a", "b")
    spare_pods: tuple[str, ...] = ()
    grace_period: int = 30
    changes: tuple[tuple[float, Act, str], ...] = ()  # (at, action kind, pod), in time order
    bucket: float = 5.0
    source: str = ""  # the file it came from
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # a sweep point's swept values

    @property
    def n_ports(self) -> int:
        lo, hi = self.clients.port_range
        return hi - lo + 1

    @property
    def label(self) -> str:
        mode = dict(self.sysctls).get("conn_reuse_mode")
        patches = "".join(f"+{p}" for p in self.patch_ids)
        return f"{self.variant}{patches} kp{self.kube_proxy}" + (f" mode{mode}" if mode is not None else "")


def model_config(spec: LoadSpec, clients: int = 1, ports: int = 1) -> Config:
    """The model's configuration of a load run. The simulation's own System has one flow (clients=ports=1: its
    window, sim.py); a test replaying a run through the full model asks for every client port."""
    scope = Scope(clients=clients, ports=ports, pods=spec.pods, spare_pods=spec.spare_pods,
                  changes=len(spec.changes), crashes=any(k == Act.CRASH_POD for _, k, _ in spec.changes),
                  short_requests=True, long_lived=True)
    cfg = make_config(spec.variant, spec.kube_proxy, dict(spec.sysctls), scope, kernel=spec.kernel,
                      nf_conntrack=spec.nf_conntrack, scheduler=spec.scheduler, pod_network=spec.pod_network,
                      patches=spec.patches)
    timing = replace(cfg.timing, grace_period=spec.grace_period)
    return replace(cfg, timing=timing)


# ---------------------------------------------------------------------- reading and checking
_WHAT: dict[type[BaseModel], str] = {
    LoadFile: "a mapping with name, duration and load",
    LoadShape: "a mapping of " + ", ".join(LoadShape.model_fields),
    Clients: "a mapping of " + ", ".join(Clients.model_fields),
    Change: "a mapping with at and one of delete-pod, add-pod, crash-pod, endpoint-gone",
    RollingUpdate: "a mapping of at and interval",
}


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _field(model: type[BaseModel], key: Any) -> Any:
    return next((i for n, i in model.model_fields.items() if key in (n, i.alias)), None)


def _model_at(prefix: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model whose mapping the location `prefix` holds (LoadFile for the top level)."""
    model: type[BaseModel] | None = LoadFile
    for key in prefix:
        if isinstance(key, int):
            continue  # a list's item: the list field's model
        info = _field(model, key) if model is not None else None
        model = model_in(info.annotation) if info is not None else None
    return model


class _Fail:
    def __init__(self, path: Path, raw: Any) -> None:
        self.path, self.raw = path, raw

    def line(self, loc: tuple[Any, ...]) -> int:
        return line_of(self.raw, loc) or 1

    def __call__(self, loc: tuple[Any, ...], what: str) -> UserError:
        return UserError(f"{self.path}:{self.line(loc)}: {place(loc)}: {what}")


def _message(err: Any, raw: Any, text: str) -> tuple[tuple[Any, ...], str]:
    loc = tuple(err["loc"])
    kind = err["type"]
    if loc[-1:] == ("[key]",):
        return loc, f"unknown sysctl '{loc[-2]}' (expected one of: {', '.join(SYSCTL_RANGES)})"
    names = [k for k in loc if not isinstance(k, int)]
    parent = _model_at(tuple(names[:-1]))
    if kind == "extra_forbidden":
        keys = _keys(parent) if parent is not None else []
        return loc, f"unknown key '{loc[-1]}' (expected one of: {', '.join(keys)})"
    info = _field(parent, names[-1]) if parent is not None and names else None
    inner = model_in(info.annotation) if info is not None else None
    what = info.description if info is not None else None
    if kind in ("model_type", "model_attributes_type", "missing") and inner is not None:
        what = _WHAT[inner] if kind != "missing" or what is None else what
    if kind == "missing":
        return loc, f"missing: expected {what or 'a value'}"
    value = err.get("input")
    hint = ""
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        hint = f" (write it in quotes: \"{token_at(raw, loc, text) or value}\")"
    return loc, f"expected {what or 'a valid value'}, got {got(value)}{hint}"


def load_spec(path: Path) -> LoadSpec:
    """Read and check a load file; any problem is a UserError `FILE:LINE: place: what was expected`."""
    text = read_text(path, "a load simulation YAML file")
    raw = parse_yaml(path, text, "a mapping with name, duration and load")
    fail = _Fail(path, raw)
    data, problems = validate(LoadFile, as_plain(raw), lambda loc: "expected a value, got nothing (an empty value)",
                              lambda err: _message(err, raw, text))
    if problems:
        raise fail(*first_problem(problems, fail.line))
    assert data is not None
    return _check(data, fail, path)


def _check(d: LoadFile, fail: _Fail, path: Path) -> LoadSpec:
    try:
        resolve_variant(d.variant)
    except UnknownKernel as e:
        raise fail(("variant",), str(e)) from None
    if d.kernel is not None:
        try:
            variant_for_kernel(d.kernel)
        except UnknownKernel as e:
            raise fail(("kernel",), str(e)) from None
    try:
        kube_proxy_version(d.kube_proxy)
    except UnknownKubeProxy as e:
        raise fail(("kube_proxy",), str(e)) from None
    for name, value in d.sysctls.items():
        lo, hi = SYSCTL_RANGES[name]
        if not lo <= value <= hi:
            raise fail(("sysctls", name), f"expected {lo}..{hi}, got {got(value)}")
    lo, hi = d.clients.port_range
    for i, port in enumerate((lo, hi)):
        if not 1 <= port <= 65535:
            raise fail(("clients", "port_range", i), f"expected a port number 1..65535, got {got(port)}")
    if lo > hi:
        raise fail(("clients", "port_range"), f"expected [low, high] with low <= high, got [{lo}, {hi}] (upside "
                   "down)")
    s = d.load
    if s.mode == "open" and s.rate <= 0:
        raise fail(("load", "rate") if "rate" in s.model_fields_set else ("load",),
                   "expected a rate above 0 connections per second for an open loop")
    if s.mode == "closed" and s.workers <= 0:
        raise fail(("load", "workers") if "workers" in s.model_fields_set else ("load",),
                   "expected at least 1 worker for a closed loop")
    if s.mode == "closed" and s.hold + s.think <= 0:
        raise fail(("load",), CLOSED_LOOP_NEEDS_TIME)
    names = d.pods + d.spare_pods
    for i, pod in enumerate(names):
        if pod in names[:i]:
            twice = ("pods", i) if i < len(d.pods) else ("spare_pods", i - len(d.pods))
            raise fail(twice, f"pod '{pod}' is named twice")
    changes = _changes(d, fail)
    patches: list[ModelPatch] = []
    from ipvs_verify.patching.files import resolve_patch

    for i, arg in enumerate(d.patches):
        try:
            patches.append(resolve_patch(str(path.parent / arg) if (path.parent / arg).is_file() else arg).change)
        except UserError as e:
            raise fail(("patches", i), str(e)) from None
    spec = LoadSpec(
        name=d.name, description=d.description, duration=d.duration, load=d.load, clients=d.clients, seed=d.seed,
        variant=d.variant, kernel=d.kernel, kube_proxy=d.kube_proxy, sysctls=tuple(sorted(d.sysctls.items())),
        patches=tuple(patches), patch_ids=tuple(p.id for p in patches), nf_conntrack=d.nf_conntrack,
        pod_network=d.pod_network, scheduler=d.scheduler, pods=tuple(d.pods), spare_pods=tuple(d.spare_pods),
        grace_period=d.grace_period, changes=changes, bucket=d.bucket, source=str(path))
    try:
        check_model(spec)
    except (ValueError, PatchError) as e:
        blame = ("patches",) if isinstance(e, PatchError) else ("scheduler",) if "schedul" in str(e) else ("variant",)
        raise fail(blame, str(e)) from None
    return spec


def check_model(spec: LoadSpec) -> Config:
    """The model configuration, or a ValueError saying why the simulation cannot run it."""
    cfg = model_config(spec)
    if System(cfg).footprint((Act.REQUEST, 0, 0)) is None:
        raise ValueError(f"scheduler '{spec.scheduler}' reads every flow's connections (or the service is "
                         "persistent): the simulation's one-flow windows cannot run it (expected rr)")
    return cfg


def _changes(d: LoadFile, fail: _Fail) -> tuple[tuple[float, Act, str], ...]:
    """The timed pod changes (with the rolling update's), checked to apply in time order."""
    timed: list[tuple[float, int, Act, str, tuple[Any, ...]]] = []
    for i, c in enumerate(d.changes):
        kinds = [k for k in CHANGE_KINDS if getattr(c, k) is not None]
        if len(kinds) != 1:
            raise fail(("changes", i), "expected exactly one of delete-pod, add-pod, crash-pod, endpoint-gone, got "
                       + (", ".join(kinds) if kinds else "none"))
        timed.append((c.at, i, CHANGE_KINDS[kinds[0]], getattr(c, kinds[0]),
                      ("changes", i, Change.model_fields[kinds[0]].alias)))
    if d.rolling_update is not None:
        ru = d.rolling_update
        for k, (old, new) in enumerate(zip(d.pods, d.spare_pods, strict=False)):
            at = ru.at + k * ru.interval
            timed.append((at, 10_000 + 2 * k, Act.ADD_POD, new, ("rolling_update",)))
            timed.append((at, 10_001 + 2 * k, Act.DELETE_POD, old, ("rolling_update",)))
        if not d.spare_pods:
            raise fail(("rolling_update",), "expected spare_pods to replace the pods with (a rolling update adds "
                       "one and deletes an old one per step)")
    timed.sort(key=lambda x: (x[0], x[1]))
    names = d.pods + d.spare_pods
    phase = {p: "running" for p in d.pods} | {p: "absent" for p in d.spare_pods}
    need = {Act.DELETE_POD: ("running",), Act.ADD_POD: ("absent",), Act.CRASH_POD: ("running",),
            Act.ENDPOINT_GONE: ("crashed",)}
    after = {Act.DELETE_POD: "deleted", Act.ADD_POD: "running", Act.CRASH_POD: "crashed",
             Act.ENDPOINT_GONE: "gone"}
    for at, _, kind, pod, loc in timed:
        if pod not in names:
            raise fail(loc, f"unknown pod '{pod}' (expected one of pods or spare_pods: {', '.join(names)})")
        if phase[pod] not in need[kind]:
            raise fail(loc, f"at {at:g} s pod '{pod}' is {phase[pod]}: {kind.name.lower().replace('_', '-')} needs "
                       f"it {' or '.join(need[kind])}")
        phase[pod] = after[kind]
    return tuple((at, kind, pod) for at, _, kind, pod, _ in timed)
