"""The manifest of expected verdicts (ipvs_verify/expected_verdicts.yaml): every entry is found by search (the
explicit engine), every verdict and pinned state count of it; the default matrix is pinned whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipvs_verify.errors import UserError
from ipvs_verify.properties.catalog import PROPERTIES
from ipvs_verify.runner.expected import MANIFEST, compare, load_manifest, update_manifest, write_manifest
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, cell_key, default_cells
from tests.conftest import cell_at, prime_cells

ENTRIES = load_manifest()


@pytest.fixture(scope="module", autouse=True)
def _computed_in_parallel() -> None:
    prime_cells([(e.spec, e.scope) for e in ENTRIES.values()])


@pytest.mark.parametrize("key", list(ENTRIES))
def test_cell_has_its_manifest_verdicts(key: str) -> None:
    entry = ENTRIES[key]
    result = cell_at(entry.spec, entry.scope)
    moved, missing = compare(ENTRIES, [key], [result], pin_states=True)
    assert not missing
    assert not moved, "\n".join(f"{m.what}: manifest {m.expected}, search {m.got}" for m in moved)
    assert set(entry.verdicts) == {p.name for p in PROPERTIES}, "an entry pins every property"
    for v in result.verdicts:
        if v.status == "violated":
            assert v.actions, "a violation must come with a counterexample"


def test_the_default_matrix_is_pinned_whole() -> None:
    keys = {cell_key(c, c.config(DEFAULT_SCOPE).scope) for c in default_cells()}
    assert keys <= set(ENTRIES), f"not in the manifest: {sorted(keys - set(ENTRIES))}"


def test_the_manifest_is_written_as_it_is_read(tmp_path: Path) -> None:
    """Regenerating writes the same file: the committed manifest is the writer's own output."""
    out = tmp_path / "m.yaml"
    write_manifest(out, ENTRIES)
    assert out.read_text() == MANIFEST.read_text()


def test_update_writes_what_the_run_found(tmp_path: Path) -> None:
    out = tmp_path / "m.yaml"
    spec = default_cells(("K46",), (0,))[0]
    result = cell_at(spec, DEFAULT_SCOPE)
    update_manifest(out, [spec], DEFAULT_SCOPE, [result], pin_states=True)
    got = load_manifest(out)
    key = cell_key(spec, result.config.scope)
    assert got[key].verdicts == ENTRIES[key].verdicts and got[key].states == ENTRIES[key].states
    # a moved verdict is reported, not silently accepted
    broken = dict(got[key].verdicts)
    broken[PROPERTIES[0].name] = "holds"
    got[key] = got[key].__class__(key, spec, DEFAULT_SCOPE, got[key].states, broken)
    moved, _ = compare(got, [key], [result], pin_states=True)
    assert [(m.what, m.expected, m.got) for m in moved] == [(PROPERTIES[0].name, "holds", "violated")]


@pytest.mark.parametrize("text, expected", [
    ("format: other\n", "expected a mapping with format: ipvs-verify-expected"),
    ("format: ipvs-verify-expected\nversion: 9\ncells: {}\n", "version: expected 1, got 9"),
    ("format: ipvs-verify-expected\nversion: 1\ncells: [1]\n", "cells: expected a mapping"),
    ("format: ipvs-verify-expected\nversion: 1\ncells:\n  X: {cell: {variant: K46}, verdicts: {}}\n",
     "describes cell K46-kp1.30"),
    ("format: ipvs-verify-expected\nversion: 1\ncells:\n  K46-kp1.30-mode0:\n    cell: {variant: K46, "
     "overrides: {conn_reuse_mode: 0}}\n    verdicts: {frob: holds}\n", "verdicts.frob: unknown property"),
    ("format: ipvs-verify-expected\nversion: 1\ncells:\n  K46-kp1.30-mode0:\n    cell: {variant: K46, "
     "overrides: {conn_reuse_mode: 0}}\n    verdicts: {control-plane-race: fine}\n", "expected one of holds"),
    ("format: ipvs-verify-expected\nversion: 1\ncells:\n  K46-kp1.30-mode0:\n    cell: {variant: K46, "
     "overrides: {conn_reuse_mode: 0}}\n    states: [x]\n    verdicts: {}\n", "states: expected a list of integers"),
    ("cells: [\n", "m.yaml:2: not valid YAML"),
])
def test_a_malformed_manifest_is_named(tmp_path: Path, text: str, expected: str) -> None:
    out = tmp_path / "m.yaml"
    out.write_text(text)
    with pytest.raises(UserError) as e:
        load_manifest(out)
    assert str(out) in str(e.value) and expected in str(e.value), str(e.value)
