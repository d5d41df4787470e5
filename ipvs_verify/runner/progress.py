"""Progress of a long run, on stderr: a live display in a terminal, plain periodic lines elsewhere (a CI log).

Both say the same things: which cell, which search (phase), its states, depth, rate and cap. Outside a
terminal a cell prints at most one line every `every` seconds while it searches, and one when it is done,
so a log shows that a long run is alive without drowning in it.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class MatrixProgress:
    """What a matrix run reports: `update` while a cell searches, `done` when it ends."""

    def __init__(self, slugs: list[str], cap: int, console: Console, stream: TextIO, quiet: bool = False,
                 every: float = 5.0) -> None:
        self.slugs, self.cap, self.every = slugs, cap, every
        self.stream = stream
        self.quiet = quiet
        self.live = not quiet and console.is_terminal
        self._last: dict[int, float] = {}
        self._done = 0
        self._t0 = time.perf_counter()
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[stats]}"),
                             TimeElapsedColumn(), console=console, disable=not self.live)
        self._overall: TaskID | None = None
        self._tasks: dict[int, TaskID] = {}

    def __enter__(self) -> MatrixProgress:
        self._bar.__enter__()
        self._overall = self._bar.add_task("matrix", total=len(self.slugs), stats="")
        self._tasks = {i: self._bar.add_task(f"  {s}", total=None, stats="waiting", visible=False)
                       for i, s in enumerate(self.slugs)}
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._bar.__exit__(kind, exc, tb)

    def _stats(self, phase: str, states: int, depth: int, secs: float) -> str:
        if phase.startswith("lasso"):  # the liveness pass: over a finished search's graph, no rate of its own
            return f"{phase}: over {states:,} states, depth {depth}"
        rate = states / secs if secs else 0.0
        return f"{phase}: {states:,} states (cap {self.cap:,}), depth {depth}, {rate:,.0f} states/s"

    def update(self, i: int, phase: str, states: int, edges: int, depth: int, secs: float) -> None:
        if self.quiet:
            return
        text = self._stats(phase, states, depth, secs)
        if self.live:
            self._bar.update(self._tasks[i], visible=True, stats=text)
            return
        now = time.perf_counter()
        if now - self._last.get(i, self._t0) >= self.every:
            self._last[i] = now
            self._line(f"{self.slugs[i]} {text}")

    def done(self, i: int, summary: str) -> None:
        self._done += 1
        if self.quiet:
            return
        if self.live:
            self._bar.update(self._tasks[i], visible=False)
            assert self._overall is not None
            self._bar.advance(self._overall)
            return
        self._line(f"[{self._done}/{len(self.slugs)}] {self.slugs[i]} done: {summary}")

    def _line(self, text: str) -> None:
        print(f"progress: {text}", file=self.stream, flush=True)
