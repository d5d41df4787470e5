"""The typed trace format (version 2): a pydantic model of a counterexample file, and its JSON schema.

A trace file holds the configuration, the initial state, then the steps (time, actor, action, parameters,
outcome, events, state after). Events are stored by name: each is an object whose `event` is the name of
a `model.events.Ev` member and whose other keys are that event's named fields (a flow, a pod, a reason by
its enum name, flags by name), so renumbering `Ev` (or `DropWhy`, `BrokenWhy`, the SF_* flags) does not
change what a committed trace means. `EVENT_FIELDS` says, for each member, what its three integers are.

The JSON schema at docs/trace.schema.json is generated from these models (`python -m
ipvs_verify.presentation.trace_model > docs/trace.schema.json`); a test checks the committed copy is current.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, create_model, model_validator

from ipvs_verify.model.config import Scope, Timing
from ipvs_verify.model.events import BrokenWhy, DropWhy, Ev
from ipvs_verify.model.state import Neigh
from ipvs_verify.model.system import ACTION_NAMES
from ipvs_verify.model.tcp_states import SHORT

FORMAT: Final = "ipvs-verify-trace"
VERSION: Final = 2

# ---------------------------------------------------------------------- named values
# the SYN_FORWARDED / DGRAM_FORWARDED flags by name (model.events SF_*), in bit order
FLAG_NAMES = ("REUSED", "POD_DEAD", "DEST_W0", "DEST_DELETED", "RETRANSMIT")
# model.state.Plan: HOLD, CLIENT_CLOSES, SERVER_CLOSES, CLIENT_RESETS
CLOSER_NAMES = ("none", "client", "server", "reset")

# What each of an event's three integers (subject, a, b) stands for, by kind; None: unused (always 0).
#   flow, pod, client: an index, stored as its name ("client-1:port-1", "pod-a", "client-1")
#   int, bool: the number, or 0/1 as false/true; tcp_state, drop, broken, closer: an enum, by name
#   flags: a set of SF_* bits, as a list of FLAG_NAMES
FieldKind = Literal["flow", "pod", "client", "int", "bool", "tcp_state", "drop", "broken", "closer", "flags", "neigh"]
Slot = tuple[str, FieldKind] | None
EVENT_FIELDS: dict[Ev, tuple[Slot, Slot, Slot]] = {
    Ev.SYN_FORWARDED: (("flow", "flow"), ("pod", "pod"), ("flags", "flags")),
    Ev.SYN_DROPPED: (("flow", "flow"), ("why", "drop"), None),
    Ev.REFUSED: (("flow", "flow"), None, None),
    Ev.CONNECTED: (("flow", "flow"), ("pod", "pod"), None),
    Ev.NO_ROUTE: (("flow", "flow"), ("pod", "pod"), None),
    Ev.TIMED_OUT: (("flow", "flow"), None, None),
    Ev.REUSE_HIT: (("flow", "flow"), ("entry_state", "tcp_state"), ("entry_dest", "pod")),
    Ev.RESCHEDULED: (("flow", "flow"), ("old_dest", "pod"), None),
    Ev.PKT_FORWARDED: (("flow", "flow"), ("dest", "pod"), ("connected_pod", "pod")),
    Ev.BROKEN: (("flow", "flow"), ("why", "broken"), ("pod", "pod")),
    Ev.CLOSED: (("flow", "flow"), ("closer", "closer"), None),
    Ev.CT_KILLED: (("flow", "flow"), ("newer_live_connection", "bool"), None),
    Ev.ENTRY_EXPIRED: (("flow", "flow"), ("dest", "pod"), None),
    Ev.DEST_ADDED: (("pod", "pod"), ("weight", "int"), None),
    Ev.DEST_QUIESCED: (("pod", "pod"), ("connections", "int"), None),
    Ev.DEST_DELETED: (("pod", "pod"), ("live_connections", "int"), None),
    Ev.POD_DELETED: (("pod", "pod"), None, None),
    Ev.POD_DESTROYED: (("pod", "pod"), None, None),
    Ev.POD_ADDED: (("pod", "pod"), None, None),
    Ev.POD_CRASHED: (("pod", "pod"), None, None),
    Ev.ENDPOINT_GONE: (("pod", "pod"), None, None),
    Ev.SYNCED: (None, None, None),
    Ev.CHECKED: (None, None, None),
    Ev.FLUSHED: (("removed", "int"), None, None),
    Ev.TIME: (None, ("seconds", "int"), None),
    Ev.TIME_WAIT_OVER: (("flow", "flow"), None, None),
    Ev.WEIGHT_SET: (("pod", "pod"), ("weight", "int"), None),
    Ev.DGRAM_FORWARDED: (("flow", "flow"), ("pod", "pod"), ("flags", "flags")),
    Ev.DGRAM_DROPPED: (("flow", "flow"), ("why", "drop"), None),
    Ev.ANSWERED: (("flow", "flow"), ("pod", "pod"), None),
    Ev.TEMPLATE_CREATED: (("client", "client"), ("pod", "pod"), None),
    Ev.TEMPLATE_INVALIDATED: (("client", "client"), ("pod", "pod"), None),
    Ev.TEMPLATE_EXPIRED: (("client", "client"), ("pod", "pod"), ("re_armed", "bool")),
    Ev.SYN_QUEUED: (("flow", "flow"), ("pod", "pod"), None),
    Ev.NEIGH_FAILED: (("pod", "pod"), ("clients_told", "int"), None),
    Ev.CT_EXPIRED: (("flow", "flow"), None, None),
    Ev.CLIENT_CRASHED: (("flow", "flow"), ("pod", "pod"), None),
    Ev.TIME_WAIT_TAKEN_OVER: (("flow", "flow"), None, None),
    Ev.ORPHANED: (("flow", "flow"), ("why", "broken"), ("pod", "pod")),
    Ev.ORPHAN_GONE: (("flow", "flow"), ("reset", "bool"), None),
    Ev.CHALLENGED: (("flow", "flow"), ("pod", "pod"), None),
    Ev.SYN_LOST: (("flow", "flow"), ("pod", "pod"), ("neighbour", "neigh")),
    Ev.NEIGH_STALE: (("pod", "pod"), ("freed", "bool"), None),
    Ev.RS_READ: (("pod", "pod"), ("packet_reached", "int"), ("connections_read", "int")),
    Ev.REPLY_INVALID: (("flow", "flow"), ("pod", "pod"), None),
}

# A member added to Ev without an entry above still loads and saves (its three integers as subject, a, b),
# but tests/test_trace_format.py fails until EVENT_FIELDS says what they are.
UNNAMED: tuple[Slot, Slot, Slot] = (("subject", "int"), ("a", "int"), ("b", "int"))


def event_fields(ev: Ev) -> tuple[Slot, Slot, Slot]:
    return EVENT_FIELDS.get(ev, UNNAMED)


# The actions' parameters, exactly (what ipvs_verify.presentation.trace.action_to_json writes for each action)
ACTION_PARAMS: dict[str, tuple[str, ...]] = {
    "request": ("flow", "closer"), "connect": ("flow",), "send": ("flow",), "close": ("flow", "closer"),
    "wait": ("seconds",), "expire": ("flow", "entry"), "client-timer": ("flow",), "grace-end": ("pod",),
    "sync": (), "check": (), "flush": (), "delete-pod": ("pod",), "add-pod": ("pod",), "crash-pod": ("pod",),
    "endpoint-gone": ("pod",), "set-weight": ("pod", "weight"), "delete-dest": ("pod",),
    "add-dest": ("pod", "weight"), "datagram": ("flow",), "template-expire": ("client",),
    "neigh-failed": ("pod",), "ct-expire": ("flow",), "client-crash": ("flow",), "neigh-stale": ("pod", "freed"),
}
# parameters an action may also have: on a bridge pod network's TCP service, the node's neighbour entry that a
# destroyed pod leaves behind (model/state.py Neigh; traces of other configurations have none)
# and kube-proxy's sync or check with a packet between deleteRsFunc's read of a real server and its delete
# (Scope.kp_window): the pod read, the packet (an action name) and that action's own parameters
_WINDOW = ("pod", "packet", "flow", "closer")
ACTION_OPTIONAL: dict[str, tuple[str, ...]] = {"grace-end": ("neighbour",), "crash-pod": ("neighbour",),
                                               "sync": _WINDOW, "check": _WINDOW}

if TYPE_CHECKING:  # the literal types below are built from the model's own tables at run time
    ActionName = str
    TcpStateName = str
    DropName = str
    BrokenName = str
    FlagName = str
    NeighName = str
else:
    ActionName = Literal[tuple(ACTION_NAMES.values())]
    TcpStateName = Literal[tuple(SHORT.values())]
    DropName = Literal[tuple(m.name for m in DropWhy)]
    BrokenName = Literal[tuple(m.name for m in BrokenWhy)]
    FlagName = Literal[FLAG_NAMES]
    NeighName = Literal[tuple(m.name.lower() for m in Neigh)]
CloserName = Literal["none", "client", "server", "reset"]


def _at(v: Any) -> int | str:
    if v == "now" or (isinstance(v, int) and not isinstance(v, bool)):
        return v  # type: ignore[no-any-return]
    raise ValueError(f"expected a time in seconds (an integer) or \"now\", got {v!r}")


def _ct(v: Any) -> str:
    if v in ("live", "none") or (isinstance(v, str) and re.fullmatch(r"SYN_SENT, expires at (\d+|now)", v)):
        return v  # type: ignore[no-any-return]
    raise ValueError(f"expected 'live', 'none' or 'SYN_SENT, expires at T', got {json.dumps(v)}")


# a flow's conntrack entry: none, live, or (bridge pod network) a confirmed SYN_SENT entry and its deadline
CtView = Annotated[str, PlainValidator(_ct), WithJsonSchema(
    {"anyOf": [{"enum": ["live", "none"]}, {"type": "string", "pattern": "^SYN_SENT, expires at ([0-9]+|now)$"}],
     "title": "conntrack entry"})]


# an absolute time, or "now" for a timer already due
At = Annotated[int | str, PlainValidator(_at),
               WithJsonSchema({"anyOf": [{"type": "integer"}, {"const": "now"}], "title": "time (s) or now"})]


class Strict(BaseModel):
    """JSON types exactly (no "3" for 3, no 1 for true) and no unknown keys."""

    model_config = ConfigDict(strict=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        """An unknown key is named with the keys expected there (extra="forbid" alone names neither)."""
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    raise ValueError(f"unknown key {key!r} (expected only: {', '.join(cls.model_fields)})")
        return data


# ---------------------------------------------------------------------- configuration
class _ScopeV2(Strict):
    """model.config.Scope"""

    clients: int
    ports: int
    pods: list[str]
    spare_pods: list[str]
    changes: int
    crashes: bool
    short_requests: bool
    long_lived: bool
    protocol: Literal["tcp", "udp"]
    persistence: int


if TYPE_CHECKING:
    IpvsTimeouts = Strict
else:  # one required key per IPVS entry state (model.tcp_states.SHORT)
    IpvsTimeouts = create_model("IpvsTimeouts", __base__=Strict, **{name: (int, ...) for name in SHORT.values()})


class _TimingV2(Strict):
    """model.config.Timing; the IPVS entry timeouts keyed by state name"""

    ipvs_timeouts: IpvsTimeouts
    client_time_wait: int
    syn_rto: int
    syn_retries: int
    grace_period: int
    sync_delay: int
    check_interval: int


def _later_fields(model: type[Strict], dc: type) -> dict[str, Any]:
    """The fields `dc` (a dataclass) gained after version 2 of the format, as optional pydantic fields.

    A trace written before a field existed still loads, and means what it meant: the field's default (the
    model's behaviour before it). config_to_json writes such a field only when it differs from its default,
    so adding a setting to the model rewrites no committed trace.
    """
    hints = get_type_hints(dc)
    later: dict[str, Any] = {}
    for f in dataclasses.fields(dc):
        if f.name in model.model_fields:
            continue
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
        if get_origin(kind) is tuple:
            kind, default = list[Any], list(default)
        later[f.name] = (kind, Field(default, description="added after format version 2; absent: this default"))
    return later


LATER_SCOPE_FIELDS = _later_fields(_ScopeV2, Scope)
LATER_TIMING_FIELDS = _later_fields(_TimingV2, Timing)

if TYPE_CHECKING:
    ScopeModel = _ScopeV2
    TimingModel = _TimingV2
else:
    ScopeModel = create_model("ScopeModel", __base__=_ScopeV2, __doc__=_ScopeV2.__doc__, **LATER_SCOPE_FIELDS)
    TimingModel = create_model("TimingModel", __base__=_TimingV2, __doc__=_TimingV2.__doc__, **LATER_TIMING_FIELDS)


def later_defaults(later: dict[str, Any]) -> dict[str, Any]:
    """{field: its default as JSON} for fields added after version 2."""
    return {name: info.default for name, (_, info) in later.items()}


class PatchRef(Strict):
    """A patch file the configuration was built with (docs/patches.md)."""

    id: str
    file: str = Field(description="the patch file as it was given (a shipped patch: its path in the package)")
    sha256: str = Field(description="the file's digest: replaying with another version of it is refused")


class ConfigModel(Strict):
    variant: str
    kernel: str
    kube_proxy: str
    sysctl_overrides: dict[str, int]
    sysctls: dict[str, int] = Field(description="effective: kernel defaults, kube-proxy's, then the overrides")
    nf_conntrack: bool
    scheduler: str
    scope: ScopeModel
    timing: TimingModel
    # added after version 2: written only when not "routed"
    pod_network: Literal["routed", "bridge"] = "routed"
    # added after version 2: written only when the configuration is patched (`check`); applied in this order
    patches: list[PatchRef] = Field(default_factory=list)
    kube_proxy_last: bool = Field(False, description="written only when true: the sysctl overrides were the "
                                  "node's before kube-proxy started, and its start-up sysctls won over them")
    invalid_drop: bool = Field(False, description="written only when true: the node's FORWARD drops what conntrack "
                               "finds INVALID (not kube-proxy's IPVS mode)")


# ---------------------------------------------------------------------- the readable state view
class EntryView(Strict):
    flow: str
    state: TcpStateName
    dest: str
    expires_at: At
    nfct: bool
    controlled: bool = Field(False, description="present (true) only when a persistence template controls it")


class DestView(Strict):
    status: Literal["in service", "deleted"]
    weight: int
    active: int
    inactive: int


class IpvsView(Strict):
    entries: list[EntryView]
    dests: dict[str, DestView]
    rr_cursor: str
    flush_pending: bool
    templates: dict[str, str] | None = Field(None, description="present only for a persistent service")


class KubeProxyView(Strict):
    sync_at: At | None
    next_check_at: At
    graceful_deletion_list: list[str]


class StateView(Strict):
    """A state as a person reads it: countdowns are absolute times, indices are names."""

    ipvs: IpvsView
    conntrack: dict[str, CtView]
    clients: dict[str, str]
    pods: dict[str, str]
    kube_proxy: KubeProxyView
    changes_left: int


# ---------------------------------------------------------------------- steps and events
class Params(Strict):
    """An action's parameters: which ones an action takes is ACTION_PARAMS."""

    flow: str | None = None
    closer: CloserName | None = None
    client: str | None = None
    entry: int | None = None
    seconds: int | None = None
    pod: str | None = None
    weight: int | None = None
    neighbour: NeighName | None = None
    freed: bool | None = None
    packet: ActionName | None = None

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class EventBase(Strict):
    event: str


_KIND_TYPE: dict[str, Any] = {
    "flow": str, "pod": str, "client": str, "int": int, "bool": bool, "tcp_state": TcpStateName,
    "drop": DropName, "broken": BrokenName, "closer": CloserName, "flags": list[FlagName], "neigh": NeighName,
}


def _event_model(ev: Ev) -> type[EventBase]:
    fields: dict[str, Any] = {"event": (Literal[ev.name], ...)}
    for slot in event_fields(ev):
        if slot is not None:
            fields[slot[0]] = (_KIND_TYPE[slot[1]], ...)
    return create_model(f"Event_{ev.name}", __base__=EventBase, **fields)  # type: ignore[call-overload,no-any-return]


EVENT_MODELS: dict[str, type[EventBase]] = {ev.name: _event_model(ev) for ev in Ev}

if TYPE_CHECKING:
    EventRecord = EventBase
else:
    from typing import Union

    EventRecord = Annotated[Union[tuple(EVENT_MODELS.values())], Field(discriminator="event")]  # noqa: UP007


class Step(Strict):
    step: int
    time: int
    actor: str
    action: ActionName
    params: Params
    outcome: str
    events: list[EventRecord]
    state: StateView

    @model_validator(mode="after")
    def _params_fit_the_action(self) -> Step:
        want = ACTION_PARAMS.get(self.action)
        got = tuple(self.params.given())
        if want is None:  # an action newer than the table (a test requires it to be listed)
            return self
        optional = ACTION_OPTIONAL.get(self.action, ())
        if not set(want) <= set(got) <= set(want) | set(optional):
            takes = ", ".join(want) if want else "no parameters"
            takes += f" (and may take {', '.join(optional)})" if optional else ""
            raise ValueError(f"params: '{self.action}' takes {takes}, got {', '.join(got) or 'none'}")
        return self


class HypothesisInfo(Strict):
    shrunk_steps: int
    minimised_steps: int
    first_found_example: int | None
    examples: int


class TraceFile(Strict):
    """A counterexample trace, format version 2."""

    model_config = ConfigDict(title="ipvs-verify trace")

    format: Literal["ipvs-verify-trace"]
    version: Literal[2]
    property: str | None
    property_number: int | None
    kind: Literal["safety", "liveness"]
    status: Literal["violated", "undecided"]
    engine: str
    search_timing: Literal["event", "untimed", "exact"]
    seed: int | None
    config: ConfigModel
    pod: str | None = Field(description="liveness: the pod the cycle is about")
    loop_start: int | None = Field(description="liveness: the cycle starts after this many steps")
    initial_state: StateView
    steps: list[Step]
    hypothesis: HypothesisInfo | None = Field(None, description="the Hypothesis engine's search figures")

    def to_json(self) -> str:
        """The file's text: the keys a trace was built or loaded with, in the format's order."""
        return json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=1) + "\n"


def trace_schema() -> dict[str, Any]:
    schema = TraceFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def schema_text() -> str:
    return json.dumps(trace_schema(), indent=1) + "\n"


if __name__ == "__main__":  # python -m ipvs_verify.presentation.trace_model > docs/trace.schema.json
    print(schema_text(), end="")
