"""A progress display over the whole study matrix (cells done of total, elapsed, ETA, current cell),
and where the time went (:func:`timed`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class MatrixProgress:
    """Thin wrapper so the executor never touches rich directly (and tests can turn it off)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task = None

    def start(self, *, total: int) -> None:
        if not self.enabled:
            return
        self._progress = Progress(
            TextColumn("cells"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            console=Console(stderr=True),
        )
        self._progress.start()
        self._task = self._progress.add_task("", total=total)

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def advance(self, seconds: float) -> None:
        del seconds  # rich estimates the rate itself
        if self._progress is not None:
            self._progress.advance(self._task)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextmanager
def timed(timings: dict[str, float], what: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timings[what]`` (the run's ``timings.json``)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[what] = timings.get(what, 0.0) + time.perf_counter() - start
