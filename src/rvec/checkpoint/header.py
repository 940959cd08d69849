"""A safetensors header, validated before any byte of data is used: the rules of the ``safetensors``
library's own reader, for files that strangers publish.

The rules are those of huggingface/safetensors ``safetensors/src/tensor.rs`` (``read_metadata``,
``Metadata::validate``, at 24b0b28), which ``safe_open`` and transformers apply and rvec's own
reader (``pread`` into reused buffers, :mod:`rvec.checkpoint.reader`) would otherwise skip:

* the header is at most 100,000,000 bytes (``MAX_HEADER_SIZE``), UTF-8 JSON, one object;
* ``__metadata__``, when present, maps strings to strings;
* every other key is a tensor, named once (rvec also refuses a name repeated in the JSON text,
  which serde would keep silently as its last value), with a known ``dtype``, a ``shape`` of
  non-negative integers and ``data_offsets`` ``[begin, end]``, ``begin ≤ end``;
* sorted by offsets, the tensors tile the data: each begins where the previous ended, the first at
  0, and together they cover the data exactly (no gap, no overlap, no trailing bytes);
* each tensor's bytes are ``prod(shape) × itemsize``, computed without overflowing 64 bits.

Why hand-written and not ``safetensors.safe_open``: that maps the whole file and keeps every page it
touches resident (see :mod:`rvec.checkpoint.reader`); rvec needs the header only, and a typed,
one-line error naming the file and the rule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rvec.checkpoint.dtypes import BY_NAME, DType
from rvec.errors import CorruptCheckpointError

__all__ = ["MAX_HEADER_BYTES", "HeaderEntry", "check_layout", "decode_header", "validate_header"]

MAX_HEADER_BYTES = 100_000_000  # safetensors' MAX_HEADER_SIZE
_USIZE_MAX = 2**64 - 1  # offsets and sizes are u64 in the format: larger numbers overflow there

# Dtypes of the format that rvec does not read (sub-byte floats, unsigned and complex types).
_UNSUPPORTED = (
    "F4",
    "F6_E2M3",
    "F6_E3M2",
    "F8_E8M0",
    "F8_E4M3FNUZ",
    "F8_E5M2FNUZ",
    "U16",
    "U32",
    "U64",
    "C64",
)


@dataclass(frozen=True)
class HeaderEntry:
    """One tensor of a validated header: offsets relative to the first data byte."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    begin: int
    end: int


def _refuse(where: str, problem: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f"{where}: corrupted safetensors header: {problem}; the file is damaged or was made to mislead: "
        "get it again from a source you trust",
        path=where,
    )


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _Duplicate(key)
        obj[key] = value
    return obj


class _Duplicate(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_header(raw: bytes, *, where: str) -> dict[str, Any]:
    """The header's JSON object: UTF-8, one object, no key repeated, no ``NaN``/``Infinity``.

    Raises:
        CorruptCheckpointError: anything else (named).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _refuse(where, f"not UTF-8 (byte {err.start})") from None
    try:
        header = json.loads(text, object_pairs_hook=_unique_object, parse_constant=_no_constant)
    except _Duplicate as err:
        raise _refuse(where, f"key {err.key!r} appears twice") from None
    except RecursionError:
        raise _refuse(where, "JSON nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, and integers of more digits than Python converts
        raise _refuse(where, f"not JSON ({str(err).splitlines()[0][:80]})") from None
    if not isinstance(header, dict):
        raise _refuse(where, f"a JSON {type(header).__name__}, not an object")
    return header


def validate_header(
    header: Mapping[str, Any], *, where: str, data_size: int | None
) -> tuple[list[HeaderEntry], dict[str, str]]:
    """Every tensor entry of a decoded header, checked, and its ``__metadata__``.

    Args:
        header: the decoded JSON object (:func:`decode_header`).
        where: the file, for messages.
        data_size: bytes after the header; ``None`` when unknown (a hub header read remotely),
            which skips only the "covers the data exactly" rule.

    Returns:
        ``(entries in the header's order, metadata)``.

    Raises:
        CorruptCheckpointError: any rule of the module docstring broken (named, with the tensor).
    """
    metadata = header.get("__metadata__")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _refuse(where, "__metadata__ is not a map of strings to strings")
    entries = [_entry(where, name, value) for name, value in header.items() if name != "__metadata__"]
    check_layout(entries, where=where, data_size=data_size)
    return entries, dict(metadata)


def _entry(where: str, name: str, value: object) -> HeaderEntry:
    if not isinstance(value, dict):
        raise _refuse(where, f"tensor {_label(name)} is a JSON {type(value).__name__}, not an object")
    dtype_name, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if not isinstance(dtype_name, str):
        raise _refuse(where, f"tensor {_label(name)} has no dtype name")
    dtype = BY_NAME.get(dtype_name)
    if dtype is None:
        what = "a dtype rvec does not read" if dtype_name in _UNSUPPORTED else "not a safetensors dtype"
        raise _refuse(where, f"tensor {_label(name)} has dtype {dtype_name[:40]!r}, {what}")
    if not isinstance(shape, list) or not all(_is_usize(d) for d in shape):
        raise _refuse(
            where, f"tensor {_label(name)} has shape {_short(shape)}; expected a list of integers ≥ 0"
        )
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_usize(x) for x in offsets)):
        raise _refuse(
            where, f"tensor {_label(name)} has data_offsets {_short(offsets)}; expected [begin, end] ≥ 0"
        )
    return HeaderEntry(name=name, dtype=dtype, shape=tuple(shape), begin=offsets[0], end=offsets[1])


def _label(name: str) -> str:
    """A tensor name for a one-line message: quoted, escaped, at most 80 characters."""
    return repr(name) if len(name) <= 80 else repr(name[:77] + "...")


def _is_usize(x: object) -> bool:
    return type(x) is int and 0 <= x <= _USIZE_MAX


def _short(value: object) -> str:
    """A JSON value for a one-line message, at most 60 characters."""
    try:
        text = json.dumps(value)
    except (RecursionError, ValueError):
        return f"a JSON {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def check_layout(entries: list[HeaderEntry], *, where: str, data_size: int | None) -> None:
    """The entries tile the data: sorted by offsets, contiguous from 0, sizes matching shapes,
    and (``data_size`` given) ending exactly at the end of the file.

    Raises:
        CorruptCheckpointError: a gap, an overlap, a size that is not ``prod(shape) × itemsize``
            (or overflows 64 bits), data past or short of the end of the file.
    """
    position = 0
    for e in sorted(entries, key=lambda e: (e.begin, e.end)):
        if e.begin != position or e.end < e.begin:
            problem = "overlaps the previous tensor" if e.begin < position else "leaves a gap before it"
            if e.end < e.begin:
                problem = "ends before it begins"
            raise _refuse(where, f"tensor {_label(e.name)} data_offsets [{e.begin}, {e.end}] {problem}")
        nbytes = _nbytes(e)
        if nbytes is None:
            raise _refuse(where, f"tensor {_label(e.name)} shape {_short(list(e.shape))} overflows 64 bits")
        if e.end - e.begin != nbytes:
            raise _refuse(
                where,
                f"tensor {_label(e.name)} has {e.end - e.begin} bytes but shape {_short(list(e.shape))} of "
                f"{e.dtype.name} needs {nbytes}",
            )
        position = e.end
    if data_size is not None and position > data_size:
        raise CorruptCheckpointError(
            f"{where}: truncated (the header needs {position} data bytes, the file has {data_size}); "
            "re-download it",
            path=where,
        )
    if data_size is not None and position < data_size:
        raise _refuse(
            where,
            f"tensor data ends at byte {position} but the file holds {data_size} data bytes (trailing bytes)",
        )


def _nbytes(e: HeaderEntry) -> int | None:
    """``prod(shape) × itemsize``, or ``None`` past 64 bits (as safetensors' checked_mul)."""
    n = 1
    for d in e.shape:
        n *= d
        if n > _USIZE_MAX:
            return None
    n *= e.dtype.itemsize
    return n if n <= _USIZE_MAX else None
