"""The verdicts the issue expects, found by search (the explicit engine), not by scripted traces."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import cell

EXPECTED = YAML(typ="safe").load(Path(__file__).with_name("expected_verdicts.yaml").read_text())


@pytest.mark.parametrize("row", EXPECTED, ids=lambda r: f"{r['variant']}-mode{r['mode']}")
def test_expected_verdicts(row: dict) -> None:
    result = cell(row["variant"], row["mode"])
    by_number = {v.prop.number: v for v in result.verdicts}
    for n in row["violated"]:
        v = by_number[n]
        assert v.status == "violated", f"property {n} ({v.prop.name}): {v.status} {v.detail}"
        assert v.actions, "a violation must come with a counterexample"
    for n in row["holds"]:
        v = by_number[n]
        assert v.status == "holds", f"property {n} ({v.prop.name}): {v.status} {v.detail}"
