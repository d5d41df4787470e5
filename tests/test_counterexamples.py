"""Every committed counterexample replays step by step and still violates its property."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipvs_verify.presentation.trace import load_trace, replay_trace

FILES = sorted((Path(__file__).parent.parent / "counterexamples").glob("*.json"))
# the Hypothesis engine's traces of the known bugs (tests/test_stateful.py, IPVS_VERIFY_TRACES)
FILES += sorted((Path(__file__).parent.parent / "counterexamples" / "hypothesis").glob("*.json"))


def test_known_bugs_are_committed() -> None:
    names = {p.name for p in FILES}
    assert "K46-kp1.30-mode0--no-new-conn-to-destroyed-pod.json" in names  # kubernetes 81775
    assert "K46-kp1.30-mode1--no-syn-dropped-on-reuse.json" in names  # kubernetes 70747
    assert "K41-kp1.30-mode1--live-conntrack-never-killed.json" in names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem if p.parent.name != "hypothesis" else f"hyp/{p.stem}")
def test_counterexample_still_violates(path: Path) -> None:
    result = replay_trace(load_trace(path), path)
    assert result.reproduces, f"{path.name}: the replay differs from the file: {result.problems}"
    assert result.violated, f"{path.name} no longer violates {result.prop.name if result.prop else '?'}"


def test_broken_step_is_named(tmp_path: Path) -> None:
    src = Path(__file__).parent.parent / "counterexamples" / "K46-kp1.30-mode0--no-new-conn-to-destroyed-pod.json"
    data = json.loads(src.read_text())
    data["steps"][0]["params"] = {"pod": "zz"}
    data["steps"][0]["action"] = "crash-pod"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    result = replay_trace(load_trace(bad), bad)
    assert result.stopped_at == 1 and result.exit_code == 1
    assert result.problems[0].startswith("step 1: 'crash-pod' pod=zz no longer applies: unknown pod 'zz'")
