"""The manifest of expected verdicts: every cell the project pins, by name, with its verdict per property
and the distinct states of its searches (tlaplus/Examples keeps such a manifest; a model change that moves a
verdict or a state count must say so there, on purpose).

`ipvs-verify matrix` compares each cell it ran with the manifest's entry of that cell (exit 1 when a verdict
or a pinned state count moved, with the differences listed); `--update-expected` writes what it found. A
cell is named by its slug and its scope tag (matrix.cell_key); an entry also says how to rebuild the cell, so
the tests can run every entry.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ipvs_verify.errors import UserError
from ipvs_verify.model.config import Scope
from ipvs_verify.properties.catalog import BY_NAME, PROPERTIES
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, CellSpec, cell_key
from ipvs_verify.runner.verdicts import VERDICTS, CellResult

MANIFEST = Path(__file__).resolve().parent.parent / "expected_verdicts.yaml"  # package data
FORMAT = "ipvs-verify-expected"
VERSION = 1

_HEADER = """\
# Expected verdicts: every pinned cell by name (its matrix slug and scope tag), how to rebuild it, the distinct
# states of its event-driven and (where it ran) untimed searches, and its verdict per property.
# Checked by `ipvs-verify matrix` (exit 1 when a verdict moves) and by tests/test_expected_verdicts.py.
# Regenerate with `ipvs-verify matrix ... --update-expected`, on purpose, saying why in the commit.
"""


@dataclass(frozen=True)
class Entry:
    key: str
    spec: CellSpec
    scope: Scope
    states: tuple[int, ...] | None
    verdicts: dict[str, str]
    note: str = ""


@dataclass(frozen=True)
class Moved:
    """One difference between a run and the manifest."""

    cell: str
    what: str  # a property name, or "states"
    expected: str
    got: str


def _spec_to_data(spec: CellSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"variant": spec.variant, "kube_proxy": spec.kube_proxy,
                         "overrides": _flow({k: v for k, v in spec.overrides})}
    if spec.protocol not in (None, "tcp"):
        d["protocol"] = spec.protocol
    if spec.persistence:
        d["persistence"] = spec.persistence
    if spec.scheduler != "rr":
        d["scheduler"] = spec.scheduler
    if spec.pod_network != "routed":
        d["pod_network"] = spec.pod_network
    if spec.client != "app":
        d["client"] = spec.client
    if spec.invalid_drop:
        d["invalid_drop"] = True
    return d


def _scope_to_data(scope: Scope) -> dict[str, Any]:
    """The scope's fields that differ from the default scope (protocol and persistence belong to the cell)."""
    base = replace(scope, protocol=DEFAULT_SCOPE.protocol, persistence=DEFAULT_SCOPE.persistence)
    out: dict[str, Any] = {}
    for f in fields(Scope):
        if f.name in ("protocol", "persistence"):
            continue
        v = getattr(base, f.name)
        if v != getattr(DEFAULT_SCOPE, f.name):
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def _where(path: Path, key: str, field: str) -> str:
    return f"{path}: cells.{key}.{field}"


def load_manifest(path: Path = MANIFEST) -> dict[str, Entry]:
    """Read a manifest; any malformed part is a UserError naming the file and the place."""
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such manifest file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the manifest ({e})") from None
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{line}: not valid YAML") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: expected a mapping with format: {FORMAT}")
    if data.get("version") != VERSION:
        raise UserError(f"{path}: version: expected {VERSION}, got {data.get('version')!r}")
    cells = data.get("cells")
    if not isinstance(cells, dict):
        raise UserError(f"{path}: cells: expected a mapping of cell names to entries")
    out: dict[str, Entry] = {}
    for key, raw in cells.items():
        out[str(key)] = _entry(path, str(key), raw)
    return out


def _entry(path: Path, key: str, raw: Any) -> Entry:
    if not isinstance(raw, dict):
        raise UserError(f"{path}: cells.{key}: expected a mapping")
    unknown = set(raw) - {"cell", "scope", "states", "verdicts", "note"}
    if unknown:
        raise UserError(f"{path}: cells.{key}: unknown key {sorted(unknown)[0]!r} "
                        "(expected cell, scope, states, verdicts, note)")
    cell = raw.get("cell")
    if not isinstance(cell, dict) or not isinstance(cell.get("variant"), str):
        raise UserError(f"{_where(path, key, 'cell')}: expected a mapping with variant, kube_proxy, overrides")
    try:
        spec = CellSpec(cell["variant"], str(cell.get("kube_proxy", "1.30")),
                        tuple(sorted((str(k), int(v)) for k, v in (cell.get("overrides") or {}).items())),
                        cell.get("protocol", "tcp"), int(cell.get("persistence", 0)), cell.get("scheduler", "rr"),
                        cell.get("pod_network", "routed"), client=str(cell.get("client", "app")),
                        invalid_drop=bool(cell.get("invalid_drop", False)))
        sc: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in (raw.get("scope") or {}).items()}
        scope = replace(DEFAULT_SCOPE, **sc)
    except (TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{_where(path, key, 'cell')}: {e}") from None
    if cell_key(spec, spec_scope(spec, scope)) != key:
        raise UserError(f"{_where(path, key, 'cell')}: describes cell "
                        f"{cell_key(spec, spec_scope(spec, scope))}, not {key}")
    states = raw.get("states")
    if states is not None and not (isinstance(states, list) and all(isinstance(n, int) for n in states)):
        raise UserError(f"{_where(path, key, 'states')}: expected a list of integers")
    verdicts = raw.get("verdicts")
    if not isinstance(verdicts, dict):
        raise UserError(f"{_where(path, key, 'verdicts')}: expected a mapping of property names to verdicts")
    for name, status in verdicts.items():
        if name not in BY_NAME:
            raise UserError(f"{_where(path, key, 'verdicts')}.{name}: unknown property "
                            f"(expected one of {', '.join(p.name for p in PROPERTIES)})")
        if status not in VERDICTS:
            raise UserError(f"{_where(path, key, 'verdicts')}.{name}: expected one of {', '.join(VERDICTS)}, "
                            f"got {status!r}")
    return Entry(key, spec, scope, tuple(states) if states is not None else None, dict(verdicts),
                 str(raw.get("note", "")))


def spec_scope(spec: CellSpec, scope: Scope) -> Scope:
    """The scope a cell's searches ran at (the cell's protocol and persistence applied)."""
    return spec.config(scope).scope


def compare(entries: dict[str, Entry], keys: list[str], results: list[CellResult], pin_states: bool
            ) -> tuple[list[Moved], list[str]]:
    """(what moved, the cells the manifest does not have). Only the properties that ran are compared;
    state counts only when `pin_states` (every property, the default cap: what the manifest pins)."""
    moved: list[Moved] = []
    missing: list[str] = []
    for key, res in zip(keys, results, strict=True):
        entry = entries.get(key)
        if entry is None:
            missing.append(key)
            continue
        for v in res.verdicts:
            want = entry.verdicts.get(v.prop_name)
            if want is not None and want != v.status:
                moved.append(Moved(key, v.prop_name, want, v.status))
        got = tuple(s.states for s in res.searches)
        if pin_states and entry.states is not None and got != entry.states:
            moved.append(Moved(key, "states", ", ".join(map(str, entry.states)), ", ".join(map(str, got))))
    return moved, missing


def update_manifest(path: Path, specs: list[CellSpec], scope: Scope, results: list[CellResult],
                    pin_states: bool) -> int:
    """Write what the run found into the manifest (its other cells kept, in their order); returns the count."""
    entries = load_manifest(path) if path.exists() else {}
    for spec, res in zip(specs, results, strict=True):
        key = cell_key(spec, res.config.scope)
        old = entries.get(key)
        verdicts = dict(old.verdicts) if old else {}
        verdicts.update({v.prop_name: v.status for v in res.verdicts})
        order = {p.name: i for i, p in enumerate(PROPERTIES)}
        verdicts = dict(sorted(verdicts.items(), key=lambda kv: order[kv[0]]))
        states = tuple(s.states for s in res.searches) if pin_states else (old.states if old else None)
        entries[key] = Entry(key, spec, scope, states, verdicts, old.note if old else "")
    write_manifest(path, entries)
    return len(specs)


def _flow(value: dict[str, Any] | list[Any]) -> CommentedMap | CommentedSeq:
    node = CommentedMap(value) if isinstance(value, dict) else CommentedSeq(value)
    node.fa.set_flow_style()
    return node


def write_manifest(path: Path, entries: dict[str, Entry]) -> None:
    """One entry a few lines: the cell and its counts in flow style, a verdict a line (diffs read well)."""
    cells: dict[str, Any] = {}
    for key, e in entries.items():
        d: dict[str, Any] = {"cell": _flow(_spec_to_data(e.spec))}
        sc = _scope_to_data(e.scope)
        if sc:
            d["scope"] = _flow(sc)
        if e.states is not None:
            d["states"] = _flow(list(e.states))
        d["verdicts"] = dict(e.verdicts)
        if e.note:
            d["note"] = e.note
        cells[key] = d
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 120
    with path.open("w", encoding="utf-8") as fh:
        fh.write(_HEADER)
        yaml.dump({"format": FORMAT, "version": VERSION, "cells": cells}, fh)
