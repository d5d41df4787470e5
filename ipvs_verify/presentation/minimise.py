"""Delta-debugging minimiser for safety counterexamples from any engine.

Drops chunks of steps (then single steps) and keeps a candidate only if every remaining step is still
enabled in the exact-time model and its last step still violates the property. Waits may be merged:
two consecutive waits become one when the model allows it.
"""

from __future__ import annotations

from ipvs_verify.model.state import State
from ipvs_verify.model.system import Act, Action, System
from ipvs_verify.properties.catalog import Property


def violates(sys: System, prop: Property, actions: list[Action]) -> bool:
    if not actions or prop.violated is None:
        return False
    st: State = sys.initial_states()[0]
    for n, a in enumerate(actions):
        if not sys.enabled(st, a):
            return False
        nxt, ev = sys.step(st, a)
        if n == len(actions) - 1:
            return prop.violated(sys, st, a, ev, nxt)
        st = nxt
    return False


def minimise(sys: System, prop: Property, actions: list[Action]) -> list[Action]:
    """A 1-minimal subsequence of `actions` that still ends in a violation of `prop`."""
    if not violates(sys, prop, actions):
        return actions
    cur = list(actions)
    chunk = max(1, len(cur) // 2)
    while chunk >= 1:
        i = 0
        changed = False
        while i < len(cur) - 1:  # the violating last step stays
            cand = cur[:i] + cur[i + chunk:] if i + chunk < len(cur) else cur[:i] + cur[-1:]
            if len(cand) < len(cur) and violates(sys, prop, cand):
                cur, changed = cand, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    # merge adjacent waits
    i = 0
    while i < len(cur) - 1:
        a, b = cur[i], cur[i + 1]
        if a[0] == Act.WAIT and b[0] == Act.WAIT:
            cand = cur[:i] + [(Act.WAIT, a[1] + b[1], 0)] + cur[i + 2:]
            if violates(sys, prop, cand):
                cur = cand
                continue
        i += 1
    return cur
