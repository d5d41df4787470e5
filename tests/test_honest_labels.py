"""A label never claims more than the searches behind it showed: a state cap (0 included) can only weaken a
cell's verdicts, to "bounded", never turn one into "holds", "vacuous" or another verdict."""

from __future__ import annotations

import pytest

from ipvs_verify.properties.catalog import PROPERTIES
from ipvs_verify.runner.expected import load_manifest
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, cell_key, default_cells
from ipvs_verify.runner.verdicts import check_config

ENTRIES = load_manifest()
CAPS = (0, 1, 300, 3_000, 10_000)


@pytest.mark.parametrize("spec", default_cells(), ids=lambda c: c.slug)
def test_a_cap_only_weakens_a_verdict(spec) -> None:  # type: ignore[no-untyped-def]
    config = spec.config(DEFAULT_SCOPE)
    truth = ENTRIES[cell_key(spec, config.scope)].verdicts
    kept = 0
    for cap in CAPS:
        result = check_config(config, PROPERTIES, cap)
        for v in result.verdicts:
            assert v.status in ("bounded", truth[v.prop_name]), (
                f"cap {cap}: {v.prop_name} says {v.status} ({v.detail}); uncapped it is {truth[v.prop_name]}")
            if v.status == "bounded":
                assert "cap" in v.detail, "a bounded label says which cap stopped which search"
            kept += v.status == truth[v.prop_name] and v.status != "n/a"
        if cap == 0:
            assert all(v.status in ("bounded", "n/a") for v in result.verdicts)
    assert kept, "some cap must be large enough to settle a verdict (else this test proves nothing)"
