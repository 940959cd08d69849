"""Header-only view of safetensors checkpoints: names, shapes, dtypes and byte ranges per tensor.

A safetensors file is ``u64 little-endian header length`` + ``JSON header`` + raw data; the header
alone gives everything :func:`rvec.vector.compat.check` needs, so no tensor data is touched here.
https://github.com/huggingface/safetensors#format
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rvec.checkpoint.dtypes import BY_NAME, DType
from rvec.errors import CorruptCheckpointError

# A header larger than this is not a real checkpoint (transformers' largest are a few MB).
_MAX_HEADER_BYTES = 100 * 1024 * 1024


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
    """Parse one safetensors file's header and validate it against the file size.

    Returns:
        ``(tensors by name, __metadata__)``.

    Raises:
        CorruptCheckpointError: unreadable or inconsistent header, or data shorter than the header
            claims (a truncated download).
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptCheckpointError(
                f"{path}: not a safetensors file (shorter than 8 bytes); re-download it", path=str(path)
            )
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER_BYTES or 8 + n > size:
            raise CorruptCheckpointError(
                f"{path}: corrupted safetensors header (declares {n} header bytes, file has {size}); re-download it",
                path=str(path),
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptCheckpointError(
            f"{path}: corrupted safetensors header ({err.__class__.__name__}); re-download it", path=str(path)
        ) from err
    if not isinstance(header, dict):
        raise CorruptCheckpointError(
            f"{path}: corrupted safetensors header (not a JSON object); re-download it", path=str(path)
        )
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + n
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        tensors[name] = _tensor_info(path, name, entry, base)
    data_end = max((t.end for t in tensors.values()), default=base)
    if data_end > size:
        raise CorruptCheckpointError(
            f"{path}: truncated (header needs {data_end} bytes, file has {size}); re-download it",
            path=str(path),
        )
    return tensors, metadata


def _tensor_info(path: Path, name: str, entry: object, base: int) -> TensorInfo:
    try:
        dtype = BY_NAME[entry["dtype"]]  # type: ignore[index]
        shape = tuple(int(d) for d in entry["shape"])  # type: ignore[index]
        start, end = (int(x) for x in entry["data_offsets"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as err:
        raise CorruptCheckpointError(
            f"{path}: corrupted header entry for tensor '{name}'; re-download it", path=str(path)
        ) from err
    itemsize = dtype.itemsize
    if end - start != math.prod(shape) * itemsize or start < 0:
        raise CorruptCheckpointError(
            f"{path}: tensor '{name}' declares {end - start} bytes for shape {shape}; the file is corrupted",
            path=str(path),
        )
    return TensorInfo(name=name, dtype=dtype, shape=shape, file=path, start=base + start, end=base + end)


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
