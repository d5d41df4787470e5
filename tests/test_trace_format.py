"""The typed trace format (version 2): schema, loading, migration of version 1, and `show` telling the replay.

`show` exits 0 only when the replay reproduces the file step for step and the property is still violated; a
tampered step is named with exit 1 (a malformed file, one line with exit 2, is in tests/test_bad_input.py
with every other kind of bad input). The CLI runs in-process (ipvs_verify.cli.main), so these tests stay fast.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest

from ipvs_verify.cli import main
from ipvs_verify.model.config import Scope, Timing
from ipvs_verify.model.events import Ev
from ipvs_verify.model.system import ACTION_NAMES, System
from ipvs_verify.presentation.trace import (
    V1_EVENTS,
    TraceError,
    build_trace,
    event_to_json,
    load_trace,
    parse_trace,
    replay_trace,
)
from ipvs_verify.presentation.trace_model import (
    ACTION_PARAMS,
    EVENT_FIELDS,
    EVENT_MODELS,
    VERSION,
    ScopeModel,
    TimingModel,
    TraceFile,
    _later_fields,
    _ScopeV2,
    later_defaults,
    schema_text,
)

ROOT = Path(__file__).parent.parent
CX = ROOT / "counterexamples"
FILES = sorted(CX.glob("*.json")) + sorted((CX / "hypothesis").glob("*.json"))
SCHEMA = ROOT / "docs" / "trace.schema.json"
FIXTURES = Path(__file__).parent / "fixtures"
V1_81775 = FIXTURES / "trace-v1-K46-kp1.30-mode0--no-new-conn-to-destroyed-pod.json"
V1_UDP = FIXTURES / "trace-v1-hypothesis-K46-kp1.14.0-mode0-udp--no-datagram-to-destroyed-pod.json"
SAFETY = CX / "K46-kp1.30-mode0--no-new-conn-to-destroyed-pod.json"  # kubernetes 81775, 5 steps
LIVENESS = CX / "K46-kp1.30-mode0--quiesced-dest-eventually-deleted.json"


def _ids(p: Path) -> str:
    return p.stem if p.parent.name != "hypothesis" else f"hyp/{p.stem}"


def run_show(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`ipvs-verify show ARGS` in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_:
        main(["show", *args])
    captured = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 0), captured.out, captured.err


def tampered(tmp_path: Path, edit: Callable[[dict[str, Any]], object], src: Path = SAFETY) -> Path:
    data = json.loads(src.read_text())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data, indent=1))
    return path


# ---------------------------------------------------------------------- the schema
def test_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA.read_text() == schema_text(), (
        "docs/trace.schema.json is stale: python -m ipvs_verify.presentation.trace_model > docs/trace.schema.json")


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_committed_trace_validates_against_the_schema(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(json.loads(path.read_text()))


def test_the_schema_refuses_an_event_number() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    data = json.loads(SAFETY.read_text())
    data["steps"][0]["events"][0] = [0, 0, 1, 0]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(data)


def test_model_json_round_trip() -> None:
    trace = load_trace(SAFETY)
    again = TraceFile.model_validate_json(trace.to_json())
    assert again == trace and again.to_json() == trace.to_json()


def test_the_model_mirrors_the_configuration_dataclasses() -> None:
    assert list(ScopeModel.model_fields) == [f for f in Scope.__dataclass_fields__]
    assert list(TimingModel.model_fields) == [f for f in Timing.__dataclass_fields__]
    assert set(ACTION_PARAMS) == set(ACTION_NAMES.values())


def test_a_setting_added_later_is_optional_with_its_default() -> None:
    @dataclasses.dataclass(frozen=True)
    class Wider(Scope):
        pod_network: str = "routed"
        spare_ports: tuple[int, ...] = (1,)

    later = _later_fields(_ScopeV2, Wider)
    # client_crashes, client_resets, bound_ports and kp_window: Scope's own later fields
    added = {"client_crashes": False, "client_resets": False, "bound_ports": False, "kp_window": False,
             "pod_network": "routed", "spare_ports": [1]}
    assert later_defaults(later) == added
    model = pydantic.create_model("Wider", __base__=_ScopeV2, **later)
    old = load_trace(V1_81775).config.scope.model_dump(exclude_unset=True)  # written before any of them
    assert model.model_validate(old).model_dump() == old | added


# ---------------------------------------------------------------------- events by name
def test_every_event_kind_has_named_fields() -> None:
    assert set(EVENT_FIELDS) == set(Ev) and set(EVENT_MODELS) == {e.name for e in Ev}
    # version 1's frozen numbering still names events this model has (else its files cannot migrate)
    assert set(V1_EVENTS) <= {e.name for e in Ev}


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_committed_trace_loads_validates_and_replays(path: Path) -> None:
    text = path.read_text()
    trace = load_trace(path)
    assert trace.version == VERSION
    assert trace.to_json() == text  # the file is exactly what the model writes
    for step in json.loads(text)["steps"]:
        for event in step["events"]:
            assert isinstance(event, dict) and event["event"] in EVENT_MODELS  # a name, never a number
    result = replay_trace(trace, path)
    assert result.reproduces, result.problems
    assert result.violated and result.exit_code == 0
    assert result.trace.to_json() == text  # what `show` renders is the replay, and it is the file


def test_events_are_stored_by_name() -> None:
    replay = replay_trace(load_trace(SAFETY))
    first = event_to_json(System(replay.config, "exact"), replay.events[0][0])
    assert first.model_dump() == {"event": "SYN_FORWARDED", "flow": "client-1:port-1", "pod": "pod-b", "flags": []}
    assert replay.trace.steps[0].events[0] == first


# ---------------------------------------------------------------------- version 1 files: migrated on load
@pytest.mark.parametrize("v1, v2", [
    # the version 2 file of the same trace, as the matrix wrote it before the scope gained client crashes
    (V1_81775, Path(__file__).with_name("fixtures") / "trace-v2-K46-kp1.30-mode0--no-new-conn-to-destroyed-pod.json"),
    (V1_UDP, CX / "hypothesis" / "K46-kp1.14.0-mode0-udp--no-datagram-to-destroyed-pod.json"),
])
def test_version_1_is_migrated_to_the_committed_version_2(v1: Path, v2: Path) -> None:
    assert json.loads(v1.read_text())["version"] == 1
    migrated = load_trace(v1)
    assert migrated.version == 2
    assert migrated.to_json() == v2.read_text()
    assert replay_trace(migrated, v1).exit_code == 0


def test_show_reads_a_version_1_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_show(capsys, str(V1_81775))
    assert code == 0, err
    assert out.rstrip().endswith("replayed 5 steps: still violated")


def test_a_migrated_file_is_still_checked_step_by_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["steps"][0]["events"][0][2] = 0  # version 1's SYN_FORWARDED to pod-a, where the model goes to pod-b

    code, _, err = run_show(capsys, str(tampered(tmp_path, edit, V1_81775)))
    assert code == 1
    assert "step 1: events: event 1: the file says SYN_FORWARDED(flow=client-1:port-1, pod=pod-a, flags=[])" in err


def test_build_trace_writes_the_committed_file() -> None:
    trace = load_trace(SAFETY)
    replay = replay_trace(trace)
    assert replay.prop is not None
    rebuilt = build_trace(replay.config, replay.actions, replay.prop, trace.engine, trace.search_timing)
    assert rebuilt.version == 2 and rebuilt.to_json() == SAFETY.read_text()


# ---------------------------------------------------------------------- show tells the replay, and catches edits
def test_show_exits_0_on_a_committed_trace(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_show(capsys, str(SAFETY))
    assert (code, err) == (0, "")
    assert "  5. t=" in out and out.rstrip().endswith("still violated")


@pytest.mark.parametrize("option", ["--markdown", "--diagram", "--pytest"])
def test_every_rendering_exits_0_on_a_committed_trace(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_show(capsys, str(SAFETY), option)
    assert (code, err) == (0, "") and out


def test_show_exits_0_on_a_lasso(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_show(capsys, str(LIVENESS))
    assert code == 0 and "the cycle starts here" in out


def _set_outcome(d: dict[str, Any]) -> None:
    d["steps"][1]["outcome"] = "nothing changes"


def _set_state(d: dict[str, Any]) -> None:
    d["steps"][2]["state"]["ipvs"]["dests"]["pod-b"]["weight"] = 7


def _set_event(d: dict[str, Any]) -> None:
    d["steps"][0]["events"][0]["pod"] = "pod-a"


def _drop_event(d: dict[str, Any]) -> None:
    del d["steps"][0]["events"][-1]


def _set_time(d: dict[str, Any]) -> None:
    d["steps"][3]["time"] = 999


def _set_number(d: dict[str, Any]) -> None:
    d["steps"][1]["step"] = 7


def _set_initial(d: dict[str, Any]) -> None:
    d["initial_state"]["changes_left"] = 5


def _set_sysctls(d: dict[str, Any]) -> None:
    d["config"]["sysctls"]["conntrack"] = 0


def _set_number_of_property(d: dict[str, Any]) -> None:
    d["property_number"] = 3


@pytest.mark.parametrize("edit, expected", [
    (_set_outcome, 'step 2: outcome: the file says "nothing changes", the replay gives "'),
    (_set_state, "step 3: state: ipvs.dests.pod-b.weight: the file says 7, the replay gives "),
    (_set_event, "step 1: events: event 1: the file says SYN_FORWARDED(flow=client-1:port-1, pod=pod-a, flags=[]), "
                 "the replay gives SYN_FORWARDED(flow=client-1:port-1, pod=pod-b, flags=[])"),
    (_drop_event, "step 1: events: event 5: the file says nothing more, the replay gives CLOSED("),
    (_set_time, "step 4: time: the file says 999, the replay gives "),
    (_set_number, "step 2: numbered 7 in the file"),
    (_set_initial, "initial_state: changes_left: the file says 5, the replay gives 2"),
    (_set_sysctls, "config: sysctls.conntrack: the file says 0, the replay gives 1"),
    (_set_number_of_property, "property_number: the file says 3, property no-new-conn-to-destroyed-pod is number 1"),
], ids=["outcome", "state", "event", "missing-event", "time", "numbering", "initial-state", "sysctls",
        "property-number"])
def test_an_edited_trace_is_named_with_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              edit: Callable[[dict[str, Any]], None], expected: str) -> None:
    path = tampered(tmp_path, edit)
    code, out, err = run_show(capsys, str(path))
    assert code == 1, out + err
    assert f"{path}: {expected}" in err
    assert "the file differs from the replay" in out and "still violated" not in out


def test_the_story_tells_the_replay_not_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_show(capsys, str(tampered(tmp_path, _set_outcome)))
    assert code == 1 and "nothing changes" not in out
    original = load_trace(SAFETY).steps[1].outcome
    assert f"=> {original}" in out


def test_an_invented_step_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def invent(d: dict[str, Any]) -> None:  # the first request again, before the second: its port is in TIME_WAIT
        d["steps"].insert(1, copy.deepcopy(d["steps"][0]))
        for n, step in enumerate(d["steps"], 1):
            step["step"] = n

    path = tampered(tmp_path, invent)
    code, _, err = run_show(capsys, str(path))
    assert code == 1
    assert f"{path}: step 2: " in err


def test_a_step_that_no_longer_applies_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def invent(d: dict[str, Any]) -> None:  # a pod the scope does not have
        d["steps"][1] = {**d["steps"][1], "action": "crash-pod", "params": {"pod": "zz"}}

    path = tampered(tmp_path, invent)
    code, out, err = run_show(capsys, str(path))
    assert code == 1
    assert f"{path}: step 2: 'crash-pod' pod=zz no longer applies: unknown pod 'zz' (expected one of: a, b, c)" in err
    assert f"{path}: steps 3..5: not replayed" in err
    assert "replayed 1 of 5 steps: step 2 no longer applies" in out


def test_a_disabled_step_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def disable(d: dict[str, Any]) -> None:  # pod-c is a spare pod: there is no grace period to end
        d["steps"][0] = {**d["steps"][0], "action": "grace-end", "params": {"pod": "c"}}

    path = tampered(tmp_path, disable)
    code, _, err = run_show(capsys, str(path), "--diagram")
    assert code == 1
    assert f"{path}: step 1: 'grace-end' pod=c no longer applies (the model does not allow it here)" in err


def test_no_longer_violated_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tampered(tmp_path, lambda d: d["steps"].pop())  # the violating step removed: the rest replays
    code, out, err = run_show(capsys, str(path))
    assert code == 1 and err == ""
    assert out.rstrip().endswith("replayed 4 steps: NO LONGER violated by the model")


def test_a_lasso_without_its_cycle_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tampered(tmp_path, lambda d: d.update(loop_start=0), LIVENESS)
    code, out, _ = run_show(capsys, str(path))
    assert code == 1 and "NO LONGER" in out


def test_the_pytest_rendering_of_an_edited_trace_exits_1(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_show(capsys, str(tampered(tmp_path, _set_state)), "--pytest")
    assert code == 1 and out.startswith('"""Reproducer') and "step 3: state" in err


def test_parse_trace_raises_trace_error() -> None:
    with pytest.raises(TraceError, match="<trace>: version: expected 2"):
        parse_trace({"format": "ipvs-verify-trace", "version": 0})
