"""What the verbs print: one console for people (stderr), stdout for results and ``--json``, every
name that came from a file or an argument shown with its control characters escaped, and the
progress bars of the library's callbacks (:mod:`rvec.progress`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape

from rvec.progress import ProgressBar, ProgressCallback
from rvec.terminal import plain

__all__ = ["byte_progress", "err", "out", "plain", "print_json", "shown"]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def shown(value: object) -> str:
    """``value`` as text safe to print through rich: :func:`plain`, with rich markup neutralised,
    so names from files are data, never commands."""
    return escape(plain(value))


def print_json(data: Any) -> None:
    """One JSON document on stdout (plain print: rich would wrap long lines; JSON escapes control
    characters itself)."""
    print(json.dumps(data, indent=2, default=str))


@contextmanager
def byte_progress(description: str, *, enabled: bool = True) -> Iterator[ProgressCallback]:
    """A transient bar counting bytes, driven by the library's ``(done, total)`` callback."""
    with ProgressBar(description, unit="bytes", enabled=enabled, transient=True) as bar:
        yield bar.update
