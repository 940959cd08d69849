"""Real small filesystems for tests of full and read-only disks: tmpfs mounts (root only).

Mounting needs CAP_SYS_ADMIN. Without root the tests that need a mount skip, saying so; as root (CI)
a failed mount fails the test, so the full-disk and read-only checks can never be skipped there.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def require_root() -> None:
    """Skip unless root: mounting a tmpfs and a read-only bind mount need CAP_SYS_ADMIN."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs (CI runs as root, where this test runs)")


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed as root: {done.stderr.strip()}")


@contextmanager
def tmpfs(folder: Path, *, size: str = "1m", nr_inodes: int | None = None) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` (and at most ``nr_inodes`` files and folders) mounted on ``folder``."""
    require_root()
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",nr_inodes={nr_inodes}" if nr_inodes else "")
    _run("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder))
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` itself, seen read-only through a bind mount (chmod does not stop root)."""
    require_root()
    _run("mount", "--bind", str(folder), str(folder))
    try:
        _run("mount", "-o", "remount,bind,ro", str(folder))
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@contextmanager
def not_writable(folder: Path) -> Iterator[Path]:
    """``folder`` made unwritable for this user: ``chattr +i`` as root (EPERM), ``chmod`` otherwise (EACCES)."""
    if os.geteuid() == 0:
        _run("chattr", "+i", str(folder))
        try:
            yield folder
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
    else:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
