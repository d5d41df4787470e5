"""Check one configuration against the properties: the verdict of each, with its evidence.

Two explicit searches bracket the real-time behaviours (README, "Time"):
  1. event-driven timing (an under-approximation): a violation or fair lasso found here is a real,
     exactly timed run -> "violated";
  2. untimed (an over-approximation): if the property holds here it holds for every timing -> "holds".
When (1) finds nothing and (2) finds a violation, the verdict is "undecided", never "holds".
A search stopped by a state cap gives "bounded"; an unreached "sometimes" check gives "vacuous"; a property
about a feature the scope lacks (a TCP property in a UDP cell, say) gives "n/a" and is not searched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ipvs_verify.engines.explicit import Exploration, Progress, explore
from ipvs_verify.engines.lasso import find_lasso
from model.config import Config
from model.system import Action, System
from properties.catalog import BY_NAME, Property, missing_needs

VERDICTS = ("holds", "violated", "undecided", "bounded", "vacuous", "n/a")


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


def _stats(ex: Exploration) -> SearchStats:
    return SearchStats(
        timing=ex.system.timing_mode, states=ex.n_states, transitions=ex.n_edges, depth=ex.max_depth,
        seconds=ex.seconds, complete=ex.complete, bound=ex.bound, coverage=dict(sorted(ex.coverage.items())),
        loop=ex.loop,
    )


def _violation(ex: Exploration, prop: Property) -> tuple[list[Action], int | None, int] | None:
    if prop.kind == "safety":
        found = ex.violations.get(prop.name)
        if found is None:
            return None
        return ex.path_to(found.src) + [found.action], None, -1
    lasso = find_lasso(ex, prop)
    if lasso is None:
        return None
    return lasso.actions, len(lasso.prefix), lasso.pod


def check_config(
    config: Config,
    properties: tuple[Property, ...],
    max_states: int = 300_000,
    progress: Progress | None = None,
    search: Callable[..., Exploration] = explore,
) -> CellResult:
    """`search` is the explicit search to use: `explore` (packed), or `explore_plain` (benchmarks compare them)."""
    # the event-driven search may stop at its cap: its violations are still real, and "holds" comes only
    # from the untimed search, which is complete
    lacking = {p.name: missing_needs(p, config.scope) for p in properties}
    not_applicable = {name: needs for name, needs in lacking.items() if needs}
    checked = tuple(p for p in properties if p.name not in not_applicable)
    event = search(System(config, "event"), checked, max_states, progress)
    searches = [_stats(event)]
    verdicts: list[Verdict] = []
    undecided: list[Property] = []
    for prop in properties:
        if prop.name in not_applicable:
            verdicts.append(Verdict(prop.name, "n/a", "the scope has no " + ", ".join(not_applicable[prop.name])))
            continue
        hit = _violation(event, prop)
        if hit is not None:
            actions, loop, pod = hit
            verdicts.append(Verdict(prop.name, "violated", "", actions, loop, "event", pod))
            continue
        missing = [r.name for r in prop.sometimes if r.name not in event.reached[prop.name]]
        if missing:
            verdicts.append(Verdict(prop.name, "vacuous", "never reached: " + "; ".join(missing)))
        else:
            verdicts.append(Verdict(prop.name, "holds"))  # provisional: decided by the untimed search
            undecided.append(prop)
    if undecided:
        untimed = search(System(config, "untimed"), tuple(undecided), max_states, progress)
        searches.append(_stats(untimed))
        for v in verdicts:
            if v.prop not in undecided:
                continue
            hit = _violation(untimed, v.prop)
            if not untimed.complete:
                v.status, v.detail = "bounded", f"untimed search stopped at its {untimed.bound}"
            elif hit is not None and not event.complete:
                v.status = "bounded"
                v.detail = (f"the event-driven search stopped at its {event.bound}; the untimed "
                            "over-approximation has a violation")
            elif hit is not None:
                actions, loop, pod = hit
                v.status = "undecided"
                v.detail = ("violated only when timers may fire in any order (untimed over-approximation); "
                            "no exactly timed run found")
                v.actions, v.loop_start, v.timing, v.pod = actions, loop, "untimed", pod
    return CellResult(config, verdicts, searches)
