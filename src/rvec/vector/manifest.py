"""What a vector's ``rvec.json`` may hold, checked before any name or number in it is used.

Vectors are shared: an ``rvec.json`` may come from a stranger, with its hashes recomputed to match
whatever it says. So its structure is checked whole when the folder is opened — types, shapes of
non-negative integers, known encodings, finite recorded norms — and every file it names (``files``,
``aux_files``) must be one plain file name inside the folder (:mod:`rvec.checkpoint.confine`):
a name like ``/etc/shadow`` or ``../x`` is refused before anything is opened or hashed.

What this does not check is the tensor *values*: they are not in the manifest. Readers of a
vector refuse NaN and Inf block by block as they read (:meth:`ReasoningVector.read_delta_into`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rvec.checkpoint.confine import is_plain_name
from rvec.errors import UnsafeNameError, VectorFormatError
from rvec.vector.encodings import ENCODINGS

__all__ = ["FORMAT_VERSION", "manifest_files", "validate_manifest"]

# 2 added per-tensor encodings (factored, sparse) and ``aux_files``; version 1 folders read as dense.
FORMAT_VERSION = 2
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_DIM = 2**63 - 1  # numpy's and safetensors' index range
_MAX_RANK = 2**31 - 1  # far above any real rank; bounds the factors' sizes the header must then match
_FIX = "the vector is damaged or was edited: re-run the command that wrote it, or get it again"


def validate_manifest(file: Path, manifest: object) -> dict[str, Any]:
    """``manifest`` (the parsed ``rvec.json`` at ``file``), checked whole.

    Returns:
        The manifest, unchanged.

    Raises:
        VectorFormatError: not a reasoning-vector manifest, a newer format, or a field of the wrong
            type or value (named).
        UnsafeNameError: ``files`` or ``aux_files`` names something other than a plain file name.
    """
    if (
        not isinstance(manifest, dict)
        or manifest.get("kind") != "reasoning-vector"
        or "tensors" not in manifest
    ):
        raise VectorFormatError(
            f"{file}: not a reasoning-vector manifest; is this a model folder? (rvec apply takes vectors)"
        )
    version = manifest.get("format_version", 0)
    if not _is_int(version) or version < 0:
        raise VectorFormatError(f"{file}: format_version {_short(version)} is not a version number; {_FIX}")
    if version > FORMAT_VERSION:
        raise VectorFormatError(
            f"{file}: format version {version} is newer than this rvec supports; upgrade rvec"
        )
    for key in ("family", "config"):
        if not isinstance(manifest.get(key, {}), dict):
            raise VectorFormatError(f"{file}: '{key}' is not an object; {_FIX}")
    for key in ("files", "aux_files"):
        _check_files(file, key, manifest.get(key))
    tensors = manifest["tensors"]
    if not isinstance(tensors, dict):
        raise VectorFormatError(f"{file}: 'tensors' is not an object; {_FIX}")
    for name, record in tensors.items():
        problem = _record_problem(record)
        if problem:
            raise VectorFormatError(f"{file}: tensor {_label(name)}: {problem}; {_FIX}")
    return manifest


def _check_files(file: Path, key: str, files: object) -> None:
    """``files``/``aux_files``: absent, or plain file name → sha256 (64 lowercase hex digits)."""
    if files is None:
        return
    if not isinstance(files, dict):
        raise VectorFormatError(f"{file}: '{key}' is not an object of file names; {_FIX}")
    for name, digest in files.items():
        if not is_plain_name(name):
            raise UnsafeNameError(
                f"{file}: {key} names {_label(name)}, which is not a file inside {file.parent}; rvec reads "
                "only plain file names inside the vector folder: the vector is damaged or was made to "
                "mislead: get it again from a source you trust",
                path=str(file),
            )
        if not (isinstance(digest, str) and _SHA256.match(digest)):
            raise VectorFormatError(f"{file}: {key}.{_label(name)} is not a sha256 (64 hex digits); {_FIX}")


def _record_problem(record: object) -> str | None:
    """What is wrong with one tensor record, or ``None``."""
    if not isinstance(record, dict):
        return "its record is not an object"
    shape = record.get("shape")
    if not isinstance(shape, list) or not all(_is_int(d) and 0 <= d <= _MAX_DIM for d in shape):
        return f"shape {_short(shape)} is not a list of integers ≥ 0"
    numel = _numel(shape)
    if numel is None:
        return f"shape {_short(shape)} holds more elements than any file can"
    encoding = record.get("encoding", "dense")
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        return (
            f"encoding {_short(encoding)} is not one of {', '.join(ENCODINGS)} (upgrade rvec if it is newer)"
        )
    if encoding == "factored" and (len(shape) != 2 or not _count(record.get("rank"), _MAX_RANK)):
        return f"a factored tensor needs a 2-D shape and a rank ≥ 0, not {_short(shape)} rank {_short(record.get('rank'))}"
    if encoding == "sparse" and not _count(record.get("kept"), numel):
        return f"kept {_short(record.get('kept'))} is not a count between 0 and the {numel} elements"
    for key, upper in (("norm", math.inf), ("rel_norm", math.inf), ("zero_fraction", 1.0)):
        value = record.get(key)
        if value is None and key != "norm":
            continue
        if key in record and not (_is_number(value) and 0 <= value <= upper):
            return f"{key} {_short(value)} is not a finite number ≥ 0" + (" and ≤ 1" if upper == 1 else "")
    return None


def _numel(shape: list[int]) -> int | None:
    """``prod(shape)``, or ``None`` past ``_MAX_DIM`` (stops early: a long list of huge sides)."""
    n = 1
    for d in shape:
        n *= d
        if n > _MAX_DIM:
            return None
    return n


def _is_int(x: object) -> bool:
    return type(x) is int


def _count(x: object, upper: int) -> bool:
    return _is_int(x) and 0 <= x <= upper  # type: ignore[operator]


def _is_number(x: object) -> bool:
    return type(x) in (int, float) and math.isfinite(x)  # type: ignore[arg-type]


def _label(name: object) -> str:
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def manifest_files(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Every file the manifest records with its sha256: ``files`` (shards) and ``aux_files``."""
    return {**(manifest.get("files") or {}), **(manifest.get("aux_files") or {})}
