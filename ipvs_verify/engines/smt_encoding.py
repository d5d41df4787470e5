"""The SMT encoding of `model.system.System`: a fixed vector of small bit-vectors (or integers) per state.

One source of truth: every kernel and kube-proxy decision (reuse_block, status_block, tcp_transition,
the timeouts, is_active, the scheduler's choice and del_dest, rs_deletable) enters the encoding as a
table enumerated over its whole finite domain from the Python function the explicit engine runs. Only the
sequencing of `System.step` (which entry is looked up, insert at the head, timers, counters, the client
socket, kube-proxy's sync and check, pods) is written here by hand, and tests/test_smt_encoding.py proves
it equal to `System.step` on every transition of complete explicit explorations.

The same code builds Z3 terms and evaluates concrete states: every operation folds when its operands are
Python values, so `Encoding.step(encode(s), a)` with a concrete state is a plain Python evaluation of the
very code that builds the Z3 transition relation (the test runs both).

State vector (per flow f, entry slot i < max_entries; per pod p):
  e{f}.{i}.on/st/dest/nfct/own/tmr, f{f}.ct, c{f}.sock/pod/tmr/tries/plan,
  d{p}.status/w, order (an id over all lists of distinct pods), cursor, p{p}.phase/tmr/listed,
  sync, check, g{p}, flush, budget.
Entries of a flow are newest first in slots 0..n-1; empty slots hold zeros. A step that would need more
than `max_entries` entries sets the fact `overflow`; the BMC engine checks that it is unreachable.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import z3

from ipvs_verify.errors import UserError
from ipvs_verify.model.config import Config, Scope, Timing
from ipvs_verify.model.events import BrokenWhy
from ipvs_verify.model.ip_vs_in import SkbCt
from ipvs_verify.model.scheduler import HEAD, scheduler_for
from ipvs_verify.model.state import Client, Dest, DestStatus, Entry, Flow, Plan, Pod, PodPhase, Sock, State
from ipvs_verify.model.system import EXPIRE_NOW, Act, Action, System
from ipvs_verify.model.tcp_states import Dir, Seg, TcpState, is_active, tcp_transition

Val = Any  # a Python bool/int or a z3 expression
S = dict[str, Val]

# Scope fields this encoding covers, with the values it supports (None: any value)
_SCOPE_SUPPORTED: dict[str, object] = {
    "clients": None, "ports": None, "pods": None, "spare_pods": None, "changes": None,
    "crashes": None, "short_requests": None, "long_lived": None,
}
TIMINGS = ("event", "untimed")


class UnsupportedConfig(UserError):
    pass


def _max_timer(tm: Timing) -> int:
    """The largest value a timer field takes: an orphan's entry is armed for its life plus a state's timeout."""
    timeouts = [v for _, v in tm.ipvs_timeouts]
    return max(timeouts + [tm.syn_rto << tm.syn_retries, tm.client_time_wait, tm.grace_period, tm.check_interval,
                           tm.sync_delay, tm.orphan_life + max(timeouts)])


def check_supported(config: Config, timing: str) -> None:
    """Refuse, with one clear line, a configuration whose features this encoding does not cover."""
    if timing not in TIMINGS:
        raise UnsupportedConfig(f"SMT engines: timing '{timing}' is not encoded (expected one of {', '.join(TIMINGS)})")
    for f in dataclasses.fields(Scope):
        value = getattr(config.scope, f.name)
        if f.name not in _SCOPE_SUPPORTED:
            default = f.default if f.default is not dataclasses.MISSING else None
            if value != default:
                raise UnsupportedConfig(
                    f"SMT engines: scope feature '{f.name}={value}' is not covered by the encoding "
                    f"(ipvs_verify/engines/smt_encoding.py); use --engine explicit"
                )
    if config.scheduler != "rr":
        raise UnsupportedConfig(f"SMT engines: scheduler '{config.scheduler}' is not encoded (only rr)")
    if config.pod_network != "routed":
        raise UnsupportedConfig(f"SMT engines: the {config.pod_network} pod network (neighbour resolution, a "
                                "confirmed SYN_SENT conntrack entry) is not encoded (only routed); use --engine "
                                "explicit")
    if not config.scope.pods and not config.scope.spare_pods:
        raise UnsupportedConfig("SMT engines: the scope has no pods")


class Ops:
    """Term builders that fold Python constants; `arith` is 'bv' (bit-vectors) or 'int'."""

    def __init__(self, arith: str, widths: dict[str, int]) -> None:
        if arith not in ("bv", "int"):
            raise ValueError(f"arith must be 'bv' or 'int', not {arith!r}")
        self.arith = arith
        self.widths = widths

    @staticmethod
    def is_const(x: Val) -> bool:
        return not isinstance(x, z3.ExprRef)

    def z(self, v: Val, k: str) -> Val:
        if isinstance(v, z3.ExprRef):
            return v
        if k == "b":
            return z3.BoolVal(bool(v))
        if self.arith == "int":
            return z3.IntVal(int(v))
        return z3.BitVecVal(int(v), self.widths[k])

    def var(self, name: str, k: str) -> Val:
        if k == "b":
            return z3.Bool(name)
        if self.arith == "int":
            return z3.Int(name)
        return z3.BitVec(name, self.widths[k])

    @staticmethod
    def same(a: Val, b: Val) -> bool:
        ca, cb = isinstance(a, z3.ExprRef), isinstance(b, z3.ExprRef)
        if not ca and not cb:
            return bool(a == b)
        if ca and cb:
            return bool(a.eq(b))
        return False

    def ite(self, c: Val, a: Val, b: Val, k: str) -> Val:
        if not isinstance(c, z3.ExprRef):
            return a if c else b
        if self.same(a, b):
            return a
        return z3.If(c, self.z(a, k), self.z(b, k))

    def eq(self, a: Val, b: Val, k: str) -> Val:
        if self.is_const(a) and self.is_const(b):
            return bool(a == b)
        return self.z(a, k) == self.z(b, k)

    def ne(self, a: Val, b: Val, k: str) -> Val:
        return self.not_(self.eq(a, b, k))

    def lt(self, a: Val, b: Val, k: str) -> Val:
        if self.is_const(a) and self.is_const(b):
            return bool(a < b)
        return self.z(a, k) < self.z(b, k)  # signed for bit-vectors

    def le(self, a: Val, b: Val, k: str) -> Val:
        if self.is_const(a) and self.is_const(b):
            return bool(a <= b)
        return self.z(a, k) <= self.z(b, k)

    def add(self, a: Val, b: Val, k: str) -> Val:
        if self.is_const(a) and self.is_const(b):
            return a + b
        return self.z(a, k) + self.z(b, k)

    def sub(self, a: Val, b: Val, k: str) -> Val:
        if self.is_const(a) and self.is_const(b):
            return a - b
        return self.z(a, k) - self.z(b, k)

    def min(self, a: Val, b: Val, k: str) -> Val:
        return self.ite(self.lt(b, a, k), b, a, k)

    def and_(self, *xs: Val) -> Val:
        out = []
        for x in xs:
            if not isinstance(x, z3.ExprRef):
                if not x:
                    return False
                continue
            out.append(x)
        if not out:
            return True
        return out[0] if len(out) == 1 else z3.And(*out)

    def or_(self, *xs: Val) -> Val:
        out = []
        for x in xs:
            if not isinstance(x, z3.ExprRef):
                if x:
                    return True
                continue
            out.append(x)
        if not out:
            return False
        return out[0] if len(out) == 1 else z3.Or(*out)

    def not_(self, x: Val) -> Val:
        if not isinstance(x, z3.ExprRef):
            return not x
        return z3.Not(x)

    def count(self, bits: Sequence[Val]) -> Val:
        total: Val = 0
        for b in bits:
            total = self.add(total, self.ite(b, 1, 0, "sm"), "sm")
        return total


class Table:
    """A finite function, enumerated from Python, looked up by a decision tree over its keys."""

    def __init__(self, name: str, domains: Sequence[Sequence[int]], fn: Callable[..., Val], out: str) -> None:
        self.name = name
        self.domains = [list(d) for d in domains]
        self.out = out
        self.values: dict[tuple[int, ...], Val] = {}
        for key in itertools.product(*self.domains):
            self.values[key] = fn(*key)
        self.default = next(iter(self.values.values()))

    def __call__(self, o: Ops, *keys: Val) -> Val:
        return self._tree(o, keys, 0, ())

    def _tree(self, o: Ops, keys: Sequence[Val], i: int, prefix: tuple[int, ...]) -> Val:
        if i == len(keys):
            return self.values.get(prefix, self.default)
        k = keys[i]
        if o.is_const(k):
            return self._tree(o, keys, i + 1, prefix + (int(k),))
        dom = self.domains[i]
        kind = self.key_kinds[i]
        if kind == "b":
            return o.ite(k, self._tree(o, keys, i + 1, prefix + (1,)), self._tree(o, keys, i + 1, prefix + (0,)),
                         self.out)
        res = self._tree(o, keys, i + 1, prefix + (dom[-1],))
        for v in reversed(dom[:-1]):
            res = o.ite(o.eq(k, v, kind), self._tree(o, keys, i + 1, prefix + (v,)), res, self.out)
        return res

    def kinds(self, *key_kinds: str) -> Table:
        """The kind of each key ('b', 'sm', 'tmr', 'ord'), for building comparisons."""
        self.key_kinds = list(key_kinds)
        return self


class Encoding:
    """The encoded transition system of one configuration and timing ('event' or 'untimed')."""

    def __init__(self, config: Config, timing: str = "event", max_entries: int = 2, arith: str = "bv") -> None:
        check_supported(config, timing)
        self.config = config
        self.timing = timing
        self.untimed = timing == "untimed"
        self.sys = System(config, timing)
        self.E = max_entries
        self.F = config.scope.flows
        self.P = len(config.scope.all_pods)
        tm = config.timing
        self.orders: list[tuple[int, ...]] = [
            t for n in range(self.P + 1) for t in itertools.permutations(range(self.P), n)
        ]
        self.order_id = {t: i for i, t in enumerate(self.orders)}
        max_small = max(len(TcpState) - 1, self.P, self.F * self.E, tm.syn_retries, config.scope.changes, 3)
        max_timer = _max_timer(tm)
        self.widths = {
            "sm": max_small.bit_length() + 1,
            "tmr": max_timer.bit_length() + 1,
            "ord": (len(self.orders) - 1).bit_length() + 1,  # signed, like every other kind
        }
        self.o = Ops(arith, self.widths)
        self.schema: list[tuple[str, str]] = []
        for f in range(self.F):
            for i in range(self.E):
                for fld, k in (("on", "b"), ("st", "sm"), ("dest", "sm"), ("nfct", "b"), ("own", "b"),
                               ("tmr", "tmr")):
                    self.schema.append((f"e{f}.{i}.{fld}", k))
            self.schema.append((f"f{f}.ct", "b"))
            for fld, k in (("sock", "sm"), ("pod", "sm"), ("tmr", "tmr"), ("tries", "sm"), ("plan", "sm")):
                self.schema.append((f"c{f}.{fld}", k))
        for p in range(self.P):
            self.schema += [(f"d{p}.status", "sm"), (f"d{p}.w", "sm")]
        self.schema += [("order", "ord"), ("cursor", "sm")]
        for p in range(self.P):
            self.schema += [(f"p{p}.phase", "sm"), (f"p{p}.tmr", "tmr"), (f"p{p}.listed", "b")]
        self.schema += [("sync", "tmr"), ("check", "tmr")]
        self.schema += [(f"g{p}", "b") for p in range(self.P)]
        self.schema += [("flush", "b"), ("budget", "sm")]
        self.kind = dict(self.schema)
        self._tables()
        self.actions = self._universe()
        self.action_id = {a: i for i, a in enumerate(self.actions)}

    # ------------------------------------------------------------------ tables from the Python decisions
    def _tables(self) -> None:
        sys, cfg = self.sys, self.config
        states = [int(s) for s in TcpState]
        b = [0, 1]
        cts = [int(c) for c in SkbCt]
        # System.reuse / System.status: the variant's reuse_block / status_block, memoised as step calls them
        self.t_reuse = {
            fld: Table(f"reuse.{fld}", [states, b, b, cts],
                       lambda st, w0, nfct, ct, fld=fld: getattr(
                           sys.reuse(TcpState(st), bool(w0), bool(nfct), SkbCt(ct)), fld), "b").kinds(
                "sm", "b", "b", "sm")
            for fld in ("resched", "drop", "clear_nfct", "expire_old")
        }
        self.t_status = {
            fld: Table(f"status.{fld}", [cts], lambda ct, fld=fld: getattr(sys.status(SkbCt(ct)), fld), "b").kinds(
                "sm")
            for fld in ("drop", "expire", "clear_nfct")
        }
        self.t_tcp = {
            (d, g): Table(f"tcp.{d}.{g}", [states], lambda st, d=d, g=g: int(tcp_transition(TcpState(st), d, g)),
                          "sm").kinds("sm")
            for d in Dir for g in Seg
        }
        self.t_timeout = Table("timeout", [states], lambda st: cfg.timing.timeout(TcpState(st)), "tmr").kinds("sm")
        self.t_active = Table("active", [states], lambda st: is_active(TcpState(st)), "b").kinds("sm")
        sched = scheduler_for(cfg.variant, cfg.scheduler)  # a patched choice enters the table too
        ords = list(range(len(self.orders)))
        cursors = [HEAD] + list(range(self.P))

        def schedule(oid: int, cursor: int, *usable_by_pod: int) -> tuple[int, int]:
            order = self.orders[oid]
            return sched.schedule(order, tuple(bool(usable_by_pod[d]) for d in order), cursor)

        self.t_sched_dest = Table("sched.dest", [ords, cursors] + [b] * self.P,
                                  lambda oid, c, *u: schedule(oid, c, *u)[0], "sm").kinds(
            "ord", "sm", *(["b"] * self.P))
        self.t_sched_cursor = Table("sched.cursor", [ords, cursors] + [b] * self.P,
                                    lambda oid, c, *u: schedule(oid, c, *u)[1], "sm").kinds(
            "ord", "sm", *(["b"] * self.P))

        def del_dest(oid: int, cursor: int, p: int) -> int:
            order = self.orders[oid]
            if p not in order:
                return cursor  # outside the model's reach: a dest is deleted only while linked
            return sched.del_dest(order, cursor, p)

        self.t_del_cursor = [Table(f"del_dest.{p}", [ords, cursors], lambda oid, c, p=p: del_dest(oid, c, p),
                                   "sm").kinds("ord", "sm") for p in range(self.P)]
        self.t_remove = [Table(f"order.remove.{p}", [ords],
                               lambda oid, p=p: self.order_id[tuple(d for d in self.orders[oid] if d != p)],
                               "ord").kinds("ord") for p in range(self.P)]
        self.t_contains = [Table(f"order.contains.{p}", [ords], lambda oid, p=p: p in self.orders[oid], "b").kinds(
            "ord") for p in range(self.P)]
        self.t_prepend = [Table(f"order.prepend.{p}", [ords],
                                lambda oid, p=p: self.order_id.get((p,) + self.orders[oid], oid),
                                "ord").kinds("ord") for p in range(self.P)]
        n = self.F * self.E
        kp = cfg.kube_proxy
        self.t_deletable = Table("rs_deletable", [range(n + 1), range(n + 1)],
                                 lambda a, i: kp.rs_deletable(False, a, i), "b").kinds("sm", "sm")
        tm = cfg.timing
        self.t_rto = Table("syn_rto", [range(tm.syn_retries + 1)], lambda t: tm.syn_rto << t, "tmr").kinds("sm")

    def tables(self) -> list[Table]:
        return (list(self.t_reuse.values()) + list(self.t_status.values()) + list(self.t_tcp.values())
                + [self.t_timeout, self.t_active, self.t_sched_dest, self.t_sched_cursor, self.t_deletable,
                   self.t_rto] + self.t_del_cursor + self.t_remove + self.t_prepend + self.t_contains)

    # ------------------------------------------------------------------ actions
    def _universe(self) -> list[Action]:
        sc = self.config.scope
        acts: list[Action] = []
        for f in range(self.F):
            if sc.short_requests:
                acts += [(Act.REQUEST, f, Plan.CLIENT_CLOSES), (Act.REQUEST, f, Plan.SERVER_CLOSES)]
            if sc.long_lived:
                acts += [(Act.CONNECT, f, 0), (Act.SEND, f, 0), (Act.CLOSE, f, Plan.CLIENT_CLOSES),
                         (Act.CLOSE, f, Plan.SERVER_CLOSES)]
            acts += [(Act.EXPIRE, f, i) for i in range(self.E)] + [(Act.CLIENT_TIMER, f, 0)]
        acts += [(Act.GRACE_END, p, 0) for p in range(self.P)]
        acts += [(Act.SYNC, 0, 0), (Act.CHECK, 0, 0), (Act.FLUSH, 0, 0)]
        for p in range(self.P):
            acts += [(Act.DELETE_POD, p, 0), (Act.ADD_POD, p, 0), (Act.ENDPOINT_GONE, p, 0)]
            if sc.crashes:
                acts.append((Act.CRASH_POD, p, 0))
        if not self.untimed:
            acts.append((Act.WAIT, 0, 0))  # to the next deadline (event timing); its length is a function of s
        return acts

    def key(self, a: Action) -> Action:
        """The universe's name for a model action (a wait's length is not part of it)."""
        return (Act.WAIT, 0, 0) if a[0] == Act.WAIT else (int(a[0]), int(a[1]), int(a[2]))

    # ------------------------------------------------------------------ concrete states <-> vectors
    def encode(self, st: State) -> S:
        out: S = {}
        for f, fl in enumerate(st.flows):
            if len(fl.entries) > self.E:
                raise UnsupportedConfig(
                    f"SMT engines: a flow has {len(fl.entries)} entries, more than the encoding's bound "
                    f"{self.E} (raise max_entries)")
            for i in range(self.E):
                e = fl.entries[i] if i < len(fl.entries) else None
                out[f"e{f}.{i}.on"] = e is not None
                out[f"e{f}.{i}.st"] = int(e.state) if e else 0
                out[f"e{f}.{i}.dest"] = e.dest if e else 0
                out[f"e{f}.{i}.nfct"] = bool(e.nfct) if e else False
                out[f"e{f}.{i}.own"] = bool(e.owns_ct) if e else False
                out[f"e{f}.{i}.tmr"] = e.timer if e else 0
            out[f"f{f}.ct"] = bool(fl.ct_live)
            c = fl.client
            out[f"c{f}.sock"], out[f"c{f}.pod"], out[f"c{f}.tmr"] = int(c.sock), c.pod, c.timer
            out[f"c{f}.tries"], out[f"c{f}.plan"] = c.tries, int(c.plan)
        for p, d in enumerate(st.dests):
            out[f"d{p}.status"], out[f"d{p}.w"] = int(d.status), d.weight
        if st.order not in self.order_id:
            raise UnsupportedConfig(f"SMT engines: dest list {st.order} is not a list of distinct pods")
        out["order"], out["cursor"] = self.order_id[st.order], st.cursor
        for p, pod in enumerate(st.pods):
            out[f"p{p}.phase"], out[f"p{p}.tmr"], out[f"p{p}.listed"] = int(pod.phase), pod.timer, bool(pod.listed)
        out["sync"], out["check"] = st.sync_timer, st.check_timer
        for p, g in enumerate(st.graceful):
            out[f"g{p}"] = bool(g)
        out["flush"], out["budget"] = bool(st.flush_pending), st.budget
        return out

    def decode(self, v: S, like: State | None = None) -> State:
        """A State from concrete values; fields the encoding does not know are copied from `like`."""
        flows = []
        for f in range(self.F):
            entries = tuple(
                Entry(TcpState(v[f"e{f}.{i}.st"]), v[f"e{f}.{i}.dest"], bool(v[f"e{f}.{i}.nfct"]),
                      bool(v[f"e{f}.{i}.own"]), v[f"e{f}.{i}.tmr"])
                for i in range(self.E) if v[f"e{f}.{i}.on"]
            )
            client = Client(Sock(v[f"c{f}.sock"]), v[f"c{f}.pod"], v[f"c{f}.tmr"], v[f"c{f}.tries"],
                            Plan(v[f"c{f}.plan"]))
            flows.append(Flow(entries, bool(v[f"f{f}.ct"]), client))
        st = State(
            flows=tuple(flows),
            dests=tuple(Dest(DestStatus(v[f"d{p}.status"]), v[f"d{p}.w"]) for p in range(self.P)),
            order=self.orders[v["order"]], cursor=v["cursor"],
            pods=tuple(Pod(PodPhase(v[f"p{p}.phase"]), v[f"p{p}.tmr"], bool(v[f"p{p}.listed"]))
                       for p in range(self.P)),
            sync_timer=v["sync"], check_timer=v["check"], graceful=tuple(bool(v[f"g{p}"]) for p in range(self.P)),
            flush_pending=bool(v["flush"]), budget=v["budget"],
        )
        return st

    def initial(self) -> S:
        return self.encode(self.sys.initial_states()[0])

    def variables(self, tag: str) -> S:
        return {name: self.o.var(f"{name}@{tag}", k) for name, k in self.schema}

    # ------------------------------------------------------------------ helpers over symbolic states
    def merge(self, c: Val, a: S, b: S) -> S:
        if not isinstance(c, z3.ExprRef):
            return a if c else b
        return {k: self.o.ite(c, a[k], b[k], self.kind[k]) for k in a}

    @staticmethod
    def merge_facts(o: Ops, c: Val, a: dict[str, Val], b: dict[str, Val]) -> dict[str, Val]:
        out = {}
        for k in set(a) | set(b):
            out[k] = o.ite(c, a.get(k, False), b.get(k, False), "b")
        return out

    def pod_field(self, s: S, idx: Val, fld: str, k: str) -> Val:
        """s[f'{prefix}{idx}.{fld}'] for a symbolic pod index (dests: 'd', pods: 'p')."""
        o = self.o
        if o.is_const(idx):
            return s[f"{fld[0]}{idx}.{fld[2:]}"] if 0 <= idx < self.P else 0
        res = s[f"{fld[0]}{self.P - 1}.{fld[2:]}"]
        for p in reversed(range(self.P - 1)):
            res = o.ite(o.eq(idx, p, "sm"), s[f"{fld[0]}{p}.{fld[2:]}"], res, k)
        return res

    def entry(self, s: S, f: int, i: int) -> dict[str, Val]:
        return {fld: s[f"e{f}.{i}.{fld}"] for fld in ("on", "st", "dest", "nfct", "own", "tmr")}

    def set_entry(self, s: S, f: int, i: int, e: dict[str, Val]) -> None:
        for fld, v in e.items():
            s[f"e{f}.{i}.{fld}"] = v

    EMPTY = {"on": False, "st": 0, "dest": 0, "nfct": False, "own": False, "tmr": 0}
    _EK = {"on": "b", "st": "sm", "dest": "sm", "nfct": "b", "own": "b", "tmr": "tmr"}

    def mux_entry(self, c: Val, a: dict[str, Val], b: dict[str, Val]) -> dict[str, Val]:
        return {k: self.o.ite(c, a[k], b[k], self._EK[k]) for k in a}

    def counters(self, s: S, p: int) -> tuple[Val, Val]:
        o = self.o
        act, ina = [], []
        for f in range(self.F):
            for i in range(self.E):
                e = self.entry(s, f, i)
                here = o.and_(e["on"], o.eq(e["dest"], p, "sm"))
                a = self.t_active(o, e["st"])
                act.append(o.and_(here, a))
                ina.append(o.and_(here, o.not_(a)))
        return o.count(act), o.count(ina)

    def set_client(self, s: S, f: int, sock: Val, pod: Val, tmr: Val, tries: Val, plan: Val) -> None:
        s[f"c{f}.sock"], s[f"c{f}.pod"], s[f"c{f}.tmr"], s[f"c{f}.tries"], s[f"c{f}.plan"] = (
            sock, pod, tmr, tries, plan)

    def free_client(self, s: S, f: int) -> None:
        self.set_client(s, f, int(Sock.FREE), -1, 0, 0, int(Plan.HOLD))

    def clear_own(self, s: S, f: int, c: Val = True) -> None:
        for i in range(self.E):
            s[f"e{f}.{i}.own"] = self.o.and_(s[f"e{f}.{i}.own"], self.o.not_(c))

    # ------------------------------------------------------------------ enabledness
    def any_due(self, s: S) -> Val:
        o = self.o
        terms = [s["flush"], o.eq(s["check"], 0, "tmr"), o.eq(s["sync"], 0, "tmr")]
        for f in range(self.F):
            for i in range(self.E):
                terms.append(o.and_(s[f"e{f}.{i}.on"], o.le(s[f"e{f}.{i}.tmr"], 0, "tmr")))
            terms.append(o.and_(self._client_timed(s, f), o.eq(s[f"c{f}.tmr"], 0, "tmr")))
        for p in range(self.P):
            terms.append(o.and_(o.eq(s[f"p{p}.phase"], int(PodPhase.TERMINATING), "sm"),
                                o.eq(s[f"p{p}.tmr"], 0, "tmr")))
        return o.or_(*terms)

    def _client_timed(self, s: S, f: int) -> Val:
        o = self.o
        return o.or_(o.eq(s[f"c{f}.sock"], int(Sock.SYN_SENT), "sm"), o.eq(s[f"c{f}.sock"], int(Sock.TIME_WAIT), "sm"),
                     self._orphan(s, f))

    def _orphan(self, s: S, f: int) -> Val:
        return self.o.eq(s[f"c{f}.sock"], int(Sock.ORPHAN), "sm")

    def enabled_all(self, s: S) -> list[Val]:
        """System.actions(): one enabledness condition per action of the universe."""
        o = self.o
        fires: Val = o.ite(self.any_due(s), 0, 1, "tmr") if self.untimed else 0
        due_terms: list[Val] = []
        out: dict[Action, Val] = {}
        for f in range(self.F):
            for i in range(self.E):
                c = o.and_(s[f"e{f}.{i}.on"], o.le(s[f"e{f}.{i}.tmr"], fires, "tmr"))
                out[(Act.EXPIRE, f, i)] = c
                due_terms.append(c)
            c = o.and_(self._client_timed(s, f), o.le(s[f"c{f}.tmr"], fires, "tmr"))
            out[(Act.CLIENT_TIMER, f, 0)] = c
            due_terms.append(c)
        for p in range(self.P):
            c = o.and_(o.eq(s[f"p{p}.phase"], int(PodPhase.TERMINATING), "sm"), o.le(s[f"p{p}.tmr"], fires, "tmr"))
            out[(Act.GRACE_END, p, 0)] = c
            due_terms.append(c)
        out[(Act.FLUSH, 0, 0)] = s["flush"]
        due_terms.append(s["flush"])
        out[(Act.SYNC, 0, 0)] = o.le(0, s["sync"], "tmr")
        due_terms.append(o.eq(s["sync"], 0, "tmr"))
        c = o.le(s["check"], fires, "tmr")
        out[(Act.CHECK, 0, 0)] = c
        due_terms.append(c)
        for f in range(self.F):
            free = o.and_(o.eq(s[f"c{f}.sock"], int(Sock.FREE), "sm"), *[
                o.not_(o.and_(s[f"e{f}.{i}.on"], o.eq(s[f"e{f}.{i}.tmr"], EXPIRE_NOW, "tmr"))) for i in range(self.E)])
            est = o.eq(s[f"c{f}.sock"], int(Sock.ESTABLISHED), "sm")
            out[(Act.REQUEST, f, Plan.CLIENT_CLOSES)] = free
            out[(Act.REQUEST, f, Plan.SERVER_CLOSES)] = free
            out[(Act.CONNECT, f, 0)] = free
            out[(Act.SEND, f, 0)] = est
            out[(Act.CLOSE, f, Plan.CLIENT_CLOSES)] = est
            pod_dead = o.eq(self.pod_field(s, s[f"c{f}.pod"], "p.phase", "sm"), int(PodPhase.DESTROYED), "sm")
            out[(Act.CLOSE, f, Plan.SERVER_CLOSES)] = o.and_(est, o.not_(pod_dead))
        budget = o.lt(0, s["budget"], "sm")
        for p in range(self.P):
            running = o.and_(o.eq(s[f"p{p}.phase"], int(PodPhase.RUNNING), "sm"), s[f"p{p}.listed"])
            out[(Act.DELETE_POD, p, 0)] = o.and_(budget, running)
            out[(Act.CRASH_POD, p, 0)] = o.and_(budget, running)
            out[(Act.ADD_POD, p, 0)] = o.and_(budget, o.eq(s[f"p{p}.phase"], int(PodPhase.ABSENT), "sm"))
            out[(Act.ENDPOINT_GONE, p, 0)] = o.and_(o.eq(s[f"p{p}.phase"], int(PodPhase.DESTROYED), "sm"),
                                                    s[f"p{p}.listed"])
        out[(Act.WAIT, 0, 0)] = o.not_(o.or_(*due_terms))
        return [out[a] for a in self.actions]

    def next_deadline(self, s: S) -> Val:
        o = self.o
        t = s["check"]
        t = o.ite(o.lt(0, s["sync"], "tmr"), o.min(t, s["sync"], "tmr"), t, "tmr")
        for f in range(self.F):
            for i in range(self.E):
                t = o.ite(s[f"e{f}.{i}.on"], o.min(t, s[f"e{f}.{i}.tmr"], "tmr"), t, "tmr")
            t = o.ite(self._client_timed(s, f), o.min(t, s[f"c{f}.tmr"], "tmr"), t, "tmr")
        for p in range(self.P):
            t = o.ite(o.eq(s[f"p{p}.phase"], int(PodPhase.TERMINATING), "sm"), o.min(t, s[f"p{p}.tmr"], "tmr"), t,
                      "tmr")
        return t

    # ------------------------------------------------------------------ one step (System.step)
    def step(self, s: S, a: Action) -> tuple[S, dict[str, Val]]:
        kind, x, y = int(a[0]), int(a[1]), int(a[2])
        o = self.o
        n = dict(s)
        facts: dict[str, Val] = {}
        pre = s
        if kind in (Act.REQUEST, Act.CONNECT):
            plan = y if kind == Act.REQUEST else int(Plan.HOLD)
            n = self._send_syn(n, x, 0, plan, facts, pre)
        elif kind == Act.WAIT:
            n = self._advance(n, self.next_deadline(s))
        elif kind == Act.EXPIRE:
            n = self._expire(n, x, y, facts)
        elif kind == Act.CLIENT_TIMER:
            n = self._client_timer(n, x, facts, pre)
        elif kind == Act.SEND:
            n = self._send_data(n, x, facts, pre)
        elif kind == Act.CLOSE:
            n = self._close(n, x, y, facts, pre)
        elif kind == Act.GRACE_END:
            n[f"p{x}.phase"], n[f"p{x}.tmr"] = int(PodPhase.DESTROYED), 0
        elif kind == Act.SYNC:
            n = self._sync(n, facts)
        elif kind == Act.CHECK:
            n = self._check(n, facts)
        elif kind == Act.FLUSH:
            n = self._flush(n, facts)
        elif kind == Act.DELETE_POD:
            n[f"p{x}.phase"], n[f"p{x}.tmr"], n[f"p{x}.listed"] = (
                int(PodPhase.TERMINATING), self.config.timing.grace_period, False)
            n["budget"] = o.sub(n["budget"], 1, "sm")
            n = self._endpoints_changed(n)
        elif kind == Act.ADD_POD:
            n[f"p{x}.phase"], n[f"p{x}.tmr"], n[f"p{x}.listed"] = int(PodPhase.RUNNING), 0, True
            n["budget"] = o.sub(n["budget"], 1, "sm")
            n = self._endpoints_changed(n)
        elif kind == Act.CRASH_POD:
            n[f"p{x}.phase"], n[f"p{x}.tmr"], n[f"p{x}.listed"] = int(PodPhase.DESTROYED), 0, True
            n["budget"] = o.sub(n["budget"], 1, "sm")
            facts["crash"] = True
        elif kind == Act.ENDPOINT_GONE:
            n[f"p{x}.listed"] = False
            n = self._endpoints_changed(n)
        else:
            raise UnsupportedConfig(f"SMT engines: action {Act(kind).name} is not encoded")
        if kind == Act.EXPIRE and y > 0:
            facts["expire_older"] = True
        if self.untimed:
            n = self._forget_time(n)
        return n, facts

    def _forget_time(self, s: S) -> S:
        o = self.o
        n = dict(s)
        for name, k in self.schema:
            if k == "tmr" and name not in ("sync", "check"):
                n[name] = o.ite(o.lt(1, s[name], "tmr"), 1, s[name], "tmr")
        n["check"] = o.min(s["check"], 1, "tmr")
        n["sync"] = o.min(s["sync"], 1, "tmr")
        return n

    def _advance(self, s: S, d: Val) -> S:
        o = self.o
        n = dict(s)
        for f in range(self.F):
            for i in range(self.E):
                n[f"e{f}.{i}.tmr"] = o.ite(s[f"e{f}.{i}.on"], o.sub(s[f"e{f}.{i}.tmr"], d, "tmr"), 0, "tmr")
            n[f"c{f}.tmr"] = o.ite(self._client_timed(s, f), o.sub(s[f"c{f}.tmr"], d, "tmr"), s[f"c{f}.tmr"], "tmr")
        for p in range(self.P):
            n[f"p{p}.tmr"] = o.ite(o.eq(s[f"p{p}.phase"], int(PodPhase.TERMINATING), "sm"),
                                   o.sub(s[f"p{p}.tmr"], d, "tmr"), s[f"p{p}.tmr"], "tmr")
        n["check"] = o.sub(s["check"], d, "tmr")
        n["sync"] = o.ite(o.le(0, s["sync"], "tmr"), o.sub(s["sync"], d, "tmr"), -1, "tmr")
        return n

    def _endpoints_changed(self, s: S) -> S:
        o = self.o
        s = dict(s)
        s["sync"] = o.ite(o.lt(s["sync"], 0, "tmr"), self.config.timing.sync_delay, s["sync"], "tmr")
        return s

    def _skb_ct(self, s: S, f: int) -> Val:
        if not self.config.nf_conntrack:
            return int(SkbCt.NONE)
        return self.o.ite(s[f"f{f}.ct"], int(SkbCt.CONFIRMED), int(SkbCt.NEW), "sm")

    # the SYN path: System._send_syn
    def _send_syn(self, s: S, f: int, tries: Val, plan: Val, facts: dict[str, Val], pre: S) -> S:
        o = self.o
        ct = self._skb_ct(s, f)
        e0 = self.entry(s, f, 0)
        has = e0["on"]
        w0_of = o.eq(self.pod_field(pre, e0["dest"], "d.w", "sm"), 0, "sm")
        facts["reuse_hit_w0"] = o.and_(has, w0_of)
        facts["reuse_hit_tw"] = o.and_(has, o.eq(e0["st"], int(TcpState.TIME_WAIT), "sm"))
        # the port-reuse block
        r = {k: t(o, e0["st"], o.eq(self.pod_field(s, e0["dest"], "d.w", "sm"), 0, "sm"), e0["nfct"], ct)
             for k, t in self.t_reuse.items()}
        resched = o.and_(has, r["resched"])
        a = dict(s)
        e0a = dict(e0, nfct=o.and_(e0["nfct"], o.not_(r["clear_nfct"])),
                   tmr=o.ite(r["expire_old"], EXPIRE_NOW, e0["tmr"], "tmr"))
        self.set_entry(a, f, 0, self.mux_entry(resched, e0a, e0))
        drop_a = o.and_(resched, r["drop"])
        # the server-status block: the entry's dest was deleted
        keep = o.and_(has, o.not_(resched))
        trash = o.and_(keep, o.eq(self.pod_field(s, e0["dest"], "d.status", "sm"), int(DestStatus.TRASH), "sm"))
        sv = {k: t(o, ct) for k, t in self.t_status.items()}
        cur = self.entry(a, f, 0)
        e0b = dict(cur, nfct=o.and_(cur["nfct"], o.not_(sv["clear_nfct"])),
                   tmr=o.ite(sv["expire"], EXPIRE_NOW, cur["tmr"], "tmr"))
        self.set_entry(a, f, 0, self.mux_entry(trash, e0b, cur))
        drop_b = o.and_(trash, sv["drop"])
        drop = o.or_(drop_a, drop_b)
        facts["syn_drop"] = drop
        dropped = dict(a)
        self.set_client(dropped, f, int(Sock.SYN_SENT), -1, self.t_rto(o, tries), tries, plan)
        # scheduling
        sched = o.or_(o.not_(has), resched, trash)
        usable = [o.lt(0, a[f"d{p}.w"], "sm") for p in range(self.P)]
        dest = self.t_sched_dest(o, a["order"], a["cursor"], *usable)
        cursor = self.t_sched_cursor(o, a["order"], a["cursor"], *usable)
        sc = dict(a)
        sc["cursor"] = cursor
        refused_s = dict(sc)
        self.free_client(refused_s, f)
        refused = o.lt(dest, 0, "sm")
        # property 11: a fresh scheduling decision (forwarded or refused), and weight-0 dests in the list
        facts["scheduled"] = o.and_(sched, o.not_(drop))
        facts["refused"] = o.and_(sched, o.not_(drop), refused)
        w0_in_list = o.or_(*[o.and_(self.t_contains[p](o, pre["order"]), o.eq(pre[f"d{p}.w"], 0, "sm"))
                             for p in range(self.P)])
        facts["fresh_beside_w0"] = o.and_(facts["scheduled"], w0_in_list)
        ins = dict(sc)
        facts["overflow"] = o.and_(sched, o.not_(refused), o.not_(drop), a[f"e{f}.{self.E - 1}.on"])
        for i in reversed(range(1, self.E)):
            self.set_entry(ins, f, i, self.entry(a, f, i - 1))
        self.set_entry(ins, f, 0, {"on": True, "st": int(TcpState.NONE), "dest": dest,
                                   "nfct": self.config.sysctls.conntrack, "own": False, "tmr": 0})
        b = self.merge(sched, ins, a)
        # the SYN is forwarded through entry 0
        cp = self.entry(b, f, 0)
        dead = o.eq(self.pod_field(b, cp["dest"], "p.phase", "sm"), int(PodPhase.DESTROYED), "sm")
        fwd = o.and_(o.not_(drop), o.not_(o.and_(sched, refused)))
        facts["syn_fwd"] = fwd
        facts["fwd_dead"] = dead
        facts["fwd_w0"] = o.eq(self.pod_field(b, cp["dest"], "d.w", "sm"), 0, "sm")
        facts["fwd_del"] = o.eq(self.pod_field(b, cp["dest"], "d.status", "sm"), int(DestStatus.TRASH), "sm")
        st1 = self.t_tcp[(Dir.INPUT, Seg.SYN)](o, cp["st"])
        noroute = dict(b)
        self.set_entry(noroute, f, 0, dict(cp, st=st1, tmr=self.t_timeout(o, st1)))
        self.free_client(noroute, f)
        st3 = self.t_tcp[(Dir.INPUT, Seg.ACK)](o, self.t_tcp[(Dir.OUTPUT, Seg.SYN)](o, st1))
        conn = dict(b)
        self.clear_own(conn, f)
        # an entry without NFCT calls ip_vs_notrack(): the flow's new conntrack is never confirmed
        has_ct = o.or_(o.eq(ct, int(SkbCt.CONFIRMED), "sm"), o.and_(o.eq(ct, int(SkbCt.NEW), "sm"), cp["nfct"]))
        self.set_entry(conn, f, 0, dict(cp, st=st3, tmr=self.t_timeout(o, st3), own=has_ct))
        self.set_client(conn, f, int(Sock.ESTABLISHED), cp["dest"], 0, 0, plan)
        conn[f"f{f}.ct"] = has_ct
        cl_facts: dict[str, Val] = {}
        closed_c = self._close(conn, f, int(Plan.CLIENT_CLOSES), cl_facts, pre)
        sv_facts: dict[str, Val] = {}
        closed_s = self._close(conn, f, int(Plan.SERVER_CLOSES), sv_facts, pre)
        is_c = o.eq(plan, int(Plan.CLIENT_CLOSES), "sm")
        is_s = o.eq(plan, int(Plan.SERVER_CLOSES), "sm")
        after = self.merge(is_c, closed_c, self.merge(is_s, closed_s, conn))
        close_facts = self.merge_facts(o, is_c, cl_facts, self.merge_facts(o, is_s, sv_facts, {}))
        live = o.not_(dead)
        for k, v in close_facts.items():
            facts[k] = o.and_(fwd, live, v)
        out = self.merge(drop, dropped, self.merge(o.and_(sched, refused), refused_s,
                                                   self.merge(dead, noroute, after)))
        return out

    def _client_timer(self, s: S, f: int, facts: dict[str, Val], pre: S) -> S:
        o = self.o
        free = dict(s)
        self.free_client(free, f)
        tw = o.eq(s[f"c{f}.sock"], int(Sock.TIME_WAIT), "sm")
        out_of_tries = o.le(self.config.timing.syn_retries, s[f"c{f}.tries"], "sm")
        syn_facts: dict[str, Val] = {}
        resent = self._send_syn(s, f, o.add(s[f"c{f}.tries"], 1, "sm"), s[f"c{f}.plan"], syn_facts, pre)
        stop = o.or_(tw, self._orphan(s, f), out_of_tries)  # an orphan gives up without a packet (ct unchanged)
        facts.update(self.merge_facts(o, stop, {}, syn_facts))
        return self.merge(stop, free, resent)

    # packets of an established connection: System._packet
    def _packet(self, s: S, f: int, direction: Dir, seg: Seg, facts: dict[str, Val], pre: S
                ) -> tuple[S, Val, Val]:
        """(state, broken, BrokenWhy); facts get this packet's PKT_FORWARDED facts (unguarded)."""
        o = self.o
        pod_of_conn = s[f"c{f}.pod"]
        n = dict(s)
        ct_live = s[f"f{f}.ct"]
        if direction == Dir.OUTPUT:
            sels = []
            seen: Val = False
            for i in range(self.E):
                e = self.entry(s, f, i)
                hit = o.and_(e["on"], o.eq(e["dest"], pod_of_conn, "sm"))
                sels.append(o.and_(hit, o.not_(seen)))
                seen = o.or_(seen, hit)
            broken: Val = o.not_(seen)
            why: Val = int(BrokenWhy.RESET)
        else:
            sels = [True] + [False] * (self.E - 1)
            e0 = self.entry(s, f, 0)
            none = o.not_(e0["on"])
            trash = o.and_(e0["on"], o.eq(self.pod_field(s, e0["dest"], "d.status", "sm"), int(DestStatus.TRASH),
                                          "sm"))
            sv = {k: t(o, o.ite(ct_live, int(SkbCt.CONFIRMED), int(SkbCt.NEW), "sm")) for k, t in self.t_status.items()}
            tr = dict(s)
            self.set_entry(tr, f, 0, dict(e0, nfct=o.and_(e0["nfct"], o.not_(sv["clear_nfct"])),
                                          tmr=o.ite(sv["expire"], EXPIRE_NOW, e0["tmr"], "tmr")))
            broken = o.or_(none, trash)
            why = o.ite(o.and_(trash, sv["drop"]), int(BrokenWhy.DEST_DELETED), int(BrokenWhy.RESET), "sm")
        fwd_dest: Val = 0
        new_cts: list[Val] = []
        for i in range(self.E):
            e = self.entry(s, f, i)
            new_ct = o.or_(ct_live, o.and_(self.config.nf_conntrack, e["nfct"]))  # no NFCT: ip_vs_notrack()
            new_cts.append(o.and_(sels[i], new_ct))
            st = self.t_tcp[(direction, seg)](o, e["st"])
            upd = dict(e, st=st, tmr=self.t_timeout(o, st), own=o.ite(ct_live, e["own"], new_ct, "b"))
            self.set_entry(n, f, i, self.mux_entry(sels[i], upd, e))
            fwd_dest = o.ite(sels[i], e["dest"], fwd_dest, "sm")
        n[f"f{f}.ct"] = o.or_(*new_cts)
        if direction == Dir.INPUT:
            ok = o.not_(broken)
            facts["pkt_fwd_any"] = ok
            facts["pkt_fwd_wrong"] = o.and_(ok, o.ne(fwd_dest, pod_of_conn, "sm"))
            gone = o.and_(ok, o.eq(self.pod_field(s, fwd_dest, "p.phase", "sm"), int(PodPhase.DESTROYED), "sm"))
            n = self.merge(trash, tr, self.merge(none, s, n))
            why = o.ite(gone, int(BrokenWhy.POD_GONE), why, "sm")
            broken = o.or_(broken, gone)
        else:
            n = self.merge(broken, s, n)
        return n, broken, why

    def _run_packets(self, s: S, f: int, seq: Sequence[tuple[Dir, Seg]], facts: dict[str, Val], pre: S
                     ) -> tuple[S, Val, Val]:
        o = self.o
        done: Val = False
        why: Val = 0
        cur = s
        any_fwd: list[Val] = []
        wrong: list[Val] = []
        for d, g in seq:
            pf: dict[str, Val] = {}
            nxt, b, w = self._packet(cur, f, d, g, pf, pre)
            live = o.not_(done)
            if "pkt_fwd_any" in pf:
                any_fwd.append(o.and_(live, pf["pkt_fwd_any"]))
                wrong.append(o.and_(live, pf["pkt_fwd_wrong"]))
            why = o.ite(o.and_(live, b), w, why, "sm")
            cur = self.merge(done, cur, nxt)
            done = o.or_(done, b)
        facts["pkt_fwd_any"] = o.or_(facts.get("pkt_fwd_any", False), *any_fwd)
        facts["pkt_fwd_wrong"] = o.or_(facts.get("pkt_fwd_wrong", False), *wrong)
        return cur, done, why

    def _broken(self, s: S, f: int, why: Val, facts: dict[str, Val], pre: S) -> S:
        o = self.o
        pod = s[f"c{f}.pod"]
        alive = o.ne(self.pod_field(pre, pod, "p.phase", "sm"), int(PodPhase.DESTROYED), "sm")
        facts["broken_dd_alive"] = o.and_(o.eq(why, int(BrokenWhy.DEST_DELETED), "sm"), alive)
        n = dict(s)
        self.clear_own(n, f)
        n[f"f{f}.ct"] = False
        self.free_client(n, f)
        return n

    def _send_data(self, s: S, f: int, facts: dict[str, Val], pre: S) -> S:
        cur, broken, why = self._run_packets(s, f, ((Dir.INPUT, Seg.ACK), (Dir.OUTPUT, Seg.ACK)), facts, pre)
        bf: dict[str, Val] = {}
        br = self._broken(cur, f, why, bf, pre)
        facts["broken_dd_alive"] = self.o.and_(broken, bf["broken_dd_alive"])
        return self.merge(broken, br, cur)

    def _close(self, s: S, f: int, plan: int, facts: dict[str, Val], pre: S) -> S:
        o = self.o
        if plan == Plan.CLIENT_CLOSES:
            seq = ((Dir.INPUT, Seg.FIN), (Dir.OUTPUT, Seg.ACK), (Dir.OUTPUT, Seg.FIN), (Dir.INPUT, Seg.ACK))
        else:
            seq = ((Dir.OUTPUT, Seg.FIN), (Dir.INPUT, Seg.ACK), (Dir.INPUT, Seg.FIN), (Dir.OUTPUT, Seg.ACK))
        cur, broken, why = self._run_packets(s, f, seq, facts, pre)
        bf: dict[str, Val] = {}
        br = self._broken(cur, f, why, bf, pre)
        facts["broken_dd_alive"] = o.and_(broken, bf["broken_dd_alive"])
        cl = dict(cur)
        self.clear_own(cl, f)
        cl[f"f{f}.ct"] = False
        if plan == Plan.CLIENT_CLOSES:
            self.set_client(cl, f, int(Sock.TIME_WAIT), -1, self.config.timing.client_time_wait, 0, int(Plan.HOLD))
            # System._orphaned: a FIN with no route to the pod (its retransmissions keep the entry armed) or dropped
            life = self.config.timing.orphan_life
            gone = o.eq(why, int(BrokenWhy.POD_GONE), "sm")
            orphan = o.and_(broken, o.or_(gone, o.eq(why, int(BrokenWhy.DEST_DELETED), "sm")))
            orph = dict(cur)
            orph[f"e{f}.0.tmr"] = o.ite(gone, o.add(cur[f"e{f}.0.tmr"], life, "tmr"), cur[f"e{f}.0.tmr"], "tmr")
            self.set_client(orph, f, int(Sock.ORPHAN), cur[f"c{f}.pod"], life, 0, int(Plan.HOLD))
            return self.merge(orphan, orph, self.merge(broken, br, cl))
        self.free_client(cl, f)
        return self.merge(broken, br, cl)

    # the orphan's next FIN once what it meets changed: System._orphan_fin
    def _orphan_fin(self, s: S, f: int, dest_deleted: bool) -> S:
        o = self.o
        e0 = self.entry(s, f, 0)
        ct = s[f"f{f}.ct"]
        reset = dict(s)  # _orphan_gone(reset=True): a RST frees the port, the conntrack entry is CLOSE
        self.clear_own(reset, f)
        reset[f"f{f}.ct"] = False
        self.free_client(reset, f)
        trash = o.and_(e0["on"], o.eq(self.pod_field(s, e0["dest"], "d.status", "sm"), int(DestStatus.TRASH), "sm"))
        sv = {k: t(o, self._skb_ct(s, f)) for k, t in self.t_status.items()}
        blocked = dict(e0, nfct=o.and_(e0["nfct"], o.not_(sv["clear_nfct"])),
                       tmr=o.ite(sv["expire"], EXPIRE_NOW, e0["tmr"], "tmr"))
        resched = dict(reset)
        self.set_entry(resched, f, 0, dict(blocked, own=False))
        dropped = dict(s)
        if dest_deleted:
            blocked = dict(blocked, tmr=o.ite(sv["expire"], EXPIRE_NOW, self.t_timeout(o, e0["st"]), "tmr"))
        self.set_entry(dropped, f, 0, blocked)
        dead = o.eq(self.pod_field(s, e0["dest"], "p.phase", "sm"), int(PodPhase.DESTROYED), "sm")
        fwd = dict(s)
        st = self.t_tcp[(Dir.INPUT, Seg.FIN)](o, e0["st"])
        new_ct = o.or_(ct, o.and_(self.config.nf_conntrack, e0["nfct"]))
        self.set_entry(fwd, f, 0, dict(e0, st=st, own=o.ite(ct, e0["own"], new_ct, "b"),
                                       tmr=o.add(self.config.timing.orphan_life, self.t_timeout(o, st), "tmr")))
        fwd[f"f{f}.ct"] = new_ct
        out = self.merge(dead, fwd, reset)
        out = self.merge(trash, self.merge(sv["drop"], dropped, resched), out)
        return self.merge(e0["on"], out, reset)

    def _orphan_after(self, c: Val, s: S, f: int, dest_deleted: bool = False) -> S:
        """s, with the orphan's next FIN where `c` (its head entry went, or that entry's dest was deleted)."""
        return self.merge(self.o.and_(c, self._orphan(s, f)), self._orphan_fin(s, f, dest_deleted), s)

    # IPVS timers
    def _remove_slot(self, s: S, f: int, j: int) -> None:
        for i in range(j, self.E):
            self.set_entry(s, f, i, self.entry(s, f, i + 1) if i + 1 < self.E else dict(self.EMPTY))

    def _expire(self, s: S, f: int, i: int, facts: dict[str, Val]) -> S:
        o = self.o
        e = self.entry(s, f, i)
        n = dict(s)
        self._remove_slot(n, f, i)
        kill = o.and_(e["nfct"], s[f"f{f}.ct"])
        facts["ct_killed_newer"] = o.and_(kill, o.not_(e["own"]))
        n[f"f{f}.ct"] = o.and_(s[f"f{f}.ct"], o.not_(kill))
        self.clear_own(n, f, kill)
        return self._orphan_after(True, n, f) if i == 0 else n

    def _flush(self, s: S, facts: dict[str, Val]) -> S:
        o = self.o
        n = dict(s)
        n["flush"] = False
        newer: list[Val] = []
        for f in range(self.F):
            ct: Val = s[f"f{f}.ct"]
            killed: Val = False
            keep: list[Val] = []
            entries = [self.entry(s, f, i) for i in range(self.E)]
            for e in entries:
                rem = o.and_(e["on"], o.eq(self.pod_field(s, e["dest"], "d.status", "sm"), int(DestStatus.TRASH), "sm"))
                kill = o.and_(rem, e["nfct"], ct)
                newer.append(o.and_(kill, o.not_(e["own"])))
                ct = o.and_(ct, o.not_(kill))
                killed = o.or_(killed, kill)
                keep.append(o.and_(e["on"], o.not_(rem)))
            n[f"f{f}.ct"] = ct
            # compaction: output slot j is the j-th kept entry
            before: list[Val] = []  # number of kept entries before i
            cnt: Val = 0
            for i in range(self.E):
                before.append(cnt)
                cnt = o.add(cnt, o.ite(keep[i], 1, 0, "sm"), "sm")
            for j in range(self.E):
                out = dict(self.EMPTY)
                for i in reversed(range(j, self.E)):
                    ei = dict(entries[i], own=o.and_(entries[i]["own"], o.not_(killed)))
                    out = self.mux_entry(o.and_(keep[i], o.eq(before[i], j, "sm")), ei, out)
                self.set_entry(n, f, j, out)
            heads_go = o.and_(entries[0]["on"], o.not_(keep[0]))  # the head was flushed
            n = self._orphan_after(heads_go, n, f)
        facts["ct_killed_newer"] = o.or_(*newer)
        return n

    # destinations and kube-proxy
    def _delete_dest(self, s: S, p: int, facts: dict[str, Val]) -> S:
        o = self.o
        live = []
        for f in range(self.F):
            here = o.or_(*[o.and_(s[f"e{f}.{i}.on"], o.eq(s[f"e{f}.{i}.dest"], p, "sm")) for i in range(self.E)])
            live.append(o.and_(o.eq(s[f"c{f}.sock"], int(Sock.ESTABLISHED), "sm"), o.eq(s[f"c{f}.pod"], p, "sm"),
                               here, o.ne(s[f"p{p}.phase"], int(PodPhase.DESTROYED), "sm")))
        facts["dest_deleted_live"] = o.or_(facts.get("dest_deleted_live", False), *live)
        n = dict(s)
        n["cursor"] = self.t_del_cursor[p](o, s["order"], s["cursor"])
        n[f"d{p}.status"] = int(DestStatus.TRASH)
        n["order"] = self.t_remove[p](o, s["order"])
        if self.sys.nodest_work:
            n["flush"] = True
        for f in range(self.F):
            e0 = self.entry(n, f, 0)
            n = self._orphan_after(o.and_(e0["on"], o.eq(e0["dest"], p, "sm")), n, f, dest_deleted=True)
        return n

    def _add_dest(self, s: S, p: int, weight: int) -> S:
        n = dict(s)
        n[f"d{p}.status"], n[f"d{p}.w"] = int(DestStatus.LINKED), weight
        n["order"] = self.t_prepend[p](self.o, s["order"])
        return n

    def _guarded_delete(self, c: Val, s: S, p: int, facts: dict[str, Val]) -> S:
        o = self.o
        df: dict[str, Val] = {}
        d = self._delete_dest(s, p, df)
        facts["dest_deleted_live"] = o.or_(facts.get("dest_deleted_live", False),
                                           o.and_(c, df["dest_deleted_live"]))
        return self.merge(c, d, s)

    def _sync(self, s: S, facts: dict[str, Val]) -> S:
        o = self.o
        s = dict(s)
        s["sync"] = -1
        for p in range(self.P):
            listed = s[f"p{p}.listed"]
            g = o.and_(listed, s[f"g{p}"])
            s[f"g{p}"] = o.and_(s[f"g{p}"], o.not_(listed))
            s = self._guarded_delete(g, s, p, facts)
            add = o.and_(listed, o.ne(s[f"d{p}.status"], int(DestStatus.LINKED), "sm"))
            s = self.merge(add, self._add_dest(s, p, 1), s)
        for p in range(self.P):
            c = o.and_(o.not_(s[f"p{p}.listed"]), o.eq(s[f"d{p}.status"], int(DestStatus.LINKED), "sm"),
                       o.not_(s[f"g{p}"]))
            active, inactive = self.counters(s, p)
            deletable = self.t_deletable(o, active, inactive)
            s = self._guarded_delete(o.and_(c, deletable), s, p, facts)
            q = dict(s)
            q[f"d{p}.w"] = 0
            q[f"g{p}"] = True
            s = self.merge(o.and_(c, o.not_(deletable)), q, s)
        return s

    def _check(self, s: S, facts: dict[str, Val]) -> S:
        o = self.o
        s = dict(s)
        s["check"] = self.config.timing.check_interval
        for p in range(self.P):
            active, inactive = self.counters(s, p)
            c = o.and_(s[f"g{p}"], self.t_deletable(o, active, inactive))
            s[f"g{p}"] = o.and_(s[f"g{p}"], o.not_(c))
            s = self._guarded_delete(c, s, p, facts)
        return s

    # ------------------------------------------------------------------ state predicates of "sometimes" checks
    def state_facts(self, s: S) -> dict[str, Val]:
        o = self.o
        destroyed_linked = o.or_(*[o.and_(o.eq(s[f"p{p}.phase"], int(PodPhase.DESTROYED), "sm"),
                                          o.eq(s[f"d{p}.status"], int(DestStatus.LINKED), "sm"))
                                   for p in range(self.P)])
        w0_conns = []
        for p in range(self.P):
            any_entry = o.or_(*[o.and_(s[f"e{f}.{i}.on"], o.eq(s[f"e{f}.{i}.dest"], p, "sm"))
                                for f in range(self.F) for i in range(self.E)])
            w0_conns.append(o.and_(o.eq(s[f"d{p}.status"], int(DestStatus.LINKED), "sm"),
                                   o.eq(s[f"d{p}.w"], 0, "sm"), any_entry))
        est_term = o.or_(*[o.and_(o.eq(s[f"c{f}.sock"], int(Sock.ESTABLISHED), "sm"),
                                  o.eq(self.pod_field(s, s[f"c{f}.pod"], "p.phase", "sm"), int(PodPhase.TERMINATING),
                                       "sm")) for f in range(self.F)])
        usable = o.or_(*[o.and_(self.t_contains[p](o, s["order"]), o.lt(0, s[f"d{p}.w"], "sm")) for p in range(self.P)])
        return {"post_destroyed_linked": destroyed_linked, "post_w0_with_conns": o.or_(*w0_conns),
                "post_est_to_terminating": est_term, "post_usable_in_list": usable}

    def domain(self, s: S) -> Val:
        """Every field within the values the model gives it (a strengthening for induction)."""
        o = self.o
        c: list[Val] = []
        tm = self.config.timing
        max_timer = _max_timer(tm)
        for name, k in self.schema:
            v = s[name]
            fld = name.rsplit(".", 1)[-1]
            if k == "tmr":
                c += [o.le(-1, v, "tmr"), o.le(v, max_timer, "tmr")]
            elif k == "ord":
                c += [o.le(0, v, "ord"), o.le(v, len(self.orders) - 1, "ord")]
            elif k == "sm":
                lo, hi = self.small_range(fld)
                c += [o.le(lo, v, "sm"), o.le(v, hi, "sm")]
        return o.and_(*c)

    def small_range(self, fld: str) -> tuple[int, int]:
        """The values the model gives a small field (by its last name part), lowest and highest."""
        hi = {"st": len(TcpState) - 1, "dest": self.P - 1, "sock": len(Sock) - 1, "pod": self.P - 1,
              "tries": self.config.timing.syn_retries, "plan": 2, "status": 2, "w": 1, "cursor": self.P - 1,
              "phase": 3, "budget": self.config.scope.changes}[fld]
        lo = -1 if fld == "pod" else min(HEAD, 0) if fld == "cursor" else 0
        return lo, hi


# What each property's violation and "sometimes" checks mean in terms of the encoding's facts. A property or
# check not named here is refused by the SMT engines (never silently skipped).
def property_facts(facts: dict[str, Val], o: Ops) -> dict[str, Val]:
    g = facts.get

    def f(name: str) -> Val:
        return g(name, False)

    quiesced = o.or_(f("fwd_w0"), f("fwd_del"))
    fwd = f("syn_fwd")
    return {
        "no-new-conn-to-destroyed-pod": o.and_(fwd, f("fwd_dead"), quiesced),
        "no-new-conn-to-quiesced-dest": o.and_(fwd, quiesced),
        "no-syn-dropped-on-reuse": f("syn_drop"),
        "graceful-termination-kept": o.or_(f("dest_deleted_live"), f("broken_dd_alive")),
        "established-connections-stay-put": f("pkt_fwd_wrong"),
        "live-conntrack-never-killed": f("ct_killed_newer"),
        "control-plane-race": o.and_(fwd, f("fwd_dead"), o.not_(quiesced)),
        "no-refusal-with-a-usable-dest": o.and_(f("refused"), f("post_usable_in_list")),
    }


REACH_FACTS: dict[str, str] = {
    "a SYN finds an entry whose dest has weight 0": "reuse_hit_w0",
    "a pod is destroyed while its real server is still in IPVS": "post_destroyed_linked",
    "a dest has weight 0 while it has connections": "post_w0_with_conns",
    "a SYN finds an entry in TIME_WAIT": "reuse_hit_tw",
    "an established connection to a terminating pod exists": "post_est_to_terminating",
    "a packet of an established connection is forwarded": "pkt_fwd_any",
    "an older entry expires while a newer one shares its key": "expire_older",
    "a pod crashes while its real server has weight 1": "crash",
    "a new connection is scheduled while a real server has weight 0": "fresh_beside_w0",
}
