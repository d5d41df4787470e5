"""The event-driven search stops once the complete untimed search has settled the rest (runner/verdicts.py
_goal; issue 17: a search that has settled a verdict does not wait for another search's cap). The labels, the
traces and the violations found must be those of the search run to its cap; the three loops (compiled, Python,
plain) must stop at the same state."""

from __future__ import annotations

import pytest

from ipvs_verify.engines.checks import GOAL_MET, Goal
from ipvs_verify.engines.explicit import explore, explore_packed_python, explore_plain
from ipvs_verify.model.config import make_config
from ipvs_verify.properties.catalog import PROPERTIES, searched_system
from ipvs_verify.runner.matrix import DEFAULT_SCOPE
from ipvs_verify.runner.verdicts import check_config

CELLS = [("K46", 1, "routed"), ("K516", 1, "routed"), ("KT17", 1, "routed")]


@pytest.mark.parametrize("variant,mode,net", CELLS)
def test_a_settled_search_gives_the_labels_and_traces_of_a_full_one(variant: str, mode: int, net: str) -> None:
    cfg = make_config(variant, "1.30", {"conn_reuse_mode": mode}, DEFAULT_SCOPE, pod_network=net)
    settled = check_config(cfg, PROPERTIES, 120_000)
    full = check_config(cfg, PROPERTIES, 120_000, settle=False)
    assert [(v.prop_name, v.status, v.actions, v.loop_start, v.timing) for v in settled.verdicts] == [
        (v.prop_name, v.status, v.actions, v.loop_start, v.timing) for v in full.verdicts]
    same = ("states", "transitions", "depth", "complete", "bound")  # the untimed search is the same either way
    assert [getattr(settled.searches[1], k) for k in same] == [getattr(full.searches[1], k) for k in same]
    event = settled.searches[0]
    if event.bound == GOAL_MET:
        assert event.states <= full.searches[0].states and not event.complete


def test_every_loop_stops_at_the_same_state() -> None:
    cfg = make_config("K516", "1.30", {"conn_reuse_mode": 1}, DEFAULT_SCOPE)
    sys = searched_system(cfg, "event", PROPERTIES)
    full = explore(sys, PROPERTIES, 120_000)
    wanted = frozenset(full.violations)
    goal = Goal(wanted, frozenset((p, r) for p, names in full.reached.items() for r in names))
    runs = [explore(sys, PROPERTIES, 120_000, goal=goal), explore_packed_python(sys, PROPERTIES, 120_000, goal=goal),
            explore_plain(sys, PROPERTIES, 120_000, goal=goal)]
    for ex in runs:
        assert ex.bound == GOAL_MET and not ex.complete
        assert set(ex.violations) == wanted
        assert {k: (f.src, f.action) for k, f in ex.violations.items()} == {
            k: (f.src, f.action) for k, f in full.violations.items()}  # the same first violations: the same traces
    assert len({ex.n_states for ex in runs}) == 1 and runs[0].n_states < full.n_states


def test_an_empty_goal_searches_nothing_and_a_goal_never_met_runs_to_the_cap() -> None:
    cfg = make_config("K46", "1.30", {"conn_reuse_mode": 0}, DEFAULT_SCOPE)
    sys = searched_system(cfg, "event", PROPERTIES)
    empty = explore(sys, PROPERTIES, 5_000, goal=Goal(frozenset(), frozenset()))
    assert empty.bound == GOAL_MET and empty.n_edges == 0
    never = explore(sys, PROPERTIES, 5_000, goal=Goal(frozenset({"no-such-property"}), frozenset()))
    assert never.bound == "state cap 5000"
