"""Every scenario in scenarios/ meets its per-variant expectations on every default variant."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipvs_verify.model.variants import DEFAULT_MATRIX_VARIANTS
from ipvs_verify.scenario import load_scenario, run_scenario

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.yaml"))


def test_scenarios_exist() -> None:
    assert len(SCENARIOS) >= 6


@pytest.mark.parametrize("variant", DEFAULT_MATRIX_VARIANTS)
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario(path: Path, variant: str) -> None:
    run = run_scenario(load_scenario(path), variant)
    failures = [f"step {s.index} (line {s.line}): {f}" for s in run.steps for f in s.failures]
    assert not failures, "\n".join(failures)
