"""rvec's one progress idiom: a rich bar on stderr, counted in bytes, items, cells or steps.

Library functions report progress through a :data:`ProgressCallback` (``(done, total)``) or a
:class:`ProgressBar` they are handed; they never print. Whoever shows progress (a CLI verb, the
eval runner, a study) opens one :class:`ProgressBar`; a bar opened while another is live stays
silent, so nested work (a backend inside the runner) never draws two bars. Disabled, every method
is a no-op, so callers never branch on it.

Example:
    >>> with ProgressBar("gsm8k", total=3, unit="items", enabled=False) as bar:
    ...     bar.advance(tokens=120)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Literal

from rvec.terminal import plain

__all__ = ["ProgressBar", "ProgressCallback", "Unit", "timed"]

ProgressCallback = Callable[[int, int], None]
"""Called with ``(done, total)`` as work advances (bytes for the vector commands)."""

Unit = Literal["bytes", "items", "cells", "steps"]
"""What a bar counts: ``bytes`` (transfer columns), ``items`` (evaluation: items/s and generated
tokens/s), ``cells`` (a study's matrix, with the current cell), ``steps`` (training, with metrics)."""


def _columns(unit: Unit) -> tuple[Any, ...]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    head = (TextColumn("[bold]{task.description}"), BarColumn())
    if unit == "bytes":
        return (*head, DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    if unit == "items":
        return (*head, MofNCompleteColumn(), _rate_column()(), TimeElapsedColumn(), TimeRemainingColumn())
    if unit == "steps":
        return (*head, MofNCompleteColumn(), TextColumn("{task.fields[note]}"), TimeRemainingColumn())
    return (
        *head,
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
    )


def _rate_column() -> type:
    # Built on first use: rich is imported when a bar is drawn, not with this module.
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items/s and generated tokens/s since the bar started (not a moving window: the average
        is what a reader compares between runs)."""

        def render(self, task: Any) -> Text:
            elapsed = task.elapsed or 0.0
            if elapsed <= 0:
                return Text("")
            items = task.completed / elapsed
            tokens = task.fields.get("tokens", 0) / elapsed
            return Text(f"{items:.2f} it/s  {tokens:.0f} tok/s", style="progress.data.speed")

    return RateColumn


class ProgressBar:
    """One progress bar on stderr.

    Args:
        description (str): Shown left of the bar.
        total (int | None, default None): Expected count; ``None`` until :meth:`update` gives it.
        unit (Unit, default "items"): What is counted (chooses the columns).
        enabled (bool, default True): False makes every method a no-op.
        transient (bool, default False): Remove the bar when it stops (the vector commands print a
            summary line instead).
    """

    def __init__(
        self,
        description: str,
        *,
        total: int | None = None,
        unit: Unit = "items",
        enabled: bool = True,
        transient: bool = False,
    ) -> None:
        self.enabled = enabled and (total is None or total > 0)
        self.done = 0
        self.tokens = 0
        self.started = time.perf_counter()
        self._progress: Any = None
        self._task: Any = None
        if self.enabled:
            from rich.console import Console
            from rich.progress import Progress

            self._progress = Progress(
                *_columns(unit), console=Console(stderr=True, highlight=False), transient=transient
            )
            self._task = self._progress.add_task(_safe(description), total=total, tokens=0, note="")

    def __enter__(self) -> ProgressBar:
        if self._progress is not None:
            from rich.errors import LiveError

            try:
                self._progress.start()
            except LiveError:  # another bar is live (the runner's around a backend's): that one reports
                self._progress = None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def advance(self, count: int = 1, *, tokens: int = 0) -> None:
        """Count ``count`` more done (items that generated ``tokens`` tokens together)."""
        self.done += count
        self.tokens += tokens
        if self._progress is not None:
            self._progress.update(self._task, advance=count, tokens=self.tokens)

    def update(self, done: int, total: int | None = None) -> None:
        """Set the count done (and the total): the :data:`ProgressCallback` shape."""
        self.done = done
        if self._progress is not None:
            self._progress.update(
                self._task, completed=done, **({"total": total} if total is not None else {})
            )

    def describe(self, description: str | None = None, *, note: str | None = None) -> None:
        """Change the text left of the bar, or the note after it (a study's current cell, a
        training step's metrics)."""
        if self._progress is None:
            return
        fields: dict[str, Any] = {}
        if description is not None:
            fields["description"] = _safe(description)
        if note is not None:
            fields["note"] = _safe(note)
        self._progress.update(self._task, **fields)

    def print(self, text: str) -> None:
        """A line above the bar while it is shown (nothing when it is not)."""
        if self._progress is not None:
            self._progress.console.print(plain(text), highlight=False, markup=False)


def _safe(text: str) -> str:
    """A description or note for the bar's columns, which render rich markup: a model or task name
    in it is data (control characters and markup escaped), never a command to the terminal."""
    from rich.markup import escape

    return escape(plain(text))


@contextmanager
def timed(timings: dict[str, float], what: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timings[what]`` (a run's ``timings.json``)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[what] = timings.get(what, 0.0) + time.perf_counter() - start
