"""A memory and process bound for the whole sandbox, where cgroup v2 lets us make one.

``RLIMIT_AS`` bounds each process of the sandbox, not their sum, and not what the kernel holds for
them (page tables, inodes, pipe and socket buffers). A cgroup v2 child of the harness's own cgroup,
with ``memory.max`` (swap off, ``memory.oom.group``) and ``pids.max``, bounds all of it: the bwrap
command line starts with a shell that moves itself into the cgroup and ``exec``-s bwrap, so every
process of the sandbox is in it from its first instruction.

That needs the unified hierarchy at ``/sys/fs/cgroup`` with the ``memory`` and ``pids`` controllers
enabled for children of the harness's cgroup, which cgroup v2 allows only for a cgroup without
processes of its own (or the root): a delegated, empty subtree, or a harness in the root cgroup. Where
any of that is missing (cgroup v1, as on rvec's development machine and CI; a systemd session scope)
:func:`available` says why once, and the per-process limits alone hold (docs/security.md).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["JOIN_FAILED", "available", "cgroup", "disable", "join_prefix"]

logger = logging.getLogger(__name__)

JOIN_FAILED = 125  # the join shell's exit status when it could not enter the cgroup
_ROOT = Path("/sys/fs/cgroup")
_CONTROLLERS = ("memory", "pids")
_COUNTER = itertools.count()
_DISABLED: list[str] = []  # why cgroups were given up in this process, once a join failed
_LOGGED: list[bool] = []


@functools.cache
def _parent() -> Path | str:
    """The harness's cgroup with memory and pids enabled for children, or why there is none."""
    try:
        if not (_ROOT / "cgroup.controllers").is_file():
            return "no cgroup v2 hierarchy at /sys/fs/cgroup (cgroup v1)"
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        own = next((line[3:] for line in lines if line.startswith("0::")), None)
        if own is None:
            return "this process is in no cgroup v2 cgroup"
        parent = _ROOT / own.lstrip("/")
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        missing = [c for c in _CONTROLLERS if c not in enabled]
        if missing:  # refused (EBUSY) unless the cgroup holds no process or is the root
            (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))
        return parent
    except OSError as err:
        return f"cannot enable {'/'.join(_CONTROLLERS)} for children of this process's cgroup ({err})"


def available() -> str | None:
    """None when sandboxes get a cgroup, else why not (logged once)."""
    parent = _parent()
    reason = _DISABLED[0] if _DISABLED else parent if isinstance(parent, str) else None
    if reason is not None and not _LOGGED:
        _LOGGED.append(True)
        logger.info("sandbox: no memory bound for the whole sandbox: %s", reason)
    return reason


def disable(reason: str) -> None:
    """Stop using cgroups in this process (the join failed)."""
    if not _DISABLED:
        _DISABLED.append(reason)
        logger.warning("sandbox: %s; the per-process limits alone hold from now on", reason)


@contextlib.contextmanager
def cgroup(*, memory_bytes: int, pids: int) -> Iterator[Path | None]:
    """A fresh child cgroup for one sandbox (None where unavailable), removed afterwards.

    Args:
        memory_bytes (int): ``memory.max`` of the whole sandbox.
        pids (int): ``pids.max`` of the whole sandbox (processes and threads).

    Yields:
        Path | None: the cgroup's folder, for :func:`join_prefix`.
    """
    parent = _parent()
    if available() is not None or isinstance(parent, str):
        yield None
        return
    path = parent / f"rvec-sandbox-{os.getpid()}-{next(_COUNTER)}"
    try:
        path.mkdir()
        for name, value in (
            ("memory.max", memory_bytes),
            ("memory.swap.max", 0),
            ("memory.oom.group", 1),
            ("pids.max", pids),
        ):
            with contextlib.suppress(FileNotFoundError):  # memory.swap.max needs swap accounting
                (path / name).write_text(str(value))
    except OSError as err:
        disable(f"cannot make a cgroup under {parent} ({err})")
        with contextlib.suppress(OSError):
            path.rmdir()
        yield None
        return
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):  # empty once the sandbox is gone
            path.rmdir()


def join_prefix(sh: str, path: Path | None) -> list[str]:
    """The command line's prefix that moves bwrap into ``path`` before it starts (none without one)."""
    if path is None:
        return []
    script = f'echo 0 > "$1/cgroup.procs" || exit {JOIN_FAILED}; shift; exec "$@"'
    return [sh, "-c", script, "rvec-join-cgroup", str(path)]
