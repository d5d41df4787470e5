"""What an explicit search still has to evaluate on a transition, shared by the plain and the packed search.

A property is evaluated only on transitions whose events meet its trigger mask, and only until the search has
reported it: a safety property's first violation and a "sometimes" check's first reach are all a search keeps.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any

from ipvs_verify.properties.catalog import Property

SafetyCheck = tuple[str, Any, int]  # (property, violated, trigger mask)
ReachCheck = tuple[str, str, Any, int]  # (property, check, holds, trigger mask)


class PendingChecks:
    """The safety properties not violated yet and the checks not reached yet, listed per trigger mask."""

    def __init__(self, properties: tuple[Property, ...], violations: Container[str],
                 reached: dict[str, set[str]]) -> None:
        self.safety: list[SafetyCheck] = [(p.name, p.violated, p.trigger_mask) for p in properties
                                          if p.violated is not None]
        self.reach: list[ReachCheck] = [(p.name, r.name, r.holds, r.trigger_mask) for p in properties
                                        for r in p.sometimes]
        self.violations = violations  # the search's own records: what it has reported
        self.reached = reached
        self._by_mask: dict[int, tuple[list[SafetyCheck], list[ReachCheck]]] = {}

    def due(self, mask: int) -> tuple[list[SafetyCheck], list[ReachCheck]]:
        """The checks not reported yet whose trigger mask meets a transition's (properties.catalog.event_mask)."""
        out = self._by_mask.get(mask)
        if out is None:
            out = self._by_mask[mask] = (
                [c for c in self.safety if c[2] & mask and c[0] not in self.violations],
                [c for c in self.reach if c[3] & mask and c[1] not in self.reached[c[0]]])
        return out

    def reported(self) -> None:
        """The search reported a violation or a reached check: the lists are rebuilt on next use."""
        self._by_mask.clear()


@dataclass(frozen=True)
class Goal:
    """What a search is run for once another search has settled the rest: these violations found and these
    "sometimes" checks reached. A search given a goal stops after the state at which it is met; its exploration
    is then not complete, and its `bound` says why (runner/verdicts.py: the untimed search settles "holds")."""

    violations: frozenset[str]
    reached: frozenset[tuple[str, str]]  # (property, check)

    def met(self, violations: Container[str], reached: Mapping[str, set[str]]) -> bool:
        return all(v in violations for v in self.violations) and all(r in reached[p] for p, r in self.reached)


GOAL_MET = "settled: the untimed search decided the rest"  # an exploration's bound when it stopped at its goal
