"""The Z3 engine (issue 4): its encoding equals System.step, its verdicts agree with the explicit engine,
its traces replay in the explicit model, and it never passes silently.

Coverage of the default run (IPVS_SMT_FULL=1 runs every cell, both timings, every edge):
* concrete evaluation of the encoding (the code that builds the Z3 terms, folded on Python values): every
  state and transition of the complete untimed exploration of K41/1 and of K46U/1 with conntrack=0
  (3,513 + 3,281 states, 15,607 + 14,107 transitions), and of the event-driven exploration of K59/0 up
  to 1,500 states;
* Z3's own evaluation of the relation: every 100th of those transitions (every 10th with IPVS_SMT_FULL);
* decision tables: every key of every table, in Z3, for one cell; reuse/status tables for all 14 cells;
* BMC against the explicit engine on all 14 cells (depth 5); induction against the complete untimed search
  on 3 cells (all 14 with IPVS_SMT_FULL).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import z3

from ipvs_verify.engines.bmc import EncodingError, Relation, run_bmc, supported
from ipvs_verify.engines.explicit import explore
from ipvs_verify.engines.induction import run_induction
from ipvs_verify.engines.smt_encoding import REACH_FACTS, Encoding, UnsupportedConfig, property_facts
from ipvs_verify.model.config import Config
from ipvs_verify.model.system import System
from ipvs_verify.presentation.minimise import minimise, violates
from ipvs_verify.presentation.trace import build_trace, replay_trace
from ipvs_verify.properties.catalog import BY_NAME, PROPERTIES
from ipvs_verify.runner.matrix import DEFAULT_SCOPE as MATRIX_SCOPE
from ipvs_verify.runner.matrix import CellSpec, default_cells
from ipvs_verify.runner.report import VerdictReport

FULL = os.environ.get("IPVS_SMT_FULL") == "1"
# the encoding covers the default matrix's scope but for client crashes (refused below, as the bridge is)
DEFAULT_SCOPE = dataclasses.replace(MATRIX_SCOPE, client_crashes=False, kp_window=False)
SAFETY = tuple(p for p in PROPERTIES if not supported(p, DEFAULT_SCOPE))  # the properties the encoding covers
CELLS = default_cells(pod_networks=("routed",))  # the encoding has the routed pod network only (refused below)


def cfg(variant: str, mode: int) -> Config:
    return CellSpec(variant, "1.30", (("conn_reuse_mode", mode),)).config(DEFAULT_SCOPE)


def _equal_on_exploration(enc: Encoding, max_states: int, z3_every: int) -> tuple[int, int]:
    """Every transition of an explicit exploration: the encoding's step, enabledness and facts equal the model's."""
    ex = explore(enc.sys, (), max_states)
    rel = Relation(enc) if z3_every else None
    for st in ex.states:
        mine = {a for a, e in zip(enc.actions, enc.enabled_all(enc.encode(st)), strict=True) if e}
        model = {enc.key(a) for a in enc.sys.actions(st)}
        assert mine == model, f"enabled actions differ in {st}: smt-only {mine - model}, model-only {model - mine}"
    n_z3 = 0
    for n, (src, a) in enumerate(zip(ex.edge_src, ex.edge_act, strict=True)):
        s = ex.states[src]
        nxt, ev = enc.sys.step(s, a)
        got, facts = enc.step(enc.encode(s), enc.key(a))
        facts.update(enc.state_facts(got))
        want = enc.encode(nxt)
        assert got == want, (f"{a} from {s}: fields differ (smt, model): "
                             f"{ {k: (got[k], v) for k, v in want.items() if got[k] != v} }")
        assert not facts.get("overflow"), f"{a} from {s}: entry bound hit"
        pf = property_facts(facts, enc.o)
        for p in SAFETY:
            assert bool(pf[p.name]) == bool(p.violated(enc.sys, s, a, ev, nxt)), (p.name, a, s, ev)  # type: ignore
            for r in p.sometimes:
                assert bool(facts.get(REACH_FACTS[r.name], False)) == bool(r.holds(enc.sys, s, a, ev, nxt)), (
                    p.name, r.name, a, s, ev)
        if rel is not None and n % z3_every == 0:
            znext, enabled, zprops = rel.evaluate(enc.encode(s), enc.action_id[enc.key(a)])
            assert enabled and znext == want, f"Z3 relation differs at {a} from {s}"
            for p in SAFETY:
                assert zprops[p.name] == bool(p.violated(enc.sys, s, a, ev, nxt)), (p.name, a, s)  # type: ignore
            n_z3 += 1
    return ex.n_edges, n_z3


UNTIMED_CELLS = [(c.variant, c.overrides[0][1], 1) for c in CELLS] if FULL else [("K41", 1, 1)]
UNTIMED_CELLS += [("K46U", 1, 0), ("K41", 1, 0)] if FULL else [("K46U", 1, 0)]  # sysctl conntrack=0: no NFCT
Z3_EVERY = 10 if FULL else 100


@pytest.mark.parametrize("variant,mode,conntrack", UNTIMED_CELLS)
def test_encoding_equals_model_untimed_complete(variant: str, mode: int, conntrack: int) -> None:
    config = CellSpec(variant, "1.30", (("conn_reuse_mode", mode), ("conntrack", conntrack))).config(DEFAULT_SCOPE)
    enc = Encoding(config, "untimed")
    edges, checked = _equal_on_exploration(enc, 2_000_000, Z3_EVERY)
    assert edges > 5000 and checked > 0  # a complete exploration, not a stub


EVENT_CELLS = [(c.variant, c.overrides[0][1]) for c in CELLS] if FULL else [("K59", 0)]


@pytest.mark.parametrize("variant,mode", EVENT_CELLS)
def test_encoding_equals_model_event(variant: str, mode: int) -> None:
    enc = Encoding(cfg(variant, mode), "event")
    edges, _ = _equal_on_exploration(enc, 2_000_000 if FULL else 1500, Z3_EVERY)
    assert edges > 4000


@pytest.mark.parametrize("arith", ["bv", "int"])
def test_tables_in_z3_equal_python_on_whole_domain(arith: str) -> None:
    enc = Encoding(cfg("K59", 0), "event", arith=arith)
    for t in enc.tables():
        keys = [enc.o.var(f"k{i}", k) for i, k in enumerate(t.key_kinds)]
        term = enc.o.z(t(enc.o, *keys), t.out)
        for key, want in t.values.items():
            pairs = [(v, enc.o.z(bool(x) if k == "b" else x, k)) for v, x, k in zip(keys, key, t.key_kinds,
                                                                                       strict=True)]
            got = z3.simplify(z3.substitute(term, *pairs))
            value = z3.is_true(got) if t.out == "b" else (
                got.as_signed_long() if isinstance(got, z3.BitVecNumRef) else got.as_long())
            assert value == want, f"table {t.name} at {key}: z3 {value}, python {want}"


def test_decision_tables_come_from_the_model_for_every_cell() -> None:
    for c in CELLS:
        enc = Encoding(c.config(DEFAULT_SCOPE), "event")
        for fld, t in enc.t_reuse.items():
            for (st, w0, nfct, ct), v in t.values.items():
                from ipvs_verify.model.ip_vs_in import SkbCt, reuse_block
                from ipvs_verify.model.tcp_states import TcpState

                direct = reuse_block(enc.config.variant, enc.config.sysctls, TcpState(st), False, False, bool(nfct),
                                     bool(w0), SkbCt(ct))
                assert v == getattr(direct, fld), (c.slug, fld, st, w0, nfct, ct)


# ---------------------------------------------------------------------- agreement with the explicit engine
BMC_DEPTH = 5


@pytest.mark.parametrize("spec", CELLS, ids=lambda c: c.slug)
def test_bmc_agrees_with_explicit(spec: CellSpec) -> None:
    config = spec.config(DEFAULT_SCOPE)
    ex = explore(System(config, "event"), SAFETY, 4000, keep_edges=False)
    complete_to = 10**9 if ex.complete else ex.max_depth  # BFS: every violation this short is found
    assert complete_to >= BMC_DEPTH
    explicit = {name: ex.depth[f.src] + 1 for name, f in ex.violations.items()}
    run = run_bmc(config, SAFETY, BMC_DEPTH)
    for r in run.results:
        e_depth = explicit.get(r.prop_name)
        e_trace = ex.path_to(ex.violations[r.prop_name].src) + [ex.violations[r.prop_name].action] if e_depth else []
        if r.status == "violated":
            ok = e_depth == r.depth  # both shortest, in the same semantics
        else:
            ok = e_depth is None or e_depth > BMC_DEPTH
        assert ok, (f"{spec.slug} {r.prop_name}: bmc {r.status} at depth {r.depth} {r.actions}; explicit "
                    f"{'violated at depth ' + str(e_depth) if e_depth else 'no violation'} {e_trace}")


# ---------------------------------------------------------------------- traces, vacuity, refusals
def test_bmc_trace_replays_and_minimises() -> None:
    config = cfg("K46", 0)
    prop = BY_NAME["no-new-conn-to-destroyed-pod"]
    run = run_bmc(config, (prop,), 6)
    r = run.results[0]
    assert r.status == "violated" and r.depth == 5
    trace = build_trace(config, r.actions, prop, "bmc", "event")
    assert trace.engine == "bmc"
    rep = replay_trace(trace)
    assert rep.reproduces and rep.violated and len(rep.states) == len(r.actions) + 1
    exact = System(config, "exact")
    small = minimise(exact, prop, r.actions)
    assert violates(exact, prop, small) and len(small) <= len(r.actions)


def test_vacuous_is_reported_not_passed() -> None:
    run = run_bmc(cfg("K46", 0), (BY_NAME["live-conntrack-never-killed"],), 4)
    assert run.results[0].status == "vacuous"


def test_unsatisfiable_assumptions_are_an_error() -> None:
    with pytest.raises(EncodingError, match="unsatisfiable"):
        run_bmc(cfg("K46", 0), (BY_NAME["no-syn-dropped-on-reuse"],), 3,
                assume=lambda enc, s: enc.o.lt(s["budget"], 0, "sm"))


def test_entry_bound_hit_fails_loudly() -> None:
    with pytest.raises(EncodingError, match="more than 1 entries"):
        run_bmc(cfg("K41", 1), (BY_NAME["no-syn-dropped-on-reuse"],), 4, max_entries=1)


def test_unsupported_configurations_are_refused() -> None:
    with pytest.raises(UnsupportedConfig, match="timing 'exact'"):
        Encoding(cfg("K46", 0), "exact")
    for feature in ({"protocol": "udp"}, {"persistence": 10800}):  # model features the encoding does not cover
        config = CellSpec("K516", "1.30", (("conn_reuse_mode", 1),), **feature).config(DEFAULT_SCOPE)  # type: ignore
        assert dataclasses.asdict(config.scope) != dataclasses.asdict(DEFAULT_SCOPE)
        with pytest.raises(UnsupportedConfig, match=f"scope feature '{next(iter(feature))}="):
            run_bmc(config, SAFETY, 2)
    with pytest.raises(UnsupportedConfig, match="scope feature 'client_crashes=True'"):
        run_bmc(cfg("K46", 0).__class__(**{**cfg("K46", 0).__dict__, "scope": MATRIX_SCOPE}), SAFETY, 2)
    bridge = CellSpec("K516", "1.30", (("conn_reuse_mode", 1),), pod_network="bridge").config(DEFAULT_SCOPE)
    with pytest.raises(UnsupportedConfig, match="the bridge pod network .* is not encoded"):
        run_bmc(bridge, SAFETY, 2)
    run = run_bmc(cfg("K46", 0), (BY_NAME["quiesced-dest-eventually-deleted"],), 1)
    assert run.results[0].status == "unsupported"


def test_induction_never_proves_a_violated_property() -> None:
    run = run_induction(cfg("K46", 1), (BY_NAME["no-syn-dropped-on-reuse"],))
    assert run.proofs[0].status == "violated"


def test_induction_failure_reports_the_counterexample_to_induction() -> None:
    run = run_induction(cfg("K516", 0), (BY_NAME["no-new-conn-to-destroyed-pod"],), max_k=1, strengthen=False)
    p = run.proofs[0]
    assert p.status == "cti" and len(p.cti) == 2 and "action" in p.cti[0]


# ---------------------------------------------------------------------- command line
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ipvs_verify.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_engine_bmc_writes_a_replayable_trace(tmp_path: Path) -> None:
    r = _cli("matrix", "--engine", "bmc", "--variants", "K46", "--modes", "1", "--properties", "3,9", "--depth", "3",
             "--json", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    bmc = data["cells"][0]["verdicts"]["bmc"]
    assert bmc["no-syn-dropped-on-reuse"]["status"] == "violated"
    assert bmc["no-syn-dropped-on-reuse"]["depth"] == 2
    assert bmc["control-plane-race"]["status"] == "violated"
    trace = Path(bmc["no-syn-dropped-on-reuse"]["counterexample"])
    shown = _cli("show", str(trace))
    assert shown.returncode == 0 and "still violated" in shown.stdout, shown.stdout + shown.stderr


def test_cli_engine_induction_and_bad_engine(tmp_path: Path) -> None:
    # (the proofs themselves are tested above; a violated property keeps this run short)
    r = _cli("matrix", "--engine", "induction", "--variants", "K46", "--modes", "1", "--properties", "3", "--json",
             "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["cells"][0]["verdicts"]["induction"]["no-syn-dropped-on-reuse"]["status"] == "violated"
    bad = _cli("matrix", "--engine", "spacer", "--variants", "K46", "--modes", "1", "--out", str(tmp_path))
    assert bad.returncode == 2 and "--engine" in bad.stderr and "Traceback" not in bad.stderr


def test_engine_all_reports_disagreements() -> None:
    from ipvs_verify.runner.smt import _compare

    def v(status: str, steps: int | None = None, depth: int | None = None) -> VerdictReport:
        return VerdictReport(status=status, text=status, steps=steps, depth=depth,  # type: ignore[arg-type]
                             timing="event" if steps else None)

    row = {"explicit": {"p": v("violated", steps=3), "q": v("holds")},
           "bmc": {"p": v("bounded", depth=5), "q": v("violated", depth=2)},
           "induction": {"p": v("holds"), "q": v("violated")}}
    found = _compare("cell", row)
    assert len(found) == 4 and all(f.startswith("cell ") for f in found)
    agree = {"explicit": {"p": v("violated", steps=3)}, "bmc": {"p": v("violated", depth=3)},
             "induction": {"p": v("violated")}}
    assert _compare("cell", agree) == []
