"""Every count in a GGUF header bounded by the bytes that remain, checked before the ``gguf`` library
parses the file.

Why hand-written: ``gguf.GGUFReader`` (0.17) slices its memory map with the counts it reads, and a
numpy slice past the end is empty, not an error. An array that claims 2⁶⁰ items past the end of
the file therefore makes it loop, appending empty views, until the process runs out of memory
(found by tests/checkpoint/test_fuzz_gguf.py: 21 GB before the OOM killer). This walk reads the
same structure — header, key/value pairs, tensor infos, per the GGUF specification
(https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) — checking only that each count fits
in what is left of the file, so the library's own parse is then bounded by the file's size.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from rvec.errors import CorruptCheckpointError

__all__ = ["check_extents"]

# Fixed-size value types of the format and their sizes in bytes; 8 is a string, 9 an array.
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_MAX_NESTING = 4  # arrays of arrays: the format allows them, no real file nests deeper than 1
_MAX_DIMS = 8  # ggml's tensors have at most 4


class _Overrun(Exception):
    """A count or length that reaches past the end of the file."""


class _Walker:
    def __init__(self, data: memoryview, order: str) -> None:
        self.data, self.order, self.at = data, order, 0

    def take(self, n: int) -> int:
        """Skip ``n`` bytes; returns where they began."""
        if n < 0 or self.at + n > len(self.data):
            raise _Overrun
        start, self.at = self.at, self.at + n
        return start

    def uint(self, size: int) -> int:
        start = self.take(size)
        return int.from_bytes(self.data[start : start + size], "little" if self.order == "<" else "big")

    def count(self, min_item_bytes: int) -> int:
        """A u64 count of items of at least ``min_item_bytes`` each, refused if they cannot fit."""
        n = self.uint(8)
        if n * min_item_bytes > len(self.data) - self.at:
            raise _Overrun
        return n

    def string(self) -> None:
        self.take(self.uint(8))

    def value(self, kind: int, depth: int = 0) -> None:
        if kind in _SCALAR_SIZES:
            self.take(_SCALAR_SIZES[kind])
        elif kind == _STRING:
            self.string()
        elif kind == _ARRAY and depth < _MAX_NESTING:
            item = self.uint(4)
            if item in _SCALAR_SIZES:
                self.take(self.count(_SCALAR_SIZES[item]) * _SCALAR_SIZES[item])
            else:
                for _ in range(self.count(8 if item == _STRING else 12)):
                    self.value(item, depth + 1)
        else:
            raise ValueError(f"value type {kind}")


def check_extents(path: Path) -> None:
    """Walk ``path``'s GGUF header: every count and length must fit in the bytes that remain.

    Raises:
        CorruptCheckpointError: not a GGUF file, an unknown value type, or a count past the end.
    """
    with path.open("rb") as f:
        if path.stat().st_size < 24:
            raise _refuse(path, "shorter than a GGUF header")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as data:
            try:
                _walk(data)
            except _Overrun:
                raise _refuse(
                    path, "a count or length in its header reaches past the end of the file"
                ) from None
            except ValueError as err:
                raise _refuse(path, str(err)) from None


def _walk(data: memoryview) -> None:
    if bytes(data[:4]) != b"GGUF":
        raise ValueError("no GGUF magic number")
    (version,) = struct.unpack("<I", data[4:8])
    # The gguf library's own test: a big-endian file's version reads as a multiple of 2¹⁶ here.
    walker = _Walker(data, ">" if version & 0xFFFF == 0 else "<")
    walker.take(8)
    tensors = walker.count(8 + 4 + 8 + 4 + 8)  # name, n_dims, one dim, type, offset
    pairs = walker.count(8 + 4 + 1)  # key, type, smallest value
    for _ in range(pairs):
        walker.string()
        walker.value(walker.uint(4))
    for _ in range(tensors):
        walker.string()
        dims = walker.uint(4)
        if dims > _MAX_DIMS:
            raise ValueError(f"a tensor of {dims} dimensions")
        walker.take(8 * dims + 4 + 8)


def _refuse(path: Path, problem: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f"{path}: not a usable GGUF checkpoint: {problem}; the file is damaged or was made to mislead: "
        "get it again from a source you trust",
        path=str(path),
    )
