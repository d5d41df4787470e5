"""The compiled loop of the packed search (engines/_packed_loop.c) is its Python loop, only faster.

Both apply the same memoised records (engines/packed.py): they must number the same states in the same order,
with the same parents, depths, actions, edges and edge labels, report the same first violations and reached
checks, count the same coverage, stop at a state cap in the same place, and call progress at the same points.
tests/test_packed_search.py compares the packed search (whichever loop this install runs) with the plain one.
"""

from __future__ import annotations

from typing import Any

import pytest

from ipvs_verify.engines import explicit
from ipvs_verify.engines.explicit import Exploration, explore
from ipvs_verify.model.config import Config
from ipvs_verify.model.system import System
from ipvs_verify.properties.catalog import PROPERTIES
from tests.test_packed_search import CASES, _cfg

pytestmark = pytest.mark.skipif(explicit._packed_loop is None,
                                reason="the compiled loop was not built (no C compiler at install)")


def _same(c: Exploration, py: Exploration) -> None:
    assert (c.loop, py.loop) == ("compiled", "python")
    assert c.keys == py.keys
    assert list(c.parent) == list(py.parent) and list(c.depth) == list(py.depth) and c.via == py.via
    assert list(c.edge_start) == list(py.edge_start) and list(c.edge_dst) == list(py.edge_dst)
    assert c.edge_act == py.edge_act and c.edge_ev == py.edge_ev  # labels: each search has its own records
    assert {k: (f.src, f.action) for k, f in c.violations.items()} == {
        k: (f.src, f.action) for k, f in py.violations.items()}
    assert c.reached == py.reached and c.coverage == py.coverage
    assert (c.complete, c.bound) == (py.complete, py.bound)


@pytest.mark.parametrize("name, config, timing, cap", CASES, ids=[c[0] for c in CASES])
def test_compiled_loop_equals_python_loop(name: str, config: Config, timing: str, cap: int) -> None:
    ticks: dict[bool, list[tuple[int, int, int]]] = {True: [], False: []}

    def run(compiled: bool) -> Exploration:
        def progress(states: int, edges: int, depth: int, _seconds: float) -> None:
            ticks[compiled].append((states, edges, depth))

        return explore(System(config, timing), PROPERTIES, cap, progress, compiled=compiled)

    c, py = run(True), run(False)
    assert py.n_edges > py.n_states  # a search of substance
    _same(c, py)
    assert ticks[True] == ticks[False] and ticks[True][-1] == (c.n_states, c.n_edges, c.max_depth)


@pytest.mark.parametrize("cap", [1, 500, 4_000])
def test_compiled_loop_stops_at_the_cap_where_python_does(cap: int) -> None:
    config = _cfg("K46", 1)
    c, py = (explore(System(config, "event"), PROPERTIES, cap, compiled=flag) for flag in (True, False))
    assert not c.complete and c.n_states == cap
    _same(c, py)


def test_compiled_loop_without_edges() -> None:
    config = _cfg("K59", 0)
    c, py = (explore(System(config, "event"), PROPERTIES, 6_000, keep_edges=False, compiled=flag)
             for flag in (True, False))
    assert c.n_edges == 0 and len(c.edge_start) == c.n_states + 1
    _same(c, py)


def test_compiled_loop_passes_on_an_error_from_python(monkeypatch: Any) -> None:
    """An exception raised in a callback (here: building a successor list) leaves the loop as it came."""
    from ipvs_verify.engines.packed import Packer

    def broken(self: Packer, sk: Any, zeros: Any) -> Any:
        raise RuntimeError("no successors")

    monkeypatch.setattr(Packer, "successors", broken)
    with pytest.raises(RuntimeError, match="no successors"):
        explore(System(_cfg("K516", 1), "event"), PROPERTIES, 100)
