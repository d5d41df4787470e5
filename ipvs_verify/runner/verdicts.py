"""Check one configuration against the properties: the verdict of each, with its evidence.

Two explicit searches bracket the real-time behaviours (docs/time.md):
  1. event-driven timing (an under-approximation): a violation or fair lasso found here is a real,
     exactly timed run -> "violated";
  2. untimed (an over-approximation): if the property holds here it holds for every timing -> "holds".
When (1) finds nothing and (2) finds a violation, the verdict is "undecided", never "holds".
A "sometimes" check that no run of the untimed over-approximation reaches gives "vacuous"; one that only it
reaches weakens "holds" to "undecided". A search stopped by a state cap only ever weakens a label, to
"bounded". A property about a feature the scope lacks (a TCP property in a UDP cell, say) gives "n/a" and is
not searched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ipvs_verify.engines.checks import Goal
from ipvs_verify.engines.explicit import Exploration, explore
from ipvs_verify.engines.lasso import find_lasso
from ipvs_verify.model.config import Config
from ipvs_verify.model.system import Action
from ipvs_verify.properties.catalog import BY_NAME, Property, missing_needs, searched_system

VERDICTS = ("holds", "violated", "undecided", "bounded", "vacuous", "n/a")

# (phase, states, transitions, depth, seconds); phase is the search running: "event" or "untimed"
CellProgress = Callable[[str, int, int, int, float], None]


@dataclass
class SearchStats:
    timing: str
    states: int
    transitions: int
    depth: int
    seconds: float
    complete: bool
    bound: str
    coverage: dict[str, int]
    loop: str = "python"  # Exploration.loop: "compiled", "python" (the packed search's loops) or "plain"

    @property
    def rate(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Verdict:
    prop_name: str  # a name, not the Property: verdicts cross process boundaries
    status: str
    detail: str = ""
    actions: list[Action] = field(default_factory=list)  # the counterexample, when violated
    loop_start: int | None = None  # liveness: index in `actions` where the cycle starts
    timing: str = "event"  # the search that produced the evidence
    pod: int = -1  # liveness: the pod the obligation is about

    @property
    def prop(self) -> Property:
        return BY_NAME[self.prop_name]


@dataclass
class CellResult:
    config: Config
    verdicts: list[Verdict]
    searches: list[SearchStats]
    same_as: str = ""  # the cell searched for this one: the same transition system (model/equivalence.py)


def _stats(ex: Exploration) -> SearchStats:
    return SearchStats(
        timing=ex.system.timing_mode, states=ex.n_states, transitions=ex.n_edges, depth=ex.max_depth,
        seconds=ex.seconds, complete=ex.complete, bound=ex.bound, coverage=dict(sorted(ex.coverage.items())),
        loop=ex.loop,
    )


def _violation(ex: Exploration, prop: Property,
               progress: CellProgress | None = None) -> tuple[list[Action], int | None, int] | None:
    if prop.kind == "safety":
        found = ex.violations.get(prop.name)
        if found is None:
            return None
        return ex.path_to(found.src) + [found.action], None, -1
    if progress is not None:  # the liveness pass over the explored graph: a phase of its own in the progress
        progress(f"lasso {prop.name} ({ex.system.timing_mode})", ex.n_states, ex.n_edges, ex.max_depth, 0.0)
    lasso = find_lasso(ex, prop)
    if lasso is None:
        return None
    return lasso.actions, len(lasso.prefix), lasso.pod


def check_config(
    config: Config,
    properties: tuple[Property, ...],
    max_states: int = 300_000,
    progress: CellProgress | None = None,
    search: Callable[..., Exploration] = explore,
    settle: bool = True,
) -> CellResult:
    """`search` is the explicit search to use: `explore` (packed), or `explore_plain` (benchmarks compare them).
    `settle`: the event-driven search stops once the untimed one has settled the rest (_goal); False runs it to
    completion or its cap (tests/test_settled_search.py: the same verdicts and traces)."""
    # the event-driven search may stop at its cap: its violations are still real, and "holds" comes only
    # from the untimed search, which is complete
    lacking = {p.name: missing_needs(p, config.scope) for p in properties}
    not_applicable = {name: needs for name, needs in lacking.items() if needs}
    checked = tuple(p for p in properties if p.name not in not_applicable)
    # the untimed search first (it is small): where it is complete, it settles what the event-driven search is
    # for (_goal), and that search stops once it has found those runs instead of running on to its cap. The
    # read/delete window's property is left to the event search first: its windows would grow the untimed
    # search (4x at two clients, measured) for a violation the event search finds at depth 2
    first = tuple(p for p in checked if "kp_window" not in p.needs)
    later = tuple(p for p in checked if p not in first)
    untimed = search(searched_system(config, "untimed", first), first, max_states, _phase(progress, "untimed"))
    lassos: dict[str, tuple[list[Action], int | None, int] | None] = {}
    goal = _goal(untimed, first, lassos, progress) if settle else None
    if goal is not None and later:
        if any(p.kind != "safety" for p in later):
            goal = None
        else:  # their violations too: if one is not found, the search runs on, and then the untimed one below
            goal = Goal(goal.violations | {p.name for p in later}, goal.reached)
    event = search(searched_system(config, "event", checked), checked, max_states, _phase(progress, "event"),
                   goal=goal)
    searches = [_stats(event), _stats(untimed)]
    verdicts: list[Verdict] = []
    undecided: list[Property] = []
    for prop in properties:
        if prop.name in not_applicable:
            verdicts.append(Verdict(prop.name, "n/a", "the scope has no " + ", ".join(not_applicable[prop.name])))
            continue
        hit = _violation(event, prop, progress)
        if hit is not None:  # a real, exactly timed run: violated, however far the search got
            actions, loop, pod = hit
            verdicts.append(Verdict(prop.name, "violated", "", actions, loop, "event", pod))
            continue
        verdicts.append(Verdict(prop.name, "holds"))  # provisional: decided below, by the untimed search
        undecided.append(prop)
    rest = tuple(p for p in undecided if p in later)
    untimed_later = untimed
    if rest:  # as before the untimed search came first: only for what the event search did not violate
        untimed_later = search(searched_system(config, "untimed", rest), rest, max_states,
                               _phase(progress, "untimed"))
        searches.append(_stats(untimed_later))
    for v in verdicts:
        if v.prop in undecided:
            _decide(v, event, untimed_later if v.prop in rest else untimed, progress, lassos)
    return CellResult(config, verdicts, searches)


def _goal(untimed: Exploration, checked: tuple[Property, ...],
          lassos: dict[str, tuple[list[Action], int | None, int] | None],
          progress: CellProgress | None) -> Goal | None:
    """What the event-driven search must still find, once the complete untimed search (every timing) has run: a
    real run for each violation it found, and one reaching each "sometimes" check of a property it clears (a
    check it reaches nowhere makes the property vacuous). None: search on to the cap, as when the untimed
    search is not complete, or a liveness property has a lasso there (a real lasso needs the whole graph).
    With the goal met the labels are those of a full search: "holds" needs nothing more of it."""
    if not untimed.complete:
        return None
    want_violations: set[str] = set()
    want_reached: set[tuple[str, str]] = set()
    for prop in checked:
        hit = lassos[prop.name] = _violation(untimed, prop, progress)
        if hit is not None:
            if prop.kind != "safety":
                return None
            want_violations.add(prop.name)
        elif all(r.name in untimed.reached[prop.name] for r in prop.sometimes):
            want_reached |= {(prop.name, r.name) for r in prop.sometimes}
    return Goal(frozenset(want_violations), frozenset(want_reached))


def _phase(progress: CellProgress | None, phase: str) -> Callable[[int, int, int, float], None] | None:
    if progress is None:
        return None
    return lambda states, edges, depth, secs: progress(phase, states, edges, depth, secs)


def _decide(v: Verdict, event: Exploration, untimed: Exploration, progress: CellProgress | None = None,
            lassos: dict[str, tuple[list[Action], int | None, int] | None] | None = None) -> None:
    """The verdict of a property the event-driven search did not violate, from both searches.

    A label never claims more than the searches showed: "holds" needs the complete untimed search (every
    timing) to find no violation and a real run to reach every "sometimes" check; "vacuous" needs the
    complete untimed search to reach some "sometimes" check nowhere. A search stopped at its cap can only
    weaken a label to "bounded".
    """
    prop = v.prop
    unreached = [r.name for r in prop.sometimes if r.name not in event.reached[prop.name]]
    if not untimed.complete:
        v.status, v.detail = "bounded", f"untimed search stopped at its {untimed.bound}"
        return
    never = [name for name in unreached if name not in untimed.reached[prop.name]]
    if never:  # unreachable even in the over-approximation: in no real run either
        v.status, v.detail = "vacuous", "never reached: " + "; ".join(never)
        return
    hit = lassos[prop.name] if lassos is not None and prop.name in lassos else _violation(untimed, prop, progress)
    if hit is not None and not event.complete:
        v.status = "bounded"
        v.detail = (f"the event-driven search stopped at its {event.bound}; the untimed "
                    "over-approximation has a violation")
    elif hit is not None:
        actions, loop, pod = hit
        v.status = "undecided"
        v.detail = ("violated only when timers may fire in any order (untimed over-approximation); "
                    "no exactly timed run found")
        v.actions, v.loop_start, v.timing, v.pod = actions, loop, "untimed", pod
    elif unreached and not event.complete:
        v.status = "bounded"
        v.detail = (f"the event-driven search stopped at its {event.bound} before a real run reached: "
                    + "; ".join(unreached))
    elif unreached:
        v.status = "undecided"
        v.detail = ("no violation for any timing, but only the untimed over-approximation reaches: "
                    + "; ".join(unreached) + " (no exactly timed run does)")
