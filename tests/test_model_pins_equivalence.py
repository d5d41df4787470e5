"""model/equivalence.py: the matrix searches once for cells that are one transition system. Sound only if a
variant reaches the model through the three decision points the key tabulates; the source is checked for
that, and equal keys are checked to give equal explorations and results."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from ipvs_verify.engines.explicit import explore_plain
from ipvs_verify.model.config import make_config
from ipvs_verify.model.equivalence import VARIANT_POINTS, model_key
from ipvs_verify.model.system import System
from ipvs_verify.properties.catalog import PROPERTIES
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, default_cells, run_matrix

MODEL = Path(__file__).resolve().parent.parent / "model"
SMALL = dataclasses.replace(DEFAULT_SCOPE, changes=1, client_crashes=False)
# the functions of the variant-reading modules that the rest of the model may call: the three points
ENTRY_POINTS = {"reuse_block", "status_block", "flushes_deleted_dest"}


def _tree(name: str) -> ast.Module:
    return ast.parse((MODEL / name).read_text())


def test_only_the_decision_modules_read_a_variants_features() -> None:
    readers = {p.name for p in MODEL.glob("*.py") for node in ast.walk(_tree(p.name))
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "has"}
    assert readers == {"ip_vs_in.py", "ip_vs_ctl.py"}


def test_the_rest_of_the_model_reaches_them_through_the_three_points() -> None:
    called: set[str] = set()
    for p in MODEL.glob("*.py"):
        for node in ast.walk(_tree(p.name)):
            if isinstance(node, ast.ImportFrom) and node.module in ("ipvs_verify.model.ip_vs_in",
                                                                     "ipvs_verify.model.ip_vs_ctl"):
                called |= {a.name for a in node.names if a.name[0].islower()}  # functions, not types
    assert called <= ENTRY_POINTS, called - ENTRY_POINTS
    assert {"port-reuse", "server-status", "deleted-dest-flush"} == set(VARIANT_POINTS)


def _key(variant: str, mode: int, **kw: object) -> object:
    return model_key(make_config(variant, "1.30", {"conn_reuse_mode": mode}, SMALL, **kw))  # type: ignore[arg-type]


def test_keys_join_the_same_models_and_part_the_others() -> None:
    assert _key("K41", 0) == _key("K46", 0) == _key("K46U", 0) == _key("KT17", 0)
    assert _key("K59", 1) == _key("K516", 1)
    assert _key("K46", 1) != _key("K516", 1)  # #70747's drop against f0a5e4d7's reschedule
    assert _key("K46", 0) != _key("K46", 0, pod_network="bridge")
    assert _key("K516", 0) != _key("K46UW", 0)  # the 5.9 flush


def test_equal_keys_explore_the_same_states_and_edges() -> None:
    a, b = (explore_plain(System(make_config(v, "1.30", {"conn_reuse_mode": 0}, SMALL), "untimed"), PROPERTIES)
            for v in ("K41", "KT17"))
    assert a.complete and b.complete and a.n_states > 200
    assert a.keys == b.keys and a.edge_dst == b.edge_dst and a.edge_label == b.edge_label


def test_a_shared_cell_has_the_result_of_its_own_search() -> None:
    cells = default_cells(("K46", "K46U"), (0,), pod_networks=("routed",))
    shared = run_matrix(cells, SMALL, jobs=1, cap=20_000)
    alone = run_matrix(cells[1:], SMALL, jobs=1, cap=20_000)[0]
    assert shared[1].same_as == cells[0].slug and not alone.same_as
    assert shared[1].config == alone.config
    assert [(v.prop_name, v.status, v.actions) for v in shared[1].verdicts] == [
        (v.prop_name, v.status, v.actions) for v in alone.verdicts]
    assert [s.states for s in shared[1].searches] == [s.states for s in alone.searches]
