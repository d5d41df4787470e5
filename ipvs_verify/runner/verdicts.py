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
) -> CellResult:
    """`search` is the explicit search to use: `explore` (packed), or `explore_plain` (benchmarks compare them)."""
    # the event-driven search may stop at its cap: its violations are still real, and "holds" comes only
    # from the untimed search, which is complete
    lacking = {p.name: missing_needs(p, config.scope) for p in properties}
    not_applicable = {name: needs for name, needs in lacking.items() if needs}
    checked = tuple(p for p in properties if p.name not in not_applicable)
    event = search(searched_system(config, "event", checked), checked, max_states, _phase(progress, "event"))
    searches = [_stats(event)]
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
    if undecided:
        untimed = search(searched_system(config, "untimed", tuple(undecided)), tuple(undecided), max_states,
                         _phase(progress, "untimed"))
        searches.append(_stats(untimed))
        for v in verdicts:
            if v.prop in undecided:
                _decide(v, event, untimed, progress)
    return CellResult(config, verdicts, searches)


def _phase(progress: CellProgress | None, phase: str) -> Callable[[int, int, int, float], None] | None:
    if progress is None:
        return None
    return lambda states, edges, depth, secs: progress(phase, states, edges, depth, secs)


def _decide(v: Verdict, event: Exploration, untimed: Exploration, progress: CellProgress | None = None) -> None:
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
    hit = _violation(untimed, prop, progress)
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
