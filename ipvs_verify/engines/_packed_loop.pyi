"""Types of the compiled loop (_packed_loop.c); explicit.py's `_python_loop` is its definition in Python."""

from collections.abc import Callable, Sequence
from typing import Any

def run(
    keys: list[tuple[int, ...]],
    index: dict[Any, int],
    via: list[Any],
    labels: list[Any],
    skeletons: list[Any],
    successors: Callable[[Any, tuple[bool, ...]], Any],
    wait: Callable[[int], tuple[Any, Any]],
    report: Callable[[int, Any, list[Any]], bool],
    progress: Callable[[int, int, int], None] | None,
    parent: Sequence[int],
    depth: Sequence[int],
    max_states: int,
    exact: bool,
    keep_edges: bool,
    /,
) -> tuple[bytes, bytes, bytes, bytes, int, int]: ...
