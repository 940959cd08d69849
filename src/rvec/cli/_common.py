"""Shared CLI pieces: consoles, progress bars, JSON output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def data_dir_option() -> Any:
    """``--data-dir`` (or ``$RVEC_DATA_DIR``), the same for every command that reads benchmark data."""
    return typer.Option(
        None,
        "--data-dir",
        envvar="RVEC_DATA_DIR",
        help="Local benchmark data (layout of shared/data); default: Hugging Face datasets.",
    )


def overwrite_option() -> Any:
    """``--overwrite``: replace an output folder rvec wrote before; the same for every writing command."""
    return typer.Option(
        False,
        "--overwrite",
        help="Replace the output if rvec wrote it (it has an rvec.json). Never the working folder, "
        "its ancestors, home, a filesystem root, or a folder holding an input.",
    )


def overwrite_foreign_option() -> Any:
    """``--overwrite-foreign``: the second, explicit flag for replacing what rvec did not write."""
    return typer.Option(
        False,
        "--overwrite-foreign",
        help="Replace the output even if rvec did not write it (the same places stay protected).",
    )


def no_verify_option() -> Any:
    """``--no-verify``, the same for every command that reads a vector folder."""
    return typer.Option(
        False,
        "--no-verify",
        help="Use the vector without checking its shards against the sha256 in its rvec.json (and its family).",
    )


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (plain print: rich would wrap long lines)."""
    print(json.dumps(data, indent=2, default=str))


@contextmanager
def byte_progress(description: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A transfer-style progress bar on stderr, driven by ``(done, total)`` byte callbacks."""
    if not enabled:
        yield lambda done, total: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update
