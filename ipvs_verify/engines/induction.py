"""Unbounded proofs with Z3: an inductive strengthening found by Houdini, then k-induction.

Semantics: the untimed over-approximation (an armed timer may fire at any moment, never before a due one).
Every real run is a run of it, so a property proved here holds for every timing; this is the semantics the
explicit engine's "holds" comes from as well.

1. Candidate lemmas (stated below, over the encoding) are filtered Houdini-style: a lemma false in the
   initial state is dropped; then, repeatedly, a lemma that some step from a state satisfying all remaining
   lemmas can falsify is dropped. What remains, I, is inductive: Z3 proved I(s) and T(s, a, s') imply I(s').
   Nothing is assumed: a wrong lemma is simply dropped.
2. k-induction for each property P with I as strengthening: the base case is BMC of the untimed model to
   depth k; the step case asks for k consecutive I-states whose first k steps keep P and whose next step
   violates it. If that is unsatisfiable, P holds at every depth ("proved"). Otherwise the report shows the
   counterexample to induction (the states and actions Z3 found) and the verdict is not a pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import z3

from ipvs_verify.engines.bmc import Relation, _model_value, run_bmc_growing, supported
from ipvs_verify.engines.smt_encoding import REACH_FACTS, Encoding, Table, Val
from ipvs_verify.model.config import Config
from ipvs_verify.model.state import DestStatus, PodPhase, Sock
from ipvs_verify.model.system import EXPIRE_NOW
from ipvs_verify.properties.catalog import Property


def candidate_lemmas(enc: Encoding, s: dict[str, Val]) -> dict[str, Val]:
    """Facts that may hold in every reachable state; Houdini keeps only those Z3 proves inductive."""
    o = enc.o
    out: dict[str, Val] = {"domain": enc.domain(s)}
    contains = [Table(f"order.contains.{p}", [range(len(enc.orders))], lambda oid, p=p: p in enc.orders[oid],
                      "b").kinds("ord") for p in range(enc.P)]
    for p in range(enc.P):
        linked = o.eq(s[f"d{p}.status"], int(DestStatus.LINKED), "sm")
        out[f"order-lists-exactly-linked-dests.{p}"] = o.eq(contains[p](o, s["order"]), linked, "b")
        out[f"graceful-means-weight0-linked.{p}"] = o.or_(o.not_(s[f"g{p}"]), o.and_(linked, o.eq(
            s[f"d{p}.w"], 0, "sm")))
        out[f"weight0-linked-means-graceful.{p}"] = o.or_(
            o.not_(o.and_(linked, o.eq(s[f"d{p}.w"], 0, "sm"))), s[f"g{p}"])
        out[f"graceful-means-unlisted.{p}"] = o.or_(o.not_(s[f"g{p}"]), o.not_(s[f"p{p}.listed"]))
        out[f"absent-dest-weight0.{p}"] = o.or_(o.ne(s[f"d{p}.status"], int(DestStatus.ABSENT), "sm"),
                                                o.eq(s[f"d{p}.w"], 0, "sm"))
        out[f"pod-timer-only-terminating.{p}"] = o.or_(
            o.eq(s[f"p{p}.phase"], int(PodPhase.TERMINATING), "sm"), o.eq(s[f"p{p}.tmr"], 0, "tmr"))
        out[f"absent-pod-unlisted.{p}"] = o.or_(o.ne(s[f"p{p}.phase"], int(PodPhase.ABSENT), "sm"),
                                                o.not_(s[f"p{p}.listed"]))
        out[f"absent-pod-absent-dest.{p}"] = o.or_(o.ne(s[f"p{p}.phase"], int(PodPhase.ABSENT), "sm"),
                                                   o.eq(s[f"d{p}.status"], int(DestStatus.ABSENT), "sm"))
    for f in range(enc.F):
        est = o.eq(s[f"c{f}.sock"], int(Sock.ESTABLISHED), "sm")
        out[f"conntrack-live-only-while-established.{f}"] = o.or_(o.not_(s[f"f{f}.ct"]), est)
        out[f"live-conntrack-owned-by-the-head.{f}"] = o.or_(o.not_(s[f"f{f}.ct"]), o.and_(s[f"e{f}.0.on"],
                                                                                          s[f"e{f}.0.own"]))
        orphan = o.eq(s[f"c{f}.sock"], int(Sock.ORPHAN), "sm")
        out[f"conntrack-live-only-while-established-or-orphan.{f}"] = o.or_(o.not_(s[f"f{f}.ct"]), est, orphan)
        out[f"client-pod-iff-established.{f}"] = o.eq(o.ne(s[f"c{f}.pod"], -1, "sm"), est, "b")
        out[f"client-pod-iff-established-or-orphan.{f}"] = o.eq(o.ne(s[f"c{f}.pod"], -1, "sm"), o.or_(est, orphan), "b")
        out[f"orphan-head-is-its-pod.{f}"] = o.or_(o.not_(o.and_(orphan, s[f"e{f}.0.on"])),
                                                   o.eq(s[f"e{f}.0.dest"], s[f"c{f}.pod"], "sm"))
        out[f"free-client-is-reset.{f}"] = o.or_(
            o.ne(s[f"c{f}.sock"], int(Sock.FREE), "sm"),
            o.and_(o.eq(s[f"c{f}.tmr"], 0, "tmr"), o.eq(s[f"c{f}.tries"], 0, "sm"), o.eq(s[f"c{f}.plan"], 0, "sm")))
        out[f"established-has-entry-to-its-pod.{f}"] = o.or_(o.not_(est), o.or_(*[
            o.and_(s[f"e{f}.{i}.on"], o.eq(s[f"e{f}.{i}.dest"], s[f"c{f}.pod"], "sm")) for i in range(enc.E)]))
        timed = o.or_(o.eq(s[f"c{f}.sock"], int(Sock.SYN_SENT), "sm"), o.eq(s[f"c{f}.sock"], int(Sock.TIME_WAIT), "sm"),
                      orphan)
        out[f"client-timer-armed.{f}"] = o.or_(o.not_(timed), o.lt(0, s[f"c{f}.tmr"], "tmr"))
        out[f"established-head-is-its-pod.{f}"] = o.or_(o.not_(o.and_(est, s[f"e{f}.0.on"])),
                                                        o.eq(s[f"e{f}.0.dest"], s[f"c{f}.pod"], "sm"))
        expiring = [o.and_(s[f"e{f}.{i}.on"], o.eq(s[f"e{f}.{i}.tmr"], EXPIRE_NOW, "tmr")) for i in range(enc.E)]
        head_live = o.and_(est, s[f"e{f}.0.on"], o.ne(s[f"e{f}.0.tmr"], EXPIRE_NOW, "tmr"))
        out[f"established-live-head-is-its-pod.{f}"] = o.or_(o.not_(head_live), o.eq(s[f"e{f}.0.dest"],
                                                                                     s[f"c{f}.pod"], "sm"))
        out[f"established-head-not-expiring.{f}"] = o.or_(o.not_(o.and_(est, s[f"e{f}.0.on"])),
                                                          o.ne(s[f"e{f}.0.tmr"], EXPIRE_NOW, "tmr"))
        if enc.E > 1:
            out[f"established-with-two-entries-head-is-its-pod.{f}"] = o.or_(
                o.not_(o.and_(est, s[f"e{f}.1.on"])), o.eq(s[f"e{f}.0.dest"], s[f"c{f}.pod"], "sm"))
        for i in range(enc.E):
            on = s[f"e{f}.{i}.on"]
            if i > 0:
                # a second entry exists only while one of them waits for its expire-now (the SYN is blocked)
                out[f"older-entry-means-one-expiring.{f}.{i}"] = o.or_(o.not_(on), *expiring[:i + 1])
                out[f"entries-are-a-prefix.{f}.{i}"] = o.or_(o.not_(on), s[f"e{f}.{i - 1}.on"])
                # a SYN that makes a new entry sends the old one to ip_vs_conn_expire_now()
                out[f"older-entries-expire-now.{f}.{i}"] = o.or_(o.not_(on), o.eq(s[f"e{f}.{i}.tmr"], EXPIRE_NOW,
                                                                                    "tmr"))
            out[f"empty-slot-is-zero.{f}.{i}"] = o.or_(on, o.and_(
                o.eq(s[f"e{f}.{i}.st"], 0, "sm"), o.eq(s[f"e{f}.{i}.dest"], 0, "sm"), o.not_(s[f"e{f}.{i}.nfct"]),
                o.not_(s[f"e{f}.{i}.own"]), o.eq(s[f"e{f}.{i}.tmr"], 0, "tmr")))
            dest_st = enc.pod_field(s, s[f"e{f}.{i}.dest"], "d.status", "sm")
            out[f"no-entry-to-a-deleted-dest.{f}.{i}"] = o.or_(o.not_(on), o.ne(dest_st, int(DestStatus.TRASH), "sm"))
            out[f"no-entry-to-an-absent-dest.{f}.{i}"] = o.or_(o.not_(on), o.ne(dest_st, int(DestStatus.ABSENT), "sm"))
            out[f"own-needs-live-conntrack.{f}.{i}"] = o.or_(o.not_(s[f"e{f}.{i}.own"]), s[f"f{f}.ct"])
            out[f"own-needs-nfct.{f}.{i}"] = o.or_(o.not_(s[f"e{f}.{i}.own"]), s[f"e{f}.{i}.nfct"])
            for fld in ("nfct", "own"):
                for v in (False, True):
                    out[f"e{f}.{i}.{fld}!={int(v)}"] = o.or_(o.not_(on), o.ne(s[f"e{f}.{i}.{fld}"], v, "b"))
            out[f"entry-nfct-is-sysctl-conntrack.{f}.{i}"] = o.or_(
                o.not_(on), o.eq(s[f"e{f}.{i}.nfct"], enc.config.sysctls.conntrack, "b"))
    out.update(value_candidates(enc, s))
    return out


def _values(enc: Encoding, name: str, kind: str) -> list[int]:
    """The values a field can take in the untimed model (timers: due -1/0, armed 1)."""
    fld = name.rsplit(".", 1)[-1]
    if kind == "tmr":
        return [-1, 0, 1]
    if kind == "ord":
        return []
    lo, hi = enc.small_range(fld)
    return list(range(lo, hi + 1))


def value_candidates(enc: Encoding, s: dict[str, Val]) -> dict[str, Val]:
    """Generic candidates: "field != v", and "field1 = v1 -> field2 != v2" within a client, a pod, a dest."""
    o = enc.o
    out: dict[str, Val] = {}
    kind = enc.kind
    for name, k in enc.schema:
        if k == "b":
            continue
        guard: Val = True
        if name.startswith("e"):
            guard = s[name.rsplit(".", 1)[0] + ".on"]
        for v in _values(enc, name, k):
            out[f"{name}!={v}"] = o.or_(o.not_(guard), o.ne(s[name], v, k))
        if k == "tmr":  # untimed: an armed timer is kept as 1
            out[f"{name}<=1"] = o.le(s[name], 1, k)
    groups = [(f"c{f}.sock", [f"c{f}.{x}" for x in ("pod", "tmr", "tries", "plan")]) for f in range(enc.F)]
    groups += [(f"p{p}.phase", [f"p{p}.tmr", f"p{p}.listed"]) for p in range(enc.P)]
    groups += [(f"d{p}.status", [f"d{p}.w"]) for p in range(enc.P)]
    for key, others in groups:
        for kv in _values(enc, key, "sm"):
            for other in others:
                ok = kind[other]
                for v in ([0, 1] if ok == "b" else _values(enc, other, ok)):
                    val: Val = bool(v) if ok == "b" else v
                    out[f"{key}={kv}->{other}!={v}"] = o.or_(o.ne(s[key], kv, "sm"), o.ne(s[other], val, ok))
    return out


@dataclass
class Proof:
    prop_name: str
    status: str  # "proved" | "vacuous" | "violated" | "cti" | "unsupported" | "n/a"
    k: int
    detail: str = ""
    cti: list[dict[str, Any]] = field(default_factory=list)  # states and actions of the counterexample to induction
    seconds: float = 0.0


@dataclass
class InductionRun:
    config: Config
    lemmas: list[str]  # the inductive strengthening kept by Houdini
    dropped: list[str]
    proofs: list[Proof]
    seconds: float
    houdini_seconds: float
    settings: dict[str, Any]


def sample_states(enc: Encoding, init: dict[str, Val], limit: int) -> list[dict[str, Val]]:
    """Up to `limit` states reachable from `init` by the encoding's concrete steps, breadth first."""
    seen = {tuple(init[k] for k, _ in enc.schema)}
    out = [init]
    head = 0
    while head < len(out) and len(out) < limit:
        s = out[head]
        head += 1
        for a, en in zip(enc.actions, enc.enabled_all(s), strict=True):
            if not en:
                continue
            n, _ = enc.step(s, a)
            key = tuple(n[k] for k, _ in enc.schema)
            if key not in seen:
                seen.add(key)
                out.append(n)
    return out


def houdini(enc: Encoding, rel: Relation, samples: int = 1500) -> tuple[dict[str, Val], list[str], dict[str, Val]]:
    """(kept lemmas over rel.x, dropped names, kept lemmas over the next state)."""
    o = enc.o
    init = enc.initial()
    cand_now = candidate_lemmas(enc, rel.x)
    nxt = {k: rel.next[k] for k, _ in enc.schema}
    cand_next = candidate_lemmas(enc, nxt)
    # a cheap first filter: drop every candidate that some state reached by the encoding's own concrete
    # steps falsifies (a breadth-first walk from the initial state); Z3 then decides the rest
    dropped = []
    for values in sample_states(enc, init, samples):
        at = candidate_lemmas(enc, values)  # concrete: folds to Python booleans
        dropped += [k for k, v in at.items() if not v and k not in dropped]
    keep = [k for k in cand_now if k not in dropped]
    solver = z3.SolverFor("QF_BV") if o.arith == "bv" else z3.SolverFor("QF_LIA")
    solver.add(o.z(rel.trans, "b"))
    lits = {k: z3.Bool(f"lemma:{k}") for k in cand_now}
    for k in cand_now:
        solver.add(z3.Implies(lits[k], o.z(cand_now[k], "b")))
    changed = True
    while changed:
        changed = False
        assumed = [lits[k] for k in keep]
        if solver.check(*assumed, z3.Not(z3.And(*[o.z(cand_next[k], "b") for k in keep]))) != z3.sat:
            break
        m = solver.model()
        for k in list(keep):
            if z3.is_false(m.eval(o.z(cand_next[k], "b"), model_completion=True)):
                keep.remove(k)
                dropped.append(k)
                changed = True
    return {k: cand_now[k] for k in keep}, dropped, {k: cand_next[k] for k in keep}


BASE_DEPTH = 8  # the base case also looks for each "sometimes" check this deep (and the 7-step orphan violation)


def run_induction(
    config: Config,
    properties: tuple[Property, ...],
    max_k: int = 3,
    max_entries: int = 2,
    arith: str = "bv",
    strengthen: bool = True,
) -> InductionRun:
    """Prove each property for every depth, or report why not. `strengthen=False` skips the lemmas.

    Soundness of the bounded entry vector: the proof also shows that no step from a state satisfying the
    lemmas needs more than `max_entries` entries in a flow (else the bound grows, up to 4). A property
    proved while that bound is not proven is reported as "cti", never "proved".
    """
    t0 = time.perf_counter()
    todo = [p for p in properties if not supported(p, config.scope)]
    # base case for every k <= max_k at once: BMC of the untimed model from the initial state
    base_depth = max(max_k, BASE_DEPTH)
    base = {r.prop_name: r for r in run_bmc_growing(config, tuple(todo), base_depth, max_entries, timing="untimed",
                                                    arith=arith).results} if todo else {}
    limit = max(max_entries, 4) if strengthen else max_entries
    entries = max_entries
    lemmas: dict[str, Val] = {}
    dropped: list[str] = []
    bound_ok = False
    while any(r.status != "violated" for r in base.values()):
        enc = Encoding(config, "untimed", entries, arith)
        rel = Relation(enc)
        lemmas, dropped = ({}, []) if not strengthen else houdini(enc, rel)[:2]
        bound_ok = _bound_proved(enc, rel, lemmas)
        if bound_ok or entries >= limit:
            break
        entries += 1
    t_h = time.perf_counter() - t0
    proofs: list[Proof] = []
    for prop in properties:
        tp = time.perf_counter()
        why = supported(prop, config.scope)
        if why:
            proofs.append(Proof(prop.name, "n/a" if why.startswith("n/a") else "unsupported", 0, why))
            continue
        r = base[prop.name]
        if r.status == "violated":
            proofs.append(Proof(prop.name, "violated", r.depth, f"the untimed over-approximation violates it at "
                                f"depth {r.depth} (not a proof)", seconds=time.perf_counter() - tp))
            continue
        proof = _prove(enc, rel, lemmas, prop, max_k, arith)
        if proof.status == "proved":
            # vacuity: each "sometimes" check must be reachable (found by the base-case BMC), or is proved
            # unreachable (then the verdict is "vacuous", as the explicit engine says), or stays unknown
            for reach in prop.sometimes:
                if reach.name in r.reached:
                    continue
                never = _prove(enc, rel, lemmas, prop, max_k, arith, REACH_FACTS[reach.name])
                if never.status == "proved":
                    proof.status = "vacuous"
                    proof.detail = f"holds, but vacuously: proved that '{reach.name}' never happens"
                    break
                proof.detail += f"; '{reach.name}' not reached within depth {base_depth} (vacuity unknown)"
        if proof.status in ("proved", "vacuous") and not bound_ok:
            proof.status = "cti"
            proof.detail = (f"inductive, but the bound of {entries} entries per flow is not proven sufficient "
                            "(the encoding could lose an entry): not a pass")
        proof.seconds = time.perf_counter() - tp
        proofs.append(proof)
    return InductionRun(config, sorted(lemmas), sorted(dropped), proofs, time.perf_counter() - t0, t_h,
                        {"timing": "untimed", "arith": arith, "max_k": max_k, "max_entries": entries,
                         "entry_bound_proved": bound_ok, "candidates": len(lemmas) + len(dropped)})


def _bound_proved(enc: Encoding, rel: Relation, lemmas: dict[str, Val]) -> bool:
    """No step from a state satisfying the lemmas needs more entries than the encoding has."""
    o = enc.o
    solver = z3.SolverFor("QF_BV") if o.arith == "bv" else z3.SolverFor("QF_LIA")
    solver.add(o.z(rel.trans, "b"), rel.facts["overflow"], *[o.z(v, "b") for v in lemmas.values()])
    return bool(solver.check() == z3.unsat)


def _prove(enc: Encoding, rel: Relation, lemmas: dict[str, Val], prop: Property, max_k: int, arith: str,
           fact: str | None = None) -> Proof:
    """The step case of k-induction, k = 1..max_k (the base case is checked by the caller).

    The bad step is a violation of `prop`, or with `fact` a step where that fact holds.
    """
    o = enc.o
    for k in range(1, max_k + 1):
        solver = z3.SolverFor("QF_BV") if arith == "bv" else z3.SolverFor("QF_LIA")
        states = [enc.variables(f"i{t}") for t in range(k + 1)]
        acts = [o.var(f"act@i{t}", "act") for t in range(k)]
        viol: list[Val] = []
        for t in range(k):
            pairs = [(rel.x[n], states[t][n]) for n, _ in enc.schema]
            solver.add(*[z3.substitute(o.z(v, "b"), *pairs) for v in lemmas.values()])
            cons, facts, props = rel.instantiate(states[t], acts[t], states[t + 1])
            solver.add(*cons)
            viol.append(props[prop.name] if fact is None else facts[fact])
        pairs = [(rel.x[n], states[k][n]) for n, _ in enc.schema]
        solver.add(*[z3.substitute(o.z(v, "b"), *pairs) for v in lemmas.values()])
        solver.add(*[z3.Not(v) for v in viol[:-1]])
        solver.add(viol[-1])
        res = solver.check()
        if res == z3.unsat:
            return Proof(prop.name, "proved", k, f"{k}-induction with {len(lemmas)} inductive lemmas "
                         f"(untimed over-approximation: every timing)")
        if k == max_k:
            m = solver.model()
            cti = []
            for t in range(k + 1):
                vals = {n: _model_value(m, states[t][n], kind) for n, kind in enc.schema}
                step: dict[str, Any] = {"state": {n: v for n, v in vals.items() if not n.startswith("e") or
                                                  vals.get(n.rsplit(".", 1)[0] + ".on", True)}}
                if t < k:
                    a = enc.actions[_model_value(m, acts[t], "act")]
                    step["action"] = [int(a[0]), int(a[1]), int(a[2])]
                cti.append(step)
            return Proof(prop.name, "cti", k, f"not {k}-inductive with {len(lemmas)} lemmas: counterexample to "
                         "induction below (not a pass)", cti)
    raise AssertionError("unreachable")
