"""A progress bar for evaluation: items done/total, items/s and generated tokens/s.

The eval runner owns one bar per :func:`~rvec.eval.runner.evaluate` call; a backend used on its own
(``HFBackend(progress=True)``) owns one per call. Disabled, every method is a no-op, so callers
never branch on it.

Example:
    >>> with EvalProgress(total=3, description="gsm8k", enabled=False) as bar:
    ...     bar.advance(tokens=120)
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.errors import LiveError
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["EvalProgress"]


class _RateColumn(ProgressColumn):
    """Items/s and generated tokens/s since the bar started (not a moving window: the average is
    what a reader compares between runs)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if elapsed <= 0:
            return Text("")
        items = task.completed / elapsed
        tokens = task.fields.get("tokens", 0) / elapsed
        return Text(f"{items:.2f} it/s  {tokens:.0f} tok/s", style="progress.data.speed")


class EvalProgress:
    """A rich progress bar counting items and generated tokens.

    Args:
        total (int): Number of items expected.
        description (str, default "eval"): Shown left of the bar.
        enabled (bool, default True): False makes every method a no-op.
    """

    def __init__(self, total: int, *, description: str = "eval", enabled: bool = True) -> None:
        self.enabled = enabled and total > 0
        self.tokens = 0
        self.done = 0
        self.started = time.perf_counter()
        self._progress: Progress | None = None
        self._task_id = None
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task_id = self._progress.add_task(description, total=total, tokens=0)

    def __enter__(self) -> EvalProgress:
        if self._progress is not None:
            try:
                self._progress.start()
            except LiveError:
                # Another bar is live already (the runner's around a backend's): that one reports.
                self._progress = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, items: int = 1, *, tokens: int = 0) -> None:
        """Count ``items`` finished items that generated ``tokens`` tokens together."""
        self.done += items
        self.tokens += tokens
        if self._progress is not None and self._task_id is not None:
            self._progress.update(self._task_id, advance=items, tokens=self.tokens)

    def describe(self, description: str) -> None:
        """Change the text left of the bar (e.g. the task being scored)."""
        if self._progress is not None and self._task_id is not None:
            self._progress.update(self._task_id, description=description)
