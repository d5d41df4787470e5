"""The model's named decision points: the pure functions of the kernel and kube-proxy that a patch may replace.

Each decision point is one function of the model, over a small finite domain, that every engine reaches only
through the function itself: the explicit searches call it (memoised in model/core.py), the Z3 engines
enumerate it into a table (engines/smt_encoding.py), the Hypothesis suite runs the System that calls it. So a
replacement written once, as a hook on the Variant (kernel points) or on the KubeProxyVersion (kube-proxy
points) the configuration holds, reaches every engine without engine code (issue 16).

A hook gets the same arguments as the function it replaces. It is guarded: an exception, or a result outside
the decision's domain, becomes a PatchError naming the patch file, the decision point and the input.
`unpatched(name)` is the model's own function, for a hook that changes only part of a decision.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from itertools import product
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class PatchError(ValueError):
    """A patch whose decision point cannot be used: the message names the patch, the point and the input."""


@dataclass(frozen=True)
class Hook:
    """A replacement of one decision point, and where it came from (for the messages that blame it)."""

    point: str
    function: Callable[..., Any]
    origin: str  # "FILE: function NAME"


@dataclass(frozen=True)
class DecisionPoint:
    name: str
    owner: str  # "kernel" (a hook on the Variant) or "kube-proxy" (a hook on the KubeProxyVersion)
    params: tuple[str, ...]  # the replaced function's parameters, in order (the first is its Variant / self)
    what: str  # one line: what it decides, and the kernel or kube-proxy code it follows
    check: Callable[[Any], Any]  # the result, normalised; raises TypeError/ValueError when outside the domain
    # every argument tuple the decision can be called with, given its owner (the Variant or KubeProxyVersion)
    # and the effective sysctls: a hook is run on all of them before a search starts
    domain: Callable[[Any, Any], Iterable[tuple[Any, ...]]] | None = None


DECISION_POINTS: dict[str, DecisionPoint] = {}
_UNPATCHED: dict[str, Callable[..., Any]] = {}


def register(point: DecisionPoint) -> None:
    DECISION_POINTS[point.name] = point


def decision(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Make a model function the decision point `name`: a hook on its first argument replaces it."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        _UNPATCHED[name] = fn

        @functools.wraps(fn)
        def dispatch(*args: P.args, **kwargs: P.kwargs) -> R:
            owner = args[0]
            hook = owner.hook(name) if owner.hooks else None  # type: ignore[attr-defined]
            if hook is None:
                return fn(*args, **kwargs)
            return call_hook(hook, args, kwargs)  # type: ignore[no-any-return]

        return dispatch

    return wrap


def unpatched(name: str) -> Callable[..., Any]:
    """The model's own function of decision point `name` (it still reaches the other points through hooks)."""
    if name not in _UNPATCHED:
        raise KeyError(f"unknown decision point '{name}' (expected one of: {', '.join(sorted(_UNPATCHED))})")
    return _UNPATCHED[name]


def _show(args: tuple[Any, ...]) -> str:
    """The input of a call as a person reads it: enum members and the owner by name."""
    return ", ".join(a.name if isinstance(a, Enum) else getattr(a, "hook_label", None) or repr(a) for a in args)


def call_hook(hook: Hook, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    point = DECISION_POINTS[hook.point]
    shown = _show(args + tuple(kwargs.values()))
    try:
        result = hook.function(*args, **kwargs)
    except PatchError:
        raise
    except Exception as e:  # a hook's own bug: blame the hook, with the input that made it fail
        raise PatchError(f"{hook.origin}: decision point {hook.point} raised {type(e).__name__}: {e} "
                         f"(input: {shown})") from e
    try:
        return point.check(result)
    except (TypeError, ValueError) as e:
        raise PatchError(f"{hook.origin}: decision point {hook.point} returned {result!r}, outside its "
                         f"domain: {e} (input: {shown})") from None


def check_hooks(owner: Any, sysctls: Any) -> None:
    """Run each of the owner's hooks on its decision's whole domain now: a bad one fails before any search."""
    for h in owner.hooks:
        dom = DECISION_POINTS[h.point].domain
        for args in dom(owner, sysctls) if dom is not None else ():
            call_hook(h, args, {})


def bools(n: int) -> Iterator[tuple[bool, ...]]:
    return product((False, True), repeat=n)


def check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected True or False")
    return value


def check_tuple(kind: type, fields: tuple[str, ...]) -> Callable[[Any], Any]:
    """A result that must be a tuple of booleans named `fields` (a NamedTuple `kind`, or a plain tuple)."""

    def check(value: Any) -> Any:
        if not isinstance(value, tuple) or len(value) != len(fields):
            raise TypeError(f"expected a {kind.__name__}({', '.join(fields)}) of booleans")
        for f, x in zip(fields, value, strict=True):
            if not isinstance(x, bool):
                raise TypeError(f"{f} must be True or False, got {x!r}")
        return kind(*value)

    return check
