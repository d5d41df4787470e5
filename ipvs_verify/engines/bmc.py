"""Bounded model checking with Z3 over the encoding of `smt_encoding.py`.

The transition relation is built once over template variables and instantiated per depth by substitution.
Each depth's queries (one per property still open, one per "sometimes" check not yet reached, and the
encoding's own bound check) are asked under an assumption literal, so that the solver keeps what it learnt
(`incremental="assume"`); `incremental="push"` asks them between push and pop instead (measured slower,
see benchmarks/z3_engine.py).

Timing: the event-driven semantics by default (time jumps to the next deadline). Every run of it is a
real, exactly timed run, so a counterexample replays in the explicit model (`replay_trace`). A search
that finds nothing says "no violation up to depth k" (status "bounded"), never "holds".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import z3

from ipvs_verify.engines.smt_encoding import REACH_FACTS, Encoding, Ops, UnsupportedConfig, Val, property_facts
from ipvs_verify.errors import UserError
from ipvs_verify.model.config import Config, Scope
from ipvs_verify.model.state import State
from ipvs_verify.model.system import Act, Action
from ipvs_verify.properties.catalog import Property, missing_needs


class EncodingError(UserError):
    """The encoding disagrees with the model or its bound was hit: never a verdict."""


class EntryBoundHit(EncodingError):
    """A flow needs more entries than the encoding's bound within the searched depth."""


def supported(prop: Property, scope: Scope | None = None) -> str:
    """Empty if the SMT engines encode `prop` (in `scope`), else why not."""
    if scope is not None and missing_needs(prop, scope):
        return "n/a: the scope has no " + ", ".join(missing_needs(prop, scope))
    if prop.kind != "safety":
        return f"{prop.kind} properties are not encoded for the SMT engines (use the explicit engine)"
    probe = property_facts({}, Ops("int", {}))
    if prop.name not in probe:
        return f"property '{prop.name}' is not encoded (ipvs_verify/engines/smt_encoding.py property_facts)"
    missing = [r.name for r in prop.sometimes if r.name not in REACH_FACTS]
    if missing:
        return f"'sometimes' check(s) not encoded: {'; '.join(missing)}"
    return ""


class Relation:
    """The transition relation over template variables: next-state terms, enabledness and facts."""

    def __init__(self, enc: Encoding) -> None:
        self.enc = enc
        o = enc.o
        self.x = enc.variables("x")
        n_act = len(enc.actions)
        self.act_kind = "act"
        o.widths["act"] = max(2, n_act.bit_length() + 1)
        self.act = o.var("act@x", "act")
        en = enc.enabled_all(self.x)
        nexts: list[dict[str, Val]] = []
        facts: list[dict[str, Val]] = []
        for a in enc.actions:
            n, fa = enc.step(self.x, a)
            nexts.append(n)
            facts.append(fa)
        sel = [o.eq(self.act, i, "act") for i in range(n_act)]
        self.next: dict[str, Val] = {}
        for name, k in enc.schema:
            v = nexts[-1][name]
            for i in reversed(range(n_act - 1)):
                v = o.ite(sel[i], nexts[i][name], v, k)
            self.next[name] = o.z(v, k)
        names = sorted({k for fa in facts for k in fa})
        fact_terms: dict[str, Val] = {}
        for name in names:
            fv: Val = False
            for i in reversed(range(n_act)):
                fv = o.ite(sel[i], facts[i].get(name, False), fv, "b")
            fact_terms[name] = fv
        fact_terms.update(enc.state_facts(self.next))
        self.facts = {k: o.z(v, "b") for k, v in fact_terms.items()}
        self.props = {k: o.z(v, "b") for k, v in property_facts(fact_terms, o).items()}
        self.trans = o.z(o.or_(*[o.and_(sel[i], en[i]) for i in range(n_act)]), "b")

    def evaluate(self, values: dict[str, Val], action: int) -> tuple[dict[str, Any], bool, dict[str, bool]]:
        """Z3's own evaluation of the relation at a concrete state and action (next state, enabled, property facts).

        All terms are packed into one tuple term, so that one substitute + simplify does the whole step.
        """
        o = self.enc
        if not hasattr(self, "_packed"):
            terms = [(k, kind, self.next[k]) for k, kind in o.schema] + [("@enabled", "b", self.trans)]
            terms += [(f"@prop:{k}", "b", v) for k, v in sorted(self.props.items())]
            self._names = [(k, kind) for k, kind, _ in terms]
            self._packed = [v for _, _, v in terms]
        pairs = [(self.x[k], o.o.z(values[k], kind)) for k, kind in o.schema] + [(self.act, o.o.z(action, "act"))]
        got: dict[str, Any] = {}
        if not hasattr(self, "_tup"):
            self._tup = _tuple(self._packed)
        val = z3.simplify(z3.substitute(self._tup, *pairs))
        for (k, kind), v in zip(self._names, _untuple(val, len(self._names)), strict=True):
            got[k] = bool(z3.is_true(v)) if kind == "b" else (v.as_signed_long() if isinstance(v, z3.BitVecNumRef)
                                                              else v.as_long())
        nxt = {k: got[k] for k, _ in o.schema}
        props = {k[6:]: got[k] for k in got if k.startswith("@prop:")}
        return nxt, got["@enabled"], props

    def instantiate(self, cur: dict[str, Val], act: Val, nxt: dict[str, Val]) -> tuple[list[Val], dict[str, Val],
                                                                                    dict[str, Val]]:
        """(constraints, facts, property facts) of one step from `cur` to `nxt` by `act`."""
        pairs = [(self.x[k], cur[k]) for k, _ in self.enc.schema] + [(self.act, act)]
        cons = [z3.substitute(self.trans, *pairs)]
        for name, _ in self.enc.schema:
            cons.append(nxt[name] == z3.substitute(self.next[name], *pairs))
        facts = {k: z3.substitute(v, *pairs) for k, v in self.facts.items()}
        props = {k: z3.substitute(v, *pairs) for k, v in self.props.items()}
        return cons, facts, props


@dataclass
class PropResult:
    prop_name: str
    status: str  # "violated" | "bounded" | "vacuous" | "unsupported" | "n/a"
    depth: int  # the violating depth, or the depth searched
    detail: str = ""
    actions: list[Action] = field(default_factory=list)
    reached: dict[str, int] = field(default_factory=dict)  # "sometimes" check -> first depth reached
    seconds: float = 0.0


@dataclass
class BmcRun:
    config: Config
    timing: str
    max_depth: int
    results: list[PropResult]
    per_depth: list[dict[str, Any]]
    settings: dict[str, Any]
    build_seconds: float
    seconds: float
    statistics: dict[str, Any]


_TUPLES: dict[tuple[str, ...], Any] = {}


def _tuple(terms: list[Val]) -> Val:
    """One datatype value holding every term (so one simplify evaluates them all)."""
    sorts = tuple(t.sort().sexpr() for t in terms)
    if sorts not in _TUPLES:
        dt = z3.Datatype(f"Tup{len(_TUPLES)}")
        dt.declare("mk", *[(f"f{i}", t.sort()) for i, t in enumerate(terms)])
        _TUPLES[sorts] = dt.create()
    return _TUPLES[sorts].mk(*terms)


def _untuple(v: Val, n: int) -> list[Val]:
    return [v.arg(i) for i in range(n)]


def _model_value(m: z3.ModelRef, e: Val, k: str) -> Any:
    v = m.eval(e, model_completion=True)
    if k == "b":
        return bool(z3.is_true(v))
    if isinstance(v, z3.BitVecNumRef):
        return v.as_signed_long()
    return v.as_long()


def run_bmc_growing(config: Config, properties: tuple[Property, ...], max_depth: int = 10, max_entries: int = 2,
                    limit: int = 6, **kw: Any) -> BmcRun:
    """run_bmc, restarted with one more entry slot per flow whenever the bound is hit (up to `limit`)."""
    while True:
        try:
            return run_bmc(config, properties, max_depth, max_entries=max_entries, **kw)
        except EntryBoundHit:
            if max_entries >= limit:
                raise
            max_entries += 1


def run_bmc(
    config: Config,
    properties: tuple[Property, ...],
    max_depth: int = 10,
    timing: str = "event",
    max_entries: int = 2,
    arith: str = "bv",
    incremental: str = "assume",
    time_limit: float | None = None,
    assume: Callable[[Encoding, dict[str, Val]], Val] | None = None,
) -> BmcRun:
    """Search each safety property for a violation at depth 1..max_depth (shortest first).

    `assume(enc, state)` adds a constraint on every state of the run (a user assumption); if the assumptions
    leave no run of the searched length, that is an error, never a pass.
    """
    if incremental not in ("assume", "push"):
        raise ValueError(f"incremental must be 'assume' or 'push', not {incremental!r}")
    t0 = time.perf_counter()
    enc = Encoding(config, timing, max_entries, arith)
    rel = Relation(enc)
    build = time.perf_counter() - t0
    o = enc.o
    solver = z3.SolverFor("QF_BV") if arith == "bv" else z3.SolverFor("QF_LIA")
    states = [enc.variables("0")]
    init = enc.initial()
    solver.add(*[states[0][k] == o.z(init[k], kind) for k, kind in enc.schema])
    if assume is not None:
        solver.add(o.z(assume(enc, states[0]), "b"))
    acts: list[Val] = []
    results: dict[str, PropResult] = {}
    open_props: list[Property] = []
    for p in properties:
        why = supported(p, config.scope)
        if why:
            results[p.name] = PropResult(p.name, "n/a" if why.startswith("n/a") else "unsupported", 0, why)
        else:
            results[p.name] = PropResult(p.name, "bounded", 0)
            open_props.append(p)
    reach_open = {(p.name, r.name) for p in open_props for r in p.sometimes}
    per_depth: list[dict[str, Any]] = []
    queries = 0

    def ask(cond: Val) -> z3.CheckSatResult:
        nonlocal queries
        queries += 1
        if incremental == "assume":
            lit = z3.Bool(f"q{queries}")
            solver.add(z3.Implies(lit, cond))
            return solver.check(lit)
        solver.push()
        solver.add(cond)
        r = solver.check()
        if r == z3.sat:
            ask.model = solver.model()  # type: ignore[attr-defined]
        solver.pop()
        return r

    def model() -> z3.ModelRef:
        return solver.model() if incremental == "assume" else ask.model  # type: ignore[attr-defined]

    depth = 0
    for depth in range(1, max_depth + 1):
        td = time.perf_counter()
        act = o.var(f"act@{depth - 1}", "act")
        acts.append(act)
        states.append(enc.variables(str(depth)))
        cons, facts, props = rel.instantiate(states[depth - 1], act, states[depth])
        solver.add(*cons)
        if assume is not None:
            solver.add(o.z(assume(enc, states[depth]), "b"))
        # one query for all that is still open at this depth; only a sat answer is split up
        found = []
        if ask(z3.Or(facts["overflow"], *[props[p.name] for p in open_props])) == z3.sat:
            if ask(facts["overflow"]) == z3.sat:
                trail = _actions(enc, model(), acts)
                raise EntryBoundHit(f"BMC {config.label}: a flow needs more than {max_entries} entries at depth "
                                    f"{depth} (after {trail}); raise max_entries")
            for p in list(open_props):
                if ask(props[p.name]) == z3.sat:
                    actions = _replay(enc, model(), acts, states)
                    r = results[p.name]
                    r.status, r.depth, r.actions, r.seconds = "violated", depth, actions, time.perf_counter() - t0
                    open_props.remove(p)
                    found.append(p.name)
        reach_facts = sorted({REACH_FACTS[r] for pn, r in reach_open if pn in {p.name for p in open_props}})
        if reach_facts and ask(z3.Or(*[facts[x] for x in reach_facts])) == z3.sat:
            for x in reach_facts:
                if ask(facts[x]) == z3.sat:
                    for pname, rname in sorted(reach_open):
                        if REACH_FACTS[rname] == x:
                            results[pname].reached[rname] = depth
                            reach_open.discard((pname, rname))
        per_depth.append({"depth": depth, "seconds": round(time.perf_counter() - td, 4), "violations": found})
        if not open_props:
            break
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            break
    # vacuity: the assumptions (the initial state and `depth` steps) must be satisfiable
    if solver.check() != z3.sat:
        raise EncodingError(f"BMC {config.label} ({timing}): no run of length {depth} exists: the encoded "
                            "assumptions are unsatisfiable (an encoding error, not a pass)")
    for p in open_props:
        r = results[p.name]
        r.depth, r.seconds = depth, time.perf_counter() - t0
        missing = [x.name for x in p.sometimes if x.name not in r.reached]
        if missing:
            r.status = "vacuous"
            r.detail = f"not reached within depth {depth}: " + "; ".join(missing)
        else:
            r.detail = f"no violation up to depth {depth} (bounded, not a proof)"
    st = solver.statistics()
    stats = {k: st.get_key_value(k) for k in st.keys()}
    return BmcRun(
        config=config, timing=timing, max_depth=max_depth,
        results=[results[p.name] for p in properties], per_depth=per_depth,
        settings={"arith": arith, "incremental": incremental, "max_entries": max_entries, "timing": timing,
                  "widths": dict(enc.widths), "actions": len(enc.actions), "state_fields": len(enc.schema),
                  "queries": queries},
        build_seconds=build, seconds=time.perf_counter() - t0, statistics=stats,
    )


def _actions(enc: Encoding, m: z3.ModelRef, acts: list[Val]) -> list[Action]:
    return [enc.actions[_model_value(m, a, "act")] for a in acts]


def _replay(enc: Encoding, m: z3.ModelRef, acts: list[Val], states: list[dict[str, Val]]) -> list[Action]:
    """The model's run as model actions, replayed in System step by step and compared state by state."""
    sys = enc.sys
    st: State = sys.initial_states()[0]
    out: list[Action] = []
    for t, a in enumerate(acts):
        want = enc.actions[_model_value(m, a, "act")]
        real = [x for x in sys.actions(st) if enc.key(x) == want]
        if not real:
            raise EncodingError(f"BMC trace step {t + 1}: {want} is not enabled in the model (encoding error)")
        act = real[0]
        st, _ = sys.step(st, act)
        got = {k: _model_value(m, states[t + 1][k], kind) for k, kind in enc.schema}
        if got != enc.encode(st):
            diff = {k: (got[k], v) for k, v in enc.encode(st).items() if got[k] != v}
            raise EncodingError(f"BMC trace step {t + 1} ({Act(act[0]).name}): encoded state differs from the "
                                f"model's (field: (smt, model)) {diff}")
        out.append(act)
    return out


__all__ = ["BmcRun", "EncodingError", "EntryBoundHit", "PropResult", "Relation", "UnsupportedConfig", "run_bmc",
           "run_bmc_growing"]
