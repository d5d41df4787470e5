"""The other renderings of a counterexample: the Mermaid sequence diagram and the pytest reproducer."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipvs_verify.presentation.diagram import sequence_diagram
from ipvs_verify.presentation.reproducer import pytest_reproducer
from ipvs_verify.presentation.trace import load_trace, replay_trace

CX = Path(__file__).parent.parent / "counterexamples"
SAFETY = [p for p in sorted(CX.glob("*.json")) if load_trace(p).kind == "safety"]


@pytest.mark.parametrize("path", SAFETY[:6], ids=lambda p: p.stem)
def test_reproducer_replays_the_violation(path: Path) -> None:
    namespace: dict[str, object] = {}
    exec(compile(pytest_reproducer(load_trace(path)), str(path), "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) == 1
    tests[0]()  # type: ignore[operator]


def test_reproducer_fails_when_the_last_step_no_longer_violates() -> None:
    trace = load_trace(CX / "K46-kp1.30-mode0--no-new-conn-to-destroyed-pod.json")
    trace.steps = trace.steps[:-1]  # the violating step removed
    namespace: dict[str, object] = {}
    exec(compile(pytest_reproducer(trace), "cut", "exec"), namespace)
    test = next(f for name, f in namespace.items() if name.startswith("test_"))
    with pytest.raises(AssertionError, match="no longer violates"):
        test()  # type: ignore[operator]


def test_reproducer_refuses_a_lasso() -> None:
    trace = load_trace(CX / "K46-kp1.30-mode0--quiesced-dest-eventually-deleted.json")
    with pytest.raises(ValueError, match="safety"):
        pytest_reproducer(trace)


def test_diagram_has_a_lane_per_actor_and_every_forwarded_syn() -> None:
    replay = replay_trace(load_trace(CX / "K46-kp1.30-mode0--no-new-conn-to-destroyed-pod.json"))
    text = sequence_diagram(replay)
    assert text.startswith("sequenceDiagram\n")
    for lane in ("client_1", "IPVS", "conntrack", "kube_proxy", "pod_a", "pod_b"):
        assert f"participant {lane} " in text
    forwarded = sum(1 for s in replay.trace.steps for e in s.events if e.event == "SYN_FORWARDED")
    assert text.count("IPVS->>pod_") == forwarded
    assert "no route to host" in text
