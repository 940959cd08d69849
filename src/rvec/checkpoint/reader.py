"""Read tensors (or flat element ranges of them) without mapping whole files into memory.

Why not ``safe_open``: it memory-maps the file, and every page touched stays in the process's
resident set until the handle closes, so streaming a 1.2 GB checkpoint through one handle ends at
1.2 GB RSS. Reading byte ranges with ``preadv`` into reused numpy buffers keeps peak memory at
the size of the blocks in flight, which is what lets ``extract``/``apply`` stay at a few tensors.
Buffers have the numpy dtype of each tensor (bfloat16 and float8 from ``ml_dtypes``: see :mod:`rvec.checkpoint.dtypes`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rvec.checkpoint.dtypes import DType
from rvec.checkpoint.index import TensorInfo, read_header
from rvec.errors import CorruptCheckpointError

# Elementwise work runs on flat blocks of at most this many elements (4 MiB of float32): small
# enough that the several passes over a block hit the CPU cache, big enough that Python's
# per-call overhead stays a few percent; embeddings never load whole.
DEFAULT_BLOCK_ELEMENTS = 1024 * 1024


class Workspace:
    """Reusable 1-D numpy buffers by (role, dtype), so streaming loops allocate once, not per block."""

    def __init__(self, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> None:
        self.block_elements = block_elements
        self._buffers: dict[tuple[str, np.dtype[Any]], np.ndarray] = {}

    def get(self, role: str, dtype: np.dtype[Any] | type, n: int) -> np.ndarray:
        """A buffer of ``n`` elements of the numpy ``dtype`` (contents undefined), the same memory on every call."""
        key = (role, np.dtype(dtype))
        buf = self._buffers.get(key)
        if buf is None or buf.size < n:
            buf = np.empty(max(n, self.block_elements), dtype=key[1])
            self._buffers[key] = buf
        return buf[:n]


class FileReader:
    """Positional reads from a set of files, each opened once and shared by all tensors in it.

    Safe to use from several threads: ``preadv`` does not move a shared file position. The raw
    descriptors are closed by :meth:`close`, or when the reader is collected: a checkpoint or vector
    nobody closes must not keep its files open for the life of the process.
    """

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}
        self._lock = threading.Lock()
        weakref.finalize(self, _close_fds, self._fds)

    def _fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is None:
            with self._lock:
                fd = self._fds.get(path)
                if fd is None:
                    fd = self._fds[path] = os.open(path, os.O_RDONLY)
        return fd

    def read_range(self, info: TensorInfo, start: int, stop: int) -> np.ndarray:
        """Elements ``[start, stop)`` of ``info`` in row-major order: a new 1-D array of its dtype."""
        return self.read_into(info, start, np.empty(stop - start, dtype=info.dtype.numpy))

    def read_into(self, info: TensorInfo, start: int, out: np.ndarray) -> np.ndarray:
        """Fill the 1-D array ``out`` (``info``'s numpy dtype) with elements ``[start, start + len(out))``.

        Reusing ``out`` across blocks is what keeps streaming fast: a fresh 64 MB buffer per block
        costs a page fault per 4 KiB, more than the copy itself.
        """
        if out.dtype != info.dtype.numpy:
            raise ValueError(f"read_into: buffer dtype {out.dtype} ≠ storage of {info.dtype}")
        size = info.dtype.itemsize
        view = memoryview(out.view(np.uint8)) if out.size else memoryview(b"")
        offset = info.start + start * size
        fd = self._fd(info.file)
        done = 0
        while done < len(view):
            n = os.preadv(fd, [view[done:]], offset + done)
            if n == 0:
                raise CorruptCheckpointError(
                    f"{info.file}: truncated while reading '{info.name}'; re-download it", path=str(info.file)
                )
            done += n
        return out

    def read(self, info: TensorInfo) -> np.ndarray:
        """The whole tensor in its dtype and shape."""
        return self.read_range(info, 0, info.numel).reshape(info.shape)

    def close(self) -> None:
        with self._lock:
            _close_fds(self._fds)

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_fds(fds: dict[Path, int]) -> None:
    for fd in fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


def read_small_file(path: Path, *, max_bytes: int, dtype: DType | None = None) -> dict[str, np.ndarray]:
    """Every tensor of a small safetensors file (a lineage probe), validated before it is read.

    Args:
        path: the file.
        max_bytes: refuse a larger file without reading it (a small file's reader loads it whole).
        dtype: the one dtype every tensor must have, if any.

    Raises:
        CorruptCheckpointError: larger than ``max_bytes``, an invalid header (:func:`read_header`),
            or a tensor of another dtype.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise CorruptCheckpointError(
            f"{path}: {size:,} bytes, more than the {max_bytes:,} such a file holds; it is damaged: "
            "re-run the command that wrote it",
            path=str(path),
        )
    tensors, _ = read_header(path)
    for t in tensors.values():
        if dtype is not None and t.dtype != dtype:
            raise CorruptCheckpointError(
                f"{path}: {t.name!r} is {t.dtype_name}, not {dtype.name}; re-run the command that wrote it",
                path=str(path),
            )
    with FileReader() as reader:
        return {name: reader.read(t) for name, t in tensors.items()}


def blocks(numel: int, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> Iterator[tuple[int, int]]:
    """Flat ``[start, stop)`` ranges that cover ``numel`` elements; one empty range for empty tensors."""
    if numel == 0:
        yield (0, 0)
        return
    for start in range(0, numel, block_elements):
        yield start, min(numel, start + block_elements)
