"""The Hypothesis engine: a `RuleBasedStateMachine` that is a thin adapter over the model.

The one rule draws an index into `System.actions(state)` (so the rule's precondition is the model's own
enabling; there is no second copy of the kernel logic) and takes that step in the exact-time semantics.
Every run is therefore a real, exactly timed run: a violation found here replays in the exact model
(`ipvs-verify show`, tests/test_counterexamples.py). Besides the model's own waits (to the next deadline,
and 1 s) the rule may wait any whole number of seconds in between; `System.enabled` allows those.

The invariants are the safety properties, evaluated on the last transition with `prop.violated`; the
"sometimes" checks are counted per run, so that a run that never reached a property's interesting
states can fail instead of passing vacuously. `target()` steers toward the states that matter for
these bugs: entries pointing at weight-0 or deleted dests, reused ports, dropped SYNs and destroyed pods
whose real servers are still in IPVS.

A failure is shrunk by Hypothesis, then minimised by `ipvs_verify.presentation.minimise` and returned as a trace in
the project's format (`build_trace`, engine "hypothesis", with the seed). Liveness properties (5, 6)
are not checked here: a finite random run cannot show a fair cycle; the explicit engine's lasso search
decides them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, settings, target
from hypothesis import seed as hyp_seed
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from ipvs_verify.model.config import Config, Scope
from ipvs_verify.model.events import Ev, Event
from ipvs_verify.model.state import DestStatus, PodPhase, Sock, State
from ipvs_verify.model.system import ACTION_NAMES, Act, Action, System
from ipvs_verify.presentation.minimise import minimise
from ipvs_verify.presentation.trace import build_trace
from ipvs_verify.presentation.trace_model import HypothesisInfo, TraceFile
from ipvs_verify.properties.catalog import PROPERTIES, Property, event_mask, searched_system

ENGINE = "hypothesis"
_WAIT = int(Act.WAIT)
SAFETY: tuple[Property, ...] = tuple(p for p in PROPERTIES if p.kind == "safety")

class PropertyViolated(AssertionError):
    """Raised by a property's invariant; carries the run so far (the counterexample)."""

    def __init__(self, prop: Property, config: Config, actions: list[Action]) -> None:
        super().__init__(f"property {prop.number} ({prop.name}) violated after {len(actions)} steps")
        self.prop = prop
        self.config = config
        self.actions = list(actions)


@dataclass
class Coverage:
    """What one search covered, summed over every example Hypothesis ran (generation, targeting, shrinking)."""

    examples: int = 0
    steps: int = 0
    seconds: float = 0.0
    max_time: int = 0  # the longest run, in simulated seconds
    actions: Counter[int] = field(default_factory=Counter)  # Act -> steps
    sometimes: dict[str, dict[str, int]] = field(default_factory=dict)  # property -> check -> transitions
    violations: Counter[str] = field(default_factory=Counter)  # property -> violating transitions seen
    targets: dict[str, float] = field(default_factory=dict)  # label -> best value of any run
    first_found_seconds: float | None = None  # wall time until the first violation of a raising property
    first_found_example: int | None = None

    def record_reach(self, prop: Property, name: str) -> None:
        self.sometimes[prop.name][name] += 1

    def missing(self, prop: Property) -> list[str]:
        """The property's "sometimes" checks that no transition reached."""
        return [n for n, hits in self.sometimes.get(prop.name, {}).items() if hits == 0]

    def as_json(self) -> dict[str, Any]:
        return {
            "examples": self.examples, "steps": self.steps, "seconds": round(self.seconds, 3),
            "steps_per_second": round(self.steps / self.seconds) if self.seconds else 0,
            "max_simulated_seconds": self.max_time,
            "sometimes": self.sometimes, "violating_transitions": dict(self.violations),
            "targets": self.targets, "actions": {ACTION_NAMES[Act(k)]: n for k, n in sorted(self.actions.items())},
        }


def _stale_entries(pre: State, events: tuple[Event, ...], post: State) -> int:
    return sum(
        1 for fl in post.flows for e in fl.entries
        if post.dests[e.dest].weight == 0 or post.dests[e.dest].status == DestStatus.TRASH
    )


def _crashed_on_quiesced(pre: State, events: tuple[Event, ...], post: State) -> int:
    """Ports a crashed client left on a weight-0 or deleted real server (its next SYN meets that entry)."""
    return sum(
        1 for fl in post.flows
        if fl.client.sock == Sock.FREE and fl.client.pod >= 0
        and (post.dests[fl.client.pod].weight == 0 or post.dests[fl.client.pod].status == DestStatus.TRASH)
    )


def _dead_pods_in_ipvs(pre: State, events: tuple[Event, ...], post: State) -> int:
    return sum(
        1 for p, pod in enumerate(post.pods)
        if pod.phase == PodPhase.DESTROYED and post.dests[p].status == DestStatus.LINKED
    )


def _conns_to_terminating(pre: State, events: tuple[Event, ...], post: State) -> int:
    return sum(
        1 for fl in post.flows
        if fl.client.sock == Sock.ESTABLISHED and post.pods[fl.client.pod].phase == PodPhase.TERMINATING
    )


def _shadowed_entries(pre: State, events: tuple[Event, ...], post: State) -> int:
    return sum(len(fl.entries) - 1 for fl in post.flows if len(fl.entries) > 1)


def _count(kind: Ev) -> Callable[[State, tuple[Event, ...], State], int]:
    return lambda pre, events, post: sum(1 for e in events if e[0] == kind)


# what target() steers toward, per run: (label, "max" over the run's states or "sum" over its steps, measure)
TARGETS: tuple[tuple[str, str, Callable[[State, tuple[Event, ...], State], int]], ...] = (
    ("entries to weight-0 or deleted dests", "max", _stale_entries),
    ("SYNs that found an entry (port reuse)", "sum", _count(Ev.REUSE_HIT)),
    ("SYNs dropped", "sum", _count(Ev.SYN_DROPPED)),
    ("destroyed pods with a real server in IPVS", "max", _dead_pods_in_ipvs),
    ("established connections to terminating pods", "max", _conns_to_terminating),
    ("older entries shadowed by a newer one", "max", _shadowed_entries),
    ("crashed clients' ports on weight-0 or deleted dests", "max", _crashed_on_quiesced),
)


def make_machine(
    configure: Callable[[Scope], Config],
    scopes: st.SearchStrategy[Scope],
    props: tuple[Property, ...],
    raise_on: frozenset[str],
    coverage: Coverage,
) -> type[RuleBasedStateMachine]:
    """A state machine class over the model of `configure(scope)`, one scope drawn per example.

    Every property in `props` is checked on every transition and its "sometimes" checks are counted;
    only those named in `raise_on` fail the run (the others are counted in `coverage.violations`).
    """
    systems: dict[Scope, System] = {}
    reach = [(p, r) for p in props for r in p.sometimes]
    watched = [p for p in props if p.name not in raise_on]
    for p in props:
        coverage.sometimes.setdefault(p.name, {r.name: 0 for r in p.sometimes})

    class IpvsMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.sys: System | None = None
            self.state: State | None = None
            self.trail: list[Action] = []
            self.last: tuple[State, Action, tuple[Event, ...], State] | None = None
            self.now = 0
            self.best = [0] * len(TARGETS)
            coverage.examples += 1

        @initialize(scope=scopes)
        def topology(self, scope: Scope) -> None:
            """The configuration and topology: variant, sysctls, kube-proxy, clients, ports, pods."""
            if scope not in systems:
                # read/delete windows only when hunting the property about them: they lead nowhere else
                systems[scope] = searched_system(configure(scope), "exact",
                                                 tuple(p for p in props if p.name in raise_on))
            self.sys = systems[scope]
            self.state = self.sys.initial_states()[0]

        @rule(data=st.data())
        def step(self, data: st.DataObject) -> None:
            """One of the model's enabled actions (the model decides what is enabled)."""
            sys, pre = self.sys, self.state
            assert sys is not None and pre is not None
            if self.last is not None and self.last[3] is sys.window_end:
                # the last step was a read/delete window, judged (property 12) on its transition: the run goes on
                # from before it, as a search does from the step's other successors
                self.trail.pop()
                pre = self.state = self.last[0]
            # waits first: the simplest run (every draw 0) lets time pass, and shrinking a draw moves that
            # step toward waiting; then the model's other actions, in its own order
            acts = sys.actions(pre)
            waits = [a for a in acts if a[0] == _WAIT]
            others = [a for a in acts if a[0] != _WAIT]
            wait_to = waits[0][1] if waits else 0
            between = 1 if wait_to > 2 else 0  # also: wait 2 .. (next deadline - 1) seconds
            i = data.draw(st.integers(0, len(waits) + between + len(others) - 1), label="action")
            if i < len(waits):
                a = waits[i]
            elif i < len(waits) + between:
                a = (_WAIT, data.draw(st.integers(2, wait_to - 1), label="seconds"), 0)
                assert sys.enabled(pre, a)
            else:
                a = others[i - len(waits) - between]
            post, events = sys.step(pre, a)
            self.trail.append(a)
            self.state = post
            self.last = (pre, a, events, post)
            if a[0] == _WAIT:
                self.now += a[1]
            coverage.steps += 1
            coverage.actions[a[0]] += 1
            mask = event_mask(events)
            for p, r in reach:  # a predicate can only hold on a transition carrying one of its trigger events
                if r.trigger_mask & mask and r.holds(sys, pre, a, events, post):
                    coverage.record_reach(p, r.name)
            for p in watched:  # counted here; the properties that fail the run are the invariants below
                if p.trigger_mask & mask and p.violated is not None and p.violated(sys, pre, a, events, post):
                    coverage.violations[p.name] += 1
            for k, (_, how, measure) in enumerate(TARGETS):
                v = measure(pre, events, post)
                self.best[k] = max(self.best[k], v) if how == "max" else self.best[k] + v

        def teardown(self) -> None:
            coverage.max_time = max(coverage.max_time, self.now)
            for (label, _, _), v in zip(TARGETS, self.best, strict=True):
                target(float(v), label=label)
                coverage.targets[label] = max(coverage.targets.get(label, 0.0), float(v))

    def _invariant(prop: Property) -> Callable[[IpvsMachine], None]:
        assert prop.violated is not None
        violated = prop.violated

        def check(self: IpvsMachine) -> None:
            if self.last is None or self.sys is None:
                return
            pre, a, events, post = self.last
            if violated(self.sys, pre, a, events, post):
                coverage.violations[prop.name] += 1
                if coverage.first_found_seconds is None:
                    coverage.first_found_seconds = time.perf_counter() - _started[0]
                    coverage.first_found_example = coverage.examples
                raise PropertyViolated(prop, self.sys.config, self.trail)

        check.__name__ = prop.name.replace("-", "_")
        check.__doc__ = prop.meaning
        return check

    for prop in props:
        if prop.name not in raise_on:
            continue
        fn = _invariant(prop)
        setattr(IpvsMachine, fn.__name__, invariant()(fn))
    IpvsMachine.__name__ = IpvsMachine.__qualname__ = "IpvsMachine"
    return IpvsMachine


_started = [0.0]


@dataclass
class SearchResult:
    raise_on: tuple[Property, ...]
    seed: int
    coverage: Coverage
    violation: PropertyViolated | None  # the shrunk failing run, if one was found
    minimised: list[Action] = field(default_factory=list)
    trace: TraceFile | None = None

    @property
    def found(self) -> bool:
        return self.violation is not None


def search(
    configure: Callable[[Scope], Config],
    raise_on: tuple[Property, ...],
    base: settings,
    seed: int,
    scopes: st.SearchStrategy[Scope] | None = None,
    scope: Scope | None = None,
    watch: tuple[Property, ...] = SAFETY,
) -> SearchResult:
    """Run Hypothesis until a property of `raise_on` is violated (or the budget of `base` is spent).

    `scopes` (a strategy, one scope per example) or `scope` (fixed) gives the topology. The properties
    of `watch` are counted (their "sometimes" checks and violating transitions) without failing the run.
    Hypothesis shrinks a failure, then `minimise` finishes the job.
    """
    for prop in raise_on:
        if prop.kind != "safety":
            raise ValueError(
                f"property {prop.number} ({prop.name}) is {prop.kind}: the Hypothesis engine checks safety "
                "properties only (liveness needs a fair cycle: the explicit engine's lasso search decides it)")
    if scopes is None:
        scopes = st.just(scope or Scope())
    coverage = Coverage()
    props = tuple(dict.fromkeys(raise_on + watch))
    machine = make_machine(configure, scopes, props, frozenset(p.name for p in raise_on), coverage)
    run_settings = settings(
        base, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    _started[0] = time.perf_counter()
    violation: PropertyViolated | None = None
    try:
        run_state_machine_as_test(hyp_seed(seed)(machine), settings=run_settings)
    except PropertyViolated as exc:
        violation = exc
    finally:
        coverage.seconds = time.perf_counter() - _started[0]
    result = SearchResult(raise_on, seed, coverage, violation)
    if violation is not None:
        prop = violation.prop
        result.minimised = minimise(System(violation.config, "exact"), prop, violation.actions)
        info = HypothesisInfo(
            shrunk_steps=len(violation.actions), minimised_steps=len(result.minimised),
            first_found_example=coverage.first_found_example, examples=coverage.examples,
        )
        result.trace = build_trace(violation.config, result.minimised, prop, ENGINE, "exact", seed=seed,
                                   hypothesis=info)
    return result


# The two profiles (registered for pytest by tests/stateful_plugin.py; the benchmark uses CI too).
# One rule step moves time at most to the next timer deadline, so 50 steps cover the 30 s grace period, the
# 60 s check and client TIME_WAIT, and the 120 s TIME_WAIT entry several times over (runs reach 3000 s);
# longer runs mostly make shrinking slower. The thorough profile runs 500 steps: hours of simulated time.
CI = settings(max_examples=60, stateful_step_count=50, derandomize=True, database=None, deadline=None,
              print_blob=False)
THOROUGH = settings(max_examples=1000, stateful_step_count=500, derandomize=False, deadline=None)

# the thorough profile's topologies: more clients, ports and pods than the explicit engine can finish, and
# rolling updates (several deletes and adds, spare pods to add)
WIDE_SCOPES: st.SearchStrategy[Scope] = st.builds(
    Scope,
    clients=st.integers(1, 3),
    ports=st.integers(1, 3),
    pods=st.sampled_from([("a", "b"), ("a", "b", "c")]),
    spare_pods=st.sampled_from([(), ("d",), ("d", "e"), ("d", "e", "f")]),
    changes=st.integers(2, 8),
    crashes=st.booleans(),
    short_requests=st.just(True),
    long_lived=st.just(True),
    client_crashes=st.booleans(),
    client_resets=st.booleans(),  # SO_LINGER 0 closes
    bound_ports=st.booleans(),  # a connect that takes over its own TIME_WAIT
)


def quiet(base: settings) -> settings:
    """`base` without the phases that only report (the explain phase re-runs the failure many times)."""
    return settings(base, phases=[p for p in base.phases if p != Phase.explain])
