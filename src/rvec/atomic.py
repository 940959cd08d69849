"""Atomic outputs: every file and folder rvec writes appears complete or not at all.

One writer for the whole package. Files (JSON, reports, plots, caches of hashes) and folders
(checkpoints, vectors) are written into a hidden temporary sibling whose name records its owner,
flushed, and renamed over the final path only on success; the sibling is removed in ``finally``
(huggingface_hub's ``_download_to_tmp_and_move`` does the same for downloads). A process killed with
SIGKILL cannot run ``finally``: the next rvec run that writes into the same folder finds the owner
gone and removes what it left (:func:`remove_stale`).

Temporary names: ``.NAME.rvec-partial-PID-START-HOST-RAND`` (``rvec-old`` for the previous output
while it is being replaced). ``START`` is the owner's start time in centiseconds, so a pid reused by
an unrelated process is not mistaken for the owner; ``HOST`` keeps a run on another machine sharing
the filesystem from deleting this one's work.

Example:
    >>> write_json(Path("out/results.json"), {"acc": 0.5})         # doctest: +SKIP
    >>> with atomic_dir(Path("vec"), inputs=[Path("sft"), Path("rl")]) as tmp:  # doctest: +SKIP
    ...     (tmp / "vector.safetensors").write_bytes(data)
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import IO, Any

from rvec.errors import DiskFullError, OutputExistsError, RvecError, os_error
from rvec.outputs import check_output_target

__all__ = [
    "atomic_dir",
    "atomic_file",
    "check_writable",
    "ensure_space",
    "make_folder",
    "remove_stale",
    "temp_sibling",
    "write_bytes",
    "write_json",
    "write_text",
]

logger = logging.getLogger(__name__)

_TEMP = re.compile(
    r"^\.(?P<name>.+)\.rvec-(?P<kind>partial|old)-(?P<pid>\d+)-"
    r"(?:(?P<start>\d+)-(?P<host>[0-9a-f]{8})-)?[0-9a-f]{8}$"
)
_START_TOLERANCE_CS = 2  # psutil derives start times from boot time + ticks; allow its rounding
_swept: set[Path] = set()  # folders already cleaned by this process (file writes are frequent)


# ----------------------------------------------------------------------------- temporary names
@cache
def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


@cache
def _start_cs(pid: int) -> int:
    import psutil

    return round(psutil.Process(pid).create_time() * 100)


def temp_sibling(final: Path, *, kind: str = "partial") -> Path:
    """A fresh hidden sibling of ``final`` named after this process (see the module docstring)."""
    pid = os.getpid()
    owner = f"{pid}-{_start_cs(pid)}-{_host()}"
    return final.parent / f".{final.name}.rvec-{kind}-{owner}-{uuid.uuid4().hex[:8]}"


def _owner_alive(pid: int, start: int | None, host: str | None) -> bool:
    """Whether the process that made a temporary sibling may still be writing it."""
    import psutil

    if host is not None and host != _host():
        return True  # another machine's process: nothing here can tell
    try:
        process = psutil.Process(pid)
        created = round(process.create_time() * 100)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False  # killed, not yet reaped by its parent: writes nothing any more
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # exists, but unreadable: assume it is the owner
    return start is None or abs(created - start) <= _START_TOLERANCE_CS


def remove_stale(folder: Path) -> list[Path]:
    """Remove the temporary siblings in ``folder`` whose owner process is gone; say so, one line each.

    A stale ``rvec-old`` sibling whose final path is missing (killed between the two renames of a
    replacement) is renamed back instead: it is the only copy of that output.

    Returns:
        The paths removed or restored.
    """
    handled: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return handled  # an unreadable folder fails later, at the write, with a clear error
    for entry in entries:
        found = _TEMP.match(entry.name)
        if found is None:
            continue
        pid, start, host = int(found["pid"]), found["start"], found["host"]
        if _owner_alive(pid, int(start) if start else None, host):
            continue
        path = Path(entry.path)
        final = path.parent / found["name"]
        if found["kind"] == "old" and not os.path.lexists(final):
            try:
                os.replace(path, final)
            except OSError:
                logger.warning("could not restore %s from %s (left by rvec process %d)", final, path, pid)
                continue
            logger.warning("restored %s from %s, left by an rvec process (%d) that is gone", final, path, pid)
        elif _remove(path):
            logger.warning("removed %s, left by an interrupted rvec process (%d) that is gone", path, pid)
        else:
            logger.warning("could not remove %s (left by rvec process %d); delete it by hand", path, pid)
            continue
        handled.append(path)
    _swept.add(Path(folder))
    return handled


def _remove(path: Path) -> bool:
    """Delete a file, link or folder tree; whether it is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            return False
    return not os.path.lexists(path)


# ------------------------------------------------------------------------------------- files
@contextmanager
def atomic_file(path: Path, *, fsync: bool = True) -> Iterator[IO[bytes]]:
    """A binary file handle whose content replaces ``path`` only if the block succeeds.

    Args:
        path (Path): The final file; its folder is created when missing.
        fsync (bool, default True): Flush to the disk before the rename (``False`` for caches
            whose loss only costs recomputation).

    Raises:
        OutputError: the filesystem refused (read-only, full, permission, a file in the path).
    """
    path = Path(path)
    make_folder(path.parent)
    if path.parent not in _swept:
        remove_stale(path.parent)
    tmp = temp_sibling(path)
    try:
        try:
            with open(tmp, "xb") as fh:
                yield fh
                fh.flush()
                if fsync:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as err:
            mapped = _output_error(err, path, written=tmp)
            if mapped is err:
                raise
            raise mapped from err
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> Path:
    """Replace ``path`` with ``data`` atomically; return ``path``."""
    with atomic_file(path, fsync=fsync) as fh:
        fh.write(data)
    return Path(path)


def write_text(path: Path, text: str, *, fsync: bool = True) -> Path:
    """Replace ``path`` with ``text`` (UTF-8, newlines as given) atomically; return ``path``."""
    return write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_json(path: Path, data: Any, *, fsync: bool = True, **dumps: Any) -> Path:
    """Replace ``path`` with ``json.dumps(data, **dumps)`` and a final newline, atomically."""
    return write_text(path, json.dumps(data, **dumps) + "\n", fsync=fsync)


# ------------------------------------------------------------------------------------ folders
def make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents; the filesystem's refusals become typed one-line errors."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:  # a file where a folder should be
        raise os_error(OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder)), folder) from err
    except OSError as err:
        raise os_error(err, folder) from err
    if not folder.is_dir():
        raise OutputExistsError(f"{folder}: exists and is not a folder; choose another -o")


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove a file can be created in it, before any long work.

    Raises:
        OutputError: the filesystem refused (read-only, permission, a file in the path).
    """
    folder = Path(folder)
    make_folder(folder)
    probe = temp_sibling(folder / "write-check")
    try:
        with open(probe, "xb"):
            pass
    except OSError as err:
        raise os_error(err, folder) from err
    finally:
        if os.path.lexists(probe):
            os.unlink(probe)


def ensure_space(folder: Path, needed: int, *, output: Path) -> None:
    """Refuse before writing when ``folder``'s filesystem has less than ``needed`` bytes free.

    Raises:
        DiskFullError: not enough free space.
    """
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DiskFullError(
            f"{output}: needs {needed / 1e9:.3f} GB free, {folder} has {free / 1e9:.3f} GB; "
            "free space or choose another -o",
            path=str(output),
        )


@contextmanager
def atomic_dir(
    final: Path,
    *,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
    inputs: Iterable[Path] = (),
    needed_bytes: int = 0,
) -> Iterator[Path]:
    """Yield a fresh temporary sibling of ``final``; it becomes ``final`` only if the block succeeds.

    Before anything is written, :func:`~rvec.outputs.check_output_target` refuses a ``final`` that is
    the working folder, one of its ancestors, a filesystem root, home, or a folder holding one of
    ``inputs``, and an existing ``final`` unless ``overwrite`` (rvec's own outputs, recognised by
    their ``rvec.json``) or ``overwrite_foreign`` (anything else) allows it. Stale temporary siblings
    of dead rvec processes are removed, and the free space is checked against ``needed_bytes``
    (every byte the block will write). On any exception the temporary folder is removed and
    ``final`` is untouched; when replacing, nothing of the old output is left beside the new one.

    Raises:
        OutputExistsError, ForeignOutputError, UnsafeOutputError: see ``check_output_target``.
        DiskFullError: less than ``needed_bytes`` free, or the disk filled up while writing.
        OutputError: any other refusal of the filesystem (read-only, permission, a file in the path).
    """
    final = Path(final).absolute()
    inputs = list(inputs)
    check_output_target(final, inputs=inputs, overwrite=overwrite, overwrite_foreign=overwrite_foreign)
    make_folder(final.parent)
    remove_stale(final.parent)
    ensure_space(final.parent, needed_bytes, output=final)
    tmp = temp_sibling(final)
    try:
        try:
            tmp.mkdir()
            yield tmp
            # Again at the end: another process may have created ``final`` meanwhile.
            check_output_target(
                final, inputs=inputs, overwrite=overwrite, overwrite_foreign=overwrite_foreign
            )
            _swap_into_place(tmp, final)
        except OSError as err:
            mapped = _output_error(err, final, written=tmp, needed=needed_bytes)
            if mapped is err:
                raise
            raise mapped from err
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)


def _swap_into_place(tmp: Path, final: Path) -> None:
    if not os.path.lexists(final):
        os.rename(tmp, final)
        return
    old = temp_sibling(final, kind="old")
    os.replace(final, old)
    try:
        os.rename(tmp, final)
    except OSError:
        os.replace(old, final)  # put the previous output back; the new one is discarded
        raise
    if not _remove(old):
        logger.warning("replaced %s, but could not delete its previous content at %s", final, old)


def _output_error(err: OSError, final: Path, *, written: Path, needed: int = 0) -> OSError:
    """The typed error for an OSError met while writing ``final`` through ``written``.

    rvec's own errors pass through, and so does an error about another path (an input that could
    not be read): only the output's failures are the output's to explain.
    """
    if isinstance(err, RvecError):
        return err
    final, written = final.absolute(), written.absolute()
    about = Path(os.fsdecode(err.filename)).absolute() if err.filename is not None else None
    if about is not None and (about == written or written in about.parents):
        err = OSError(err.errno, err.strerror)  # the temporary name means nothing to the user
    elif about is not None and about != final and err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return err
    return os_error(err, final, needed=needed)
