"""The Hypothesis stateful suite: for each (variant, conn_reuse_mode, safety property) cell of the default
matrix, Hypothesis must find a violation where the explicit engine found one, and none where the property
holds, and it must reach the property's "sometimes" states.

Only the properties a cell's scope is about run there (property 10 needs UDP; 4, 8 and 9 need TCP).
The expectation is not written here: it comes from the manifest of expected verdicts
(ipvs_verify/expected_verdicts.yaml, itself checked against the explicit engine by test_expected_verdicts.py)
or else from the explicit engine's verdict for the cell (`cell()`, computed once per session and shared with
that test).

Default run: the issue's cases (ISSUE_CASES: the properties the issues name, in the cells they name, UDP and
older kube-proxy included), plus every safety property in one cell per variant family (K41 mode 1, K46 mode 0,
K59 mode 0, KT17 mode 1). The other cells of the manifest and of the default matrix are
marked `stateful_matrix` and run with --stateful-full, --variant, or the thorough profile. Liveness
properties (5, 6) are not Hypothesis' job: a finite random run cannot exhibit a fair cycle (the explicit
lasso search decides them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from ipvs_verify.engines.stateful import SAFETY, WIDE_SCOPES, SearchResult, quiet, search
from ipvs_verify.presentation.story import story_markdown
from ipvs_verify.presentation.trace import load_trace, replay_trace
from ipvs_verify.properties.catalog import PROPERTIES, Property, missing_needs
from ipvs_verify.runner.expected import load_manifest
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, CellSpec, default_cells
from tests.conftest import cell_at
from tests.stateful_plugin import REPORT_PROPERTY, profile_name, run_seed, trace_dir, variant_marker


def _spec(variant: str, mode: int, kube_proxy: str = "1.30", protocol: str = "tcp", scheduler: str = "rr",
          pod_network: str = "routed", client: str = "app", invalid_drop: bool = False) -> CellSpec:
    return CellSpec(variant, kube_proxy, (("conn_reuse_mode", mode),), protocol, 0, scheduler,  # as default_cells
                    pod_network, client=client, invalid_drop=invalid_drop)


# Which cases run by default (a selection of tests, not an expectation): the properties the issues name.
# #70747 with a crashed client's confirmed conntrack (T5) is hunted in K46U mode 1 by default; the same
# mechanism in K59 and K516 mode 1 takes a minute each to find and runs with --stateful-full.
ISSUE_CASES: dict[CellSpec, tuple[int, ...]] = {
    _spec("K46", 0): (1, 2, 5), _spec("K46", 1): (1, 3), _spec("K46U", 1): (1, 3), _spec("K59", 1): (1,),
    _spec("K516", 1): (1,), _spec("K59", 0): (1,), _spec("K516", 0): (1,), _spec("K46UW", 0): (1,),
    _spec("KT17", 1): (3,), _spec("K41", 1): (8,),
    _spec("K46", 0, "1.14.0", "udp"): (5, 6, 10), _spec("K516", 1, "1.14.0", "udp"): (5, 10),
    _spec("K46", 0, "1.30", "udp"): (5, 6, 10), _spec("K59", 1, "1.30", "udp"): (5, 6, 10),
    _spec("K516", 0, "1.13.0"): (1, 2), _spec("K516", 1, scheduler="sh"): (1, 3, 11),
    _spec("K516", 1, scheduler="sh-fallback"): (11,),
    # the bridge pod network (issue 14): a failed connect leaves a confirmed SYN_SENT conntrack entry
    _spec("K516", 0, pod_network="bridge"): (1, 3), _spec("K46", 0, pod_network="bridge"): (1,),
    # a load tester's clients (bound ports, SO_LINGER 0 resets): #70747 and #81775 as for an app's
    _spec("K46", 1, client="load-tester"): (1, 3), _spec("K46", 0, client="load-tester"): (1,),
    # a node that drops INVALID: a reschedule past a live conntrack entry loses the pod's SYN-ACK (issue 14)
    _spec("KT17", 1, pod_network="bridge", invalid_drop=True): (3,),
}
# The manifest's cells at the default scope (the Hypothesis suite runs at that scope), by spec
MANIFEST = {e.spec: e for e in load_manifest().values() if e.scope == DEFAULT_SCOPE}
FAMILY_CELLS = {_spec("K41", 1), _spec("K46", 0), _spec("K59", 0), _spec("KT17", 1)}  # one per variant family


@dataclass(frozen=True)
class Case:
    spec: CellSpec
    prop: Property

    @property
    def variant(self) -> str:
        return self.spec.variant

    @property
    def mode(self) -> int:
        return dict(self.spec.overrides)["conn_reuse_mode"]

    @property
    def default(self) -> bool:
        return self.spec in FAMILY_CELLS or self.prop.number in ISSUE_CASES.get(self.spec, ())

    @property
    def id(self) -> str:
        return f"{self.spec.slug}-{self.prop.number}-{self.prop.name}"


def _cells() -> list[CellSpec]:
    """The default matrix, then the manifest's other cells at the default scope (UDP, older kube-proxy...)."""
    cells = default_cells()
    return cells + [c for c in MANIFEST if c not in cells]


CASES = [
    Case(spec, prop) for spec in _cells() for prop in SAFETY
    if not missing_needs(prop, replace(DEFAULT_SCOPE, protocol=spec.protocol or DEFAULT_SCOPE.protocol))
]


def _param(case: Case) -> Any:
    marks = [pytest.mark.stateful, getattr(pytest.mark, variant_marker(case.variant))]
    if not case.default:
        marks.append(pytest.mark.stateful_matrix)
    return pytest.param(case, id=case.id, marks=marks)


def expectation(case: Case) -> tuple[str, str]:
    """(verdict, where it comes from)."""
    entry = MANIFEST.get(case.spec)
    listed = entry.verdicts.get(case.prop.name) if entry else None
    if listed:
        return listed, "the manifest (ipvs_verify/expected_verdicts.yaml)"
    result = cell_at(case.spec, DEFAULT_SCOPE)
    verdict = next(v for v in result.verdicts if v.prop_name == case.prop.name)
    return verdict.status, "explicit engine"


def budget() -> settings:
    """The loaded profile's settings (ci by default), without the explain phase."""
    current = settings.default
    assert current is not None
    return quiet(current)


# A search for a violation the explicit engine found stops at the first one it finds, so it may run longer than
# the watching runs (which must run their whole budget): some violations need five chosen steps (a client
# crash, then a pod delete and a sync, then the port reused) among the dozen actions each state offers
HUNT_EXAMPLES = 300


def _search(case: Case, raise_on: tuple[Property, ...], seed: int) -> SearchResult:
    wide = profile_name() == "thorough"
    hunt = budget() if wide else settings(budget(), max_examples=max(budget().max_examples, HUNT_EXAMPLES))
    return search(case.spec.config, raise_on, hunt, seed,
                  scopes=WIDE_SCOPES if wide else None, scope=None if wide else DEFAULT_SCOPE)


@functools.cache
def watch_run(spec: CellSpec, profile: str, seed: int) -> SearchResult:
    """One search per cell that fails on nothing and counts every safety property (for the "holds" tests)."""
    del profile  # part of the cache key: the budget comes from the loaded profile
    wide = profile_name() == "thorough"
    return search(spec.config, (), budget(), seed,
                  scopes=WIDE_SCOPES if wide else None, scope=None if wide else DEFAULT_SCOPE)


def save(result: SearchResult, case: Case, out: Path) -> Path:
    assert result.trace is not None and result.violation is not None
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{case.spec.slug}--{result.violation.prop.name}.json"
    path.write_text(result.trace.to_json())
    path.with_suffix(".md").write_text(story_markdown(result.trace))
    return path


def _report(request: pytest.FixtureRequest, case: Case, expected: tuple[str, str], result: SearchResult,
            outcome: str, trace: Path | None) -> None:
    # on the test's report, so the summary has it from every pytest-xdist worker (tests/stateful_plugin.py)
    request.node.user_properties.append((REPORT_PROPERTY, {
        "test": case.id, "property": case.prop.name, "expected": expected[0], "source": expected[1],
        "outcome": outcome, "coverage": result.coverage.as_json(), "trace": str(trace) if trace else None,
    }))


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_hypothesis_agrees_with_the_explicit_verdict(case: Case, request: pytest.FixtureRequest) -> None:
    expected = expectation(case)
    status = expected[0]
    if status not in ("holds", "violated", "vacuous"):
        pytest.skip(f"the explicit verdict is '{status}': nothing for Hypothesis to agree with")
    seed = run_seed(request.config)
    out = trace_dir(request.config)
    if status == "violated":
        result = _search(case, (case.prop,), seed)
        if not result.found:
            _report(request, case, expected, result, "NOT FOUND", None)
            cov = result.coverage
            pytest.fail(f"{case.id}: the explicit engine finds a violation; Hypothesis found none in "
                        f"{cov.examples} examples ({cov.steps} steps, seed {seed}, profile {profile_name()})")
        path = save(result, case, out)
        assert result.violation is not None
        _report(request, case, expected, result,
                f"found at example {result.coverage.first_found_example} after "
                f"{result.coverage.first_found_seconds:.2f} s; shrunk to {len(result.violation.actions)} steps, "
                f"minimised to {len(result.minimised)}", path)
        replay = replay_trace(load_trace(path), path)
        assert replay.reproduces, f"{path}: the replay differs from the saved trace: {replay.problems}"
        assert replay.violated, f"{path}: the saved counterexample does not replay as a violation"
        return
    watched = watch_run(case.spec, profile_name(), seed)
    cov = watched.coverage
    if cov.violations[case.prop.name]:
        # the watching run saw a violation: search again, failing on it, to shrink and save it
        result = _search(case, (case.prop,), seed)
        saved = save(result, case, out) if result.found else None
        _report(request, case, expected, result, "VIOLATED", saved)
        pytest.fail(f"{case.id}: the explicit engine says '{status}' at the default scope, but Hypothesis "
                    f"found a violation (profile {profile_name()}, seed {seed}): {saved}")
    missing = cov.missing(case.prop)
    if missing and status != "vacuous":
        _report(request, case, expected, watched, "VACUOUS", None)
        pytest.fail(f"{case.id}: no violation, but the run never reached: {'; '.join(missing)} "
                    f"({cov.examples} examples, {cov.steps} steps): that would be a vacuous pass")
    note = "no violation" + (f"; never reached: {'; '.join(missing)}" if missing else "")
    if status == "vacuous" and not missing:
        note += " (reached in exact timing, though the event-driven search never did)"
    _report(request, case, expected, watched, note, None)


def test_a_run_that_misses_the_interesting_states_is_reported() -> None:
    """The vacuity guard: one example of one step cannot reach property 1's states, and says so."""
    prop = next(p for p in SAFETY if p.number == 1)
    tiny = settings(budget(), max_examples=1, stateful_step_count=2)  # the topology, then one step
    result = search(_spec("K46", 0).config, (), tiny, 0, scope=DEFAULT_SCOPE)
    assert result.coverage.steps == 1 and not result.found
    assert set(result.coverage.missing(prop)) == {r.name for r in prop.sometimes}


def test_liveness_is_refused() -> None:
    live = next(p for p in PROPERTIES if p.kind == "liveness")
    with pytest.raises(ValueError, match="safety properties only"):
        search(_spec("K46", 0).config, (live,), budget(), 0, scope=DEFAULT_SCOPE)
