"""Header-only view of safetensors checkpoints: names, shapes, dtypes and byte ranges per tensor.

A safetensors file is ``u64 little-endian header length`` + ``JSON header`` + raw data; the header
alone gives everything :func:`rvec.vector.compat.check` needs, so no tensor data is touched here.
https://github.com/huggingface/safetensors#format
"""

from __future__ import annotations

import math
import os
import stat
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rvec.checkpoint.dtypes import DType
from rvec.checkpoint.header import MAX_HEADER_BYTES, decode_header, validate_header
from rvec.errors import CorruptCheckpointError


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: file, dtype, shape and absolute byte range of its data."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    file: Path
    start: int  # absolute byte offset of the first data byte in ``file``
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def dtype_name(self) -> str:
        return self.dtype.name


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse one safetensors file's header and validate it, and the file's size, as the
    ``safetensors`` library does (:mod:`rvec.checkpoint.header`), before any data byte is used.

    Returns:
        ``(tensors by name, __metadata__)``.

    Raises:
        CorruptCheckpointError: unreadable or inconsistent header (overlapping or out-of-bounds
            offsets, a name given twice, an unknown dtype, a shape that does not match its bytes…),
            or data shorter or longer than the header claims (a truncated download).
    """
    path = Path(path)
    # O_NONBLOCK: a FIFO named like a shard must not block the open; it is refused just below.
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        st = os.fstat(f.fileno())  # of the file opened, not of whatever the name is now
        if not stat.S_ISREG(st.st_mode):
            raise CorruptCheckpointError(
                f"{path}: not a regular file (a device, pipe or folder); pass the weight file itself",
                path=str(path),
            )
        size = st.st_size
        head = f.read(8)
        if len(head) < 8:
            raise CorruptCheckpointError(
                f"{path}: not a safetensors file (shorter than 8 bytes); re-download it", path=str(path)
            )
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise CorruptCheckpointError(
                f"{path}: corrupted safetensors header (declares {n} header bytes, file has {size}; "
                f"at most {MAX_HEADER_BYTES:,}); re-download it",
                path=str(path),
            )
        raw = f.read(n)
    entries, metadata = validate_header(
        decode_header(raw, where=str(path)), where=str(path), data_size=size - 8 - n
    )
    base = 8 + n
    tensors = {
        e.name: TensorInfo(
            name=e.name, dtype=e.dtype, shape=e.shape, file=path, start=base + e.begin, end=base + e.end
        )
        for e in entries
    }
    return tensors, metadata


@dataclass(frozen=True)
class TensorIndex:
    """All tensors of a checkpoint, across shards, from headers only."""

    tensors: dict[str, TensorInfo]
    files: tuple[Path, ...]

    @classmethod
    def from_files(cls, files: Iterable[Path]) -> TensorIndex:
        tensors: dict[str, TensorInfo] = {}
        files = tuple(sorted(Path(f) for f in files))
        for file in files:
            found, _ = read_header(file)
            for name, info in found.items():
                if name in tensors:
                    raise CorruptCheckpointError(
                        f"tensor '{name}' appears in both {tensors[name].file.name} and {file.name}; the checkpoint is inconsistent",
                        path=str(file),
                    )
                tensors[name] = info
        return cls(tensors=tensors, files=files)

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.tensors.values())

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    def __getitem__(self, name: str) -> TensorInfo:
        return self.tensors[name]

    def __len__(self) -> int:
        return len(self.tensors)

    @property
    def names(self) -> list[str]:
        return list(self.tensors)
