"""Which paths an output may take: never the user's working folder, home, a filesystem root or a
folder holding an input; only rvec's own outputs are replaced without a second, explicit flag.

``--overwrite`` replaces an output by renaming a new folder over it, so a wrong ``-o`` deletes
whatever was there: ``cd D && rvec apply VEC --to T -o . --overwrite`` once deleted ``D`` with the
vector and the target inside. The checks here run before any byte is written, on the resolved
paths, so a symlink pointing at the working folder or at an input is refused like the path itself.

Example:
    >>> check_output_target(Path("out"), inputs=[Path("vec")], overwrite=True)  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rvec.errors import ForeignOutputError, OutputExistsError, UnsafeOutputError, os_error

__all__ = [
    "check_output_file",
    "check_output_target",
    "check_results_folder",
    "input_paths",
    "is_rvec_output",
]

MARKER = "rvec.json"


def is_rvec_output(path: Path) -> bool:
    """Whether ``path`` is a real folder (not a link) holding an ``rvec.json`` that rvec wrote.

    rvec writes ``rvec.json`` into every folder output (vectors, models, converted checkpoints) as a
    JSON object with ``kind`` and ``rvec_version``.
    """
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        manifest = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and isinstance(manifest.get("kind"), str) and "rvec_version" in manifest


def input_paths(*items: Any) -> list[Path]:
    """The paths a command reads, from paths, checkpoints (their folder or GGUF file), vectors (their
    folder), donor pairs (both checkpoints) and merges (their inputs): what :func:`check_output_target` protects."""
    paths: list[Path] = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            paths.append(Path(item))
        elif hasattr(item, "sft") and hasattr(item, "rl"):
            paths += input_paths(item.sft, item.rl)
        elif isinstance(getattr(item, "inputs", None), tuple):  # a merge: what each of its inputs reads
            paths += input_paths(*item.inputs)
        elif getattr(item, "gguf_file", None) is not None:
            paths.append(Path(item.gguf_file))
        else:
            paths.append(Path(item.path))
    return paths


def check_output_target(
    final: Path,
    *,
    inputs: Iterable[Path] = (),
    overwrite: bool = False,
    overwrite_foreign: bool = False,
) -> None:
    """Refuse an output path whose replacement could destroy something that is not an old output.

    Args:
        final: the output folder to create or replace.
        inputs: every file or folder the command reads (folders of checkpoints and vectors, GGUF
            files); ``final`` may neither be one nor hold one.
        overwrite: replace an existing output that rvec wrote.
        overwrite_foreign: replace an existing path rvec did not write (it still may not be any of
            the protected places above).

    Raises:
        UnsafeOutputError: ``final`` resolves to the working folder or one of its ancestors, a
            filesystem root or mount point, the home folder, or a folder that is or holds an input.
        OutputExistsError: ``final`` exists and neither flag allows replacing it.
        ForeignOutputError: ``final`` exists, ``overwrite`` was given, but rvec did not write it.
    """
    final = Path(final).absolute()
    if not os.path.lexists(final):
        return
    try:
        target = final.resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop: RuntimeError before Python 3.13
        raise os_error(OSError(errno.ELOOP, os.strerror(errno.ELOOP)), final) from err
    _refuse_protected(final, target)
    for item in inputs:
        source = Path(item).absolute().resolve()
        if source == target or target in source.parents:
            what = "is" if source == target else "holds"
            raise UnsafeOutputError(
                f"{final}: {what} an input of this command ({item}); choose another -o", path=str(final)
            )
        if source in target.parents and not is_rvec_output(final):
            raise UnsafeOutputError(
                f"{final}: is part of an input of this command ({item}); choose another -o", path=str(final)
            )
    if not (overwrite or overwrite_foreign):
        raise OutputExistsError(
            f"{final}: already exists; pass --overwrite to replace it or choose another -o"
        )
    if not overwrite_foreign and not is_rvec_output(final):
        raise ForeignOutputError(
            f"{final}: exists but was not written by rvec (no {MARKER}); pass --overwrite-foreign to "
            "replace it anyway, or choose another -o"
        )


def _refuse_protected(final: Path, target: Path) -> None:
    if target.parent == target or os.path.ismount(target):
        raise UnsafeOutputError(f"{final}: is a filesystem root; choose another -o", path=str(final))
    if target == Path.home().resolve():
        raise UnsafeOutputError(f"{final}: is the home folder; choose another -o", path=str(final))
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        where = "the working folder" if target == cwd else "an ancestor of the working folder"
        raise UnsafeOutputError(f"{final}: is {where}; choose another -o", path=str(final))


def check_results_folder(folder: Path, *, markers: Iterable[str]) -> None:
    """Refuse a results folder (``rvec eval -o``) that exists, holds files, and is not rvec's.

    Commands that add files to a folder rather than replace it (evaluation results, run folders)
    may reuse a folder they wrote before (one of ``markers`` is in it) or an empty one; anything
    else would have same-named files (``results.json``…) silently replaced.

    Raises:
        OutputExistsError: ``folder`` is a file, or a non-empty folder without any marker.
    """
    folder = Path(folder)
    if not os.path.lexists(folder):
        return
    if not folder.is_dir():
        raise OutputExistsError(f"{folder}: exists and is not a folder; choose another -o")
    if any(folder.iterdir()) and not any((folder / m).exists() for m in markers):
        raise OutputExistsError(
            f"{folder}: holds files rvec did not write; choose an empty or new folder for -o"
        )


def check_output_file(path: Path, *, inputs: Iterable[Path]) -> None:
    """Refuse a single-file output (a plot) that is, or lies inside, one of ``inputs``.

    Raises:
        UnsafeOutputError: writing ``path`` would replace or add to an input.
    """
    target = Path(path).absolute().resolve()
    for item in inputs:
        source = Path(item).absolute().resolve()
        if source == target or source in target.parents:
            raise UnsafeOutputError(
                f"{path}: is inside an input of this command ({item}); choose another path", path=str(path)
            )
