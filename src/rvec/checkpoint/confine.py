"""Files that a folder's own metadata names — shards in ``*.safetensors.index.json``, files in a
vector's ``rvec.json`` — stay inside that folder.

Such names are written by whoever published the folder. Joined to the folder unchecked, ``../x``,
an absolute path or a symbolic link would make rvec stat, open, hash or read a file the user never
named (``/etc/shadow``, a key in the home folder) and print what it learnt. A name here must be one
plain file name, and what it resolves to (links followed) must lie inside the folder — or, for a
Hugging Face cache snapshot (``…/snapshots/<commit>/``, whose files are links to ``…/blobs/``),
inside that repository's ``blobs`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from rvec.errors import UnsafeNameError

__all__ = ["allowed_roots", "inside", "is_plain_name", "member"]


def allowed_roots(folder: Path) -> tuple[Path, ...]:
    """Where files of ``folder`` may really lie: the folder, and a hub cache snapshot's ``blobs``."""
    roots = [folder.resolve()]
    if folder.parent.name == "snapshots" and (folder.parent.parent / "blobs").is_dir():
        roots.append((folder.parent.parent / "blobs").resolve())
    return tuple(roots)


def inside(path: Path, roots: tuple[Path, ...]) -> bool:
    """Whether ``path``, links followed, lies inside one of ``roots`` (resolved folders)."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a loop of links: not inside anything
        return False
    return any(real == root or root in real.parents for root in roots)


def is_plain_name(name: object) -> bool:
    """Whether ``name`` is one plain file name: a string, not ``.``/``..``, no separator or NUL,
    at most 255 bytes (NAME_MAX: a longer one cannot name a file)."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\0" not in name
        and (os.altsep is None or os.altsep not in name)
        and len(name.encode("utf-8", "surrogateescape")) <= 255
    )


def member(folder: Path, name: object, *, listed_in: str, roots: tuple[Path, ...] | None = None) -> Path:
    """``folder / name`` for a file name read from ``listed_in`` (a metadata file of ``folder``).

    Args:
        folder: the checkpoint or vector folder.
        name: the name as found in the metadata (any JSON value).
        listed_in: the metadata file, for the message.
        roots: :func:`allowed_roots` of ``folder``, when the caller checks many names.

    Returns:
        The path (it may not exist: the caller reports a missing file).

    Raises:
        UnsafeNameError: ``name`` is not a string, not one plain file name (empty, ``.``, ``..``, a
            separator, a NUL), or it resolves outside the folder.
    """
    plain = is_plain_name(name)
    if not plain:
        shown = repr(name)[:100]
        raise UnsafeNameError(
            f"{listed_in}: names {shown} as a file of {folder}, but only plain file names inside the folder "
            "are allowed; the folder is damaged or was made to mislead: get it again from a source you trust",
            path=str(folder),
        )
    path = folder / name
    if (path.is_symlink() or path.exists()) and not inside(path, roots or allowed_roots(folder)):
        raise UnsafeNameError(
            f"{listed_in}: {name!r} is a link to a file outside {folder}; rvec reads only files inside the "
            "folder: replace the link by the file, or get the folder again from a source you trust",
            path=str(path),
        )
    return path
