"""Patches (issue 16): the files, every bad one answered, the hooks reaching every engine, patches that equal
the native variants, the verdict diff and the `check` / `patches` commands with their exit codes."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from ipvs_verify.cli import main
from ipvs_verify.errors import UserError
from ipvs_verify.model.config import Scope, make_config
from ipvs_verify.model.decision_points import DECISION_POINTS, PatchError
from ipvs_verify.model.ip_vs_in import ReuseVerdict, SkbCt
from ipvs_verify.model.system import System
from ipvs_verify.model.tcp_states import TcpState
from ipvs_verify.model.variants import VARIANTS
from ipvs_verify.patching.command import RECORD, load_record, patch_rows, patches_markdown
from ipvs_verify.patching.compare import classify
from ipvs_verify.patching.files import SHIPPED, load_patch, resolve_patch, shipped_patches
from ipvs_verify.runner.matrix import DEFAULT_SCOPE, CellSpec, default_cells
from tests.conftest import cell_at, prime_cells

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    got = capsys.readouterr()
    return int(e.value.code or 0), got.out, got.err


# ---------------------------------------------------------------------- the shipped patches
def test_every_shipped_patch_loads_and_names_itself_by_its_file() -> None:
    patches = shipped_patches()
    assert len(patches) >= 12
    for p in patches:
        assert (SHIPPED / f"{p.id}.yaml").is_file() or (SHIPPED / f"{p.id}.py").is_file(), p.id
        assert p.based_on and p.title and p.base_variants
        assert p.change.origin == f"shipped:{p.path.name}"  # the same in every trace, on every machine


def test_the_upstream_commits_in_the_order_they_landed_make_the_native_variants() -> None:
    """f0a5e4d7 then 35dfb013 then c95c0783 on K46, c95c0783 on K46U (the 4.x stables) and PR 17 on K46."""
    by = {p.id: p.change for p in shipped_patches()}
    chains = {"K46U": ["f0a5e4d7a594"], "K59": ["f0a5e4d7a594", "35dfb013149f"],
              "K516": ["f0a5e4d7a594", "35dfb013149f", "c95c07836fa4"], "K46UW": ["f0a5e4d7a594", "c95c07836fa4"],
              "KT17": ["tencentos-pr17"]}
    for native, ids in chains.items():
        cfg = make_config("K46", "1.30", {"conn_reuse_mode": 1}, patches=tuple(by[i] for i in ids))
        assert cfg.variant.features == VARIANTS[native].features, native
        assert cfg.variant.hooks == ()


AGREE = ("K46U", "K59", "K516", "K46UW", "KT17")
CHAINS = {"K46U": ("f0a5e4d7a594",), "K59": ("f0a5e4d7a594", "35dfb013149f"),
          "K516": ("f0a5e4d7a594", "35dfb013149f", "c95c07836fa4"), "K46UW": ("f0a5e4d7a594", "c95c07836fa4"),
          "KT17": ("tencentos-pr17",)}


def _agreement(cells: list[CellSpec], scope: Scope) -> None:
    by = {p.id: p.change for p in shipped_patches()}
    pairs = [(c, replace(c, variant="K46", patches=tuple(by[i] for i in CHAINS[c.variant]))) for c in cells]
    prime_cells([(c, scope) for pair in pairs for c in pair])
    for native, patched in pairs:
        a, b = cell_at(native, scope), cell_at(patched, scope)
        assert [(v.prop_name, v.status) for v in a.verdicts] == [(v.prop_name, v.status) for v in b.verdicts], \
            native.slug
        assert [(s.timing, s.states, s.transitions) for s in a.searches] == \
               [(s.timing, s.states, s.transitions) for s in b.searches], native.slug


def test_patched_k46_equals_the_native_variants_in_verdicts_and_state_counts() -> None:
    _agreement(default_cells(AGREE, (1,), ("1.30",), pod_networks=("routed",)), Scope())


@pytest.mark.slow
def test_patched_k46_equals_the_native_variants_on_the_whole_default_matrix() -> None:
    _agreement(default_cells(AGREE), DEFAULT_SCOPE)


# ---------------------------------------------------------------------- hooks reach every engine
HOOK = """
    from ipvs_verify.model.ip_vs_in import ReuseVerdict
    ID = "always-resched"
    TITLE = "reschedule every reused SYN at once"
    BASED_ON = "a test"
    BASE = {"variants": ["K46"]}

    def port_reuse(v, s, state, controlled, has_children, nfct, dest_weight_zero, skb_ct):
        return ReuseVerdict(True, False, True, True)

    DECISIONS = {"port-reuse": port_reuse}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_a_python_hook_reaches_the_explicit_search_and_the_smt_tables(tmp_path: Path) -> None:
    from ipvs_verify.engines.smt_encoding import Encoding

    patch = load_patch(write(tmp_path, "hook.py", HOOK))
    cfg = make_config("K46", "1.30", {"conn_reuse_mode": 1}, Scope(), patches=(patch.change,))
    assert cfg.variant.name == "K46+always-resched"
    sys = System(cfg, "event")
    for st in TcpState:
        for ct in SkbCt:
            assert sys.reuse(st, False, True, ct) == ReuseVerdict(True, False, True, True)
    enc = Encoding(cfg)
    table = enc.t_reuse["drop"]
    assert all(not bool(v) for v in table.values.values()), "the SMT engines read the patched decision"
    unpatched = Encoding(make_config("K46", "1.30", {"conn_reuse_mode": 1}, Scope()))
    assert any(bool(v) for v in unpatched.t_reuse["drop"].values.values())


def test_an_unknown_patch_name_lists_the_shipped_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["check", "f0a5e4d7", "-q"], capsys)
    assert code == 2 and "neither a patch file nor a shipped patch" in err and "f0a5e4d7a594" in err


def test_every_decision_point_is_documented() -> None:
    text = (ROOT / "docs" / "patches.md").read_text()
    for name, dp in DECISION_POINTS.items():
        assert f"`{name}`" in text, name
        assert dp.params[0] in ("v", "self")


# ---------------------------------------------------------------------- the diff and the commands
@pytest.mark.parametrize("base,patched,change", [
    ("violated", "holds", "fixed"), ("holds", "violated", "regression"), ("violated", "violated", "still violated"),
    ("holds", "holds", "unchanged"), ("holds", "bounded", "weakened"), ("holds", "undecided", "weakened"),
    ("undecided", "holds", "now holds"), ("bounded", "holds", "now holds"), ("violated", "undecided", "changed"),
    ("n/a", "n/a", "unchanged"), ("vacuous", "holds", "now holds"),
])
def test_classify(base: str, patched: str, change: str) -> None:
    assert classify(base, patched) == change


def test_check_finds_the_regression_of_a_breaking_patch_by_search(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    code, out, err = run(["check", "no-graceful", "--modes", "1", "--pod-network", "routed", "--properties", "4",
                          "--out", str(out_dir), "--no-cache", "-q", "--json", "-j", "1"], capsys)
    assert code == 1, err
    rep = json.loads(out)
    assert rep["format"] == "ipvs-verify-check"
    (row,) = rep["cells"]
    assert (row["base"]["status"], row["patched"]["status"], row["change"]) == ("holds", "violated", "regression")
    trace = Path(row["patched"]["counterexample"])
    assert trace.is_file() and trace.with_name(trace.name.replace(".json", ".md")).is_file()
    assert "graceful-termination-kept" in rep["failures"][0]
    # the saved trace replays through `show` with the same patch, and still violates
    code, out, err = run(["show", str(trace)], capsys)
    assert code == 0 and "still violated" in out, err


def test_check_must_fix_a_patch_that_breaks_nothing_and_the_cache(capsys: pytest.CaptureFixture[str],
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = ["check", "kp85517", "--modes", "0", "--pod-network", "routed", "--properties", "1,3", "-q", "-j", "1",
            "--out", str(tmp_path)]
    code, out, err = run(args + ["--json"], capsys)
    assert code == 0, err
    first = json.loads(out)
    assert first["counts"]["still violated"] == 1 and first["counts"]["unchanged"] == 1
    assert first["baseline_cache_hits"] == 0
    code, out, err = run(args + ["--json"], capsys)
    again = json.loads(out)
    assert again["baseline_cache_hits"] == 2 and again["cells"] == first["cells"]  # both cells, from the cache
    code, _, err = run(args + ["--must-fix", "1"], capsys)
    assert code == 1 and "--must-fix, but it is violated" in err


def test_patches_markdown_is_the_docs_table_and_the_record_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    record = load_record(RECORD)
    rows = patch_rows(record)
    stale = [p.id for p, r in rows if r is None]
    assert not stale, f"ipvs_verify/patch_results.yaml is stale for {stale}: ipvs-verify patches --update"
    table = patches_markdown(rows)
    assert table in (ROOT / "docs" / "patches.md").read_text(), "docs/patches.md: paste `patches --markdown`"
    code, out, _ = run(["patches", "--markdown"], capsys)
    assert code == 0 and out == table


def test_resolve_patch_by_file_and_by_id(tmp_path: Path) -> None:
    assert resolve_patch("f0a5e4d7a594").id == resolve_patch(str(SHIPPED / "f0a5e4d7a594.yaml")).id
    with pytest.raises(UserError):
        resolve_patch(str(tmp_path / "missing.yaml"))


def test_a_hook_that_raises_blames_the_patch_the_point_and_the_input(tmp_path: Path) -> None:
    path = write(tmp_path, "late.py", """
        ID = "late"
        TITLE = "t"
        BASED_ON = "b"
        BASE = {"variants": ["K46"]}

        def f(v, s, skb_ct):
            raise ValueError("no")

        DECISIONS = {"server-status": f}
    """)
    with pytest.raises(UserError, match="on base K46: f: decision point server-status raised ValueError: no "
                                        r"\(input: K46\+late, Sysctls"):
        load_patch(path)
    assert issubclass(PatchError, ValueError)


def test_an_interrupted_check_is_130(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import ipvs_verify.patching.command as command

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "run_with_cache", interrupted)
    code, _, _ = run(["check", "kp85517", "-q"], capsys)
    assert code == 130


def test_check_with_bmc_runs_the_same_patch_through_z3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The Z3 engine reads the patched kube-proxy too: bmc finds the broken connection (it never proves a
    property, so the base is bounded and the change is "changed", not a regression)."""
    code, out, err = run(["check", "no-graceful", "--engine", "bmc", "--modes", "1", "--properties", "4", "--depth",
                          "6", "-q", "--json", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    (row,) = json.loads(out)["cells"]
    assert (row["base"]["status"], row["patched"]["status"], row["change"]) == ("bounded", "violated", "changed")
    assert Path(row["patched"]["counterexample"]).is_file()
    assert "routed cells" in err and "without them" in err


def test_the_hypothesis_suite_finds_a_patch_regression_without_engine_code() -> None:
    """The stateful suite runs the patched System: it finds what no-graceful breaks (property 4)."""
    from hypothesis import settings

    from ipvs_verify.engines.stateful import search
    from ipvs_verify.properties.catalog import BY_NAME

    patch = resolve_patch("no-graceful").change
    prop = BY_NAME["graceful-termination-kept"]
    budget = settings(max_examples=150, deadline=None, database=None)
    found = search(lambda sc: make_config("K516", "1.30", {"conn_reuse_mode": 1}, sc, patches=(patch,)), (prop,),
                   budget, seed=7, scope=DEFAULT_SCOPE)
    assert found.found and found.trace is not None
    assert found.trace.config.patches[0].id == "no-graceful"


SCHED_HOOK = """
    ID = "last-usable"
    TITLE = "schedule the last usable dest of the list"
    BASED_ON = "a test"
    BASE = {"variants": ["K516"]}

    def last(v, name, order, usable, cursor, weights=(), load=(), client_hash=0):
        picks = [d for d, u in zip(order, usable) if u]
        return (picks[-1] if picks else -1), cursor

    DECISIONS = {"scheduler-choice": last}
"""


def test_a_scheduler_choice_hook_reaches_the_model_and_the_smt_tables(tmp_path: Path) -> None:
    from ipvs_verify.engines.smt_encoding import Encoding

    patch = load_patch(write(tmp_path, "last.py", SCHED_HOOK))
    cfg = make_config("K516", "1.30", {"conn_reuse_mode": 1}, Scope(), patches=(patch.change,))
    assert System(cfg).sched.schedule((0, 1, 2), (True, True, False), -1) == (1, -1)
    enc = Encoding(cfg)
    order = enc.order_id[(2, 0, 1)]
    assert enc.t_sched_dest.values[(order, -1, 1, 1, 1)] == 1  # usable by pod: the last of the list, pod b
    bad = write(tmp_path, "bad.py", SCHED_HOOK.replace("return (picks[-1] if picks else -1), cursor", "return 'a'"))
    with pytest.raises(UserError, match="scheduler-choice returned 'a', outside its domain: expected"):
        load_patch(bad)
