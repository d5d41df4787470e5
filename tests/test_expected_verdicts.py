"""The verdicts the issue expects, found by search (the explicit engine), not by scripted traces."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import cell

EXPECTED = YAML(typ="safe").load(Path(__file__).with_name("expected_verdicts.yaml").read_text())


def _id(r: dict) -> str:
    kp = f"-kp{r['kube_proxy']}" if "kube_proxy" in r else ""
    proto = f"-{r['protocol']}" if "protocol" in r else ""
    sched = f"-{r['scheduler']}" if "scheduler" in r else ""
    return f"{r['variant']}-mode{r['mode']}{kp}{proto}{sched}"


@pytest.mark.parametrize("row", EXPECTED, ids=_id)
def test_expected_verdicts(row: dict) -> None:
    result = cell(row["variant"], row["mode"], str(row.get("kube_proxy", "1.30")), row.get("protocol", "tcp"),
                  row.get("scheduler", "rr"))
    by_number = {v.prop.number: v for v in result.verdicts}
    for n in row["violated"]:
        v = by_number[n]
        assert v.status == "violated", f"property {n} ({v.prop.name}): {v.status} {v.detail}"
        assert v.actions, "a violation must come with a counterexample"
    for n in row["holds"]:
        v = by_number[n]
        assert v.status == "holds", f"property {n} ({v.prop.name}): {v.status} {v.detail}"
    if "states" in row:  # the manifest: a model change that moves a state count must say so here
        got = [s.states for s in result.searches]
        assert got == row["states"], f"distinct states {got}, the manifest says {row['states']}"
