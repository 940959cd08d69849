"""Read tensors (or flat element ranges of them) without mapping whole files into memory.

Why not ``safe_open``: it memory-maps the file, and every page touched stays in the process's
resident set until the handle closes, so streaming a 1.2 GB checkpoint through one handle ends at
1.2 GB RSS. Reading byte ranges with ``readinto`` into a fresh torch buffer keeps peak memory at
the size of the blocks in flight, which is what lets ``extract``/``apply`` stay at a few tensors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from rvec.checkpoint.index import TensorInfo
from rvec.errors import CorruptCheckpointError

# Elementwise work runs on flat blocks of at most this many elements (4 MiB of float32): small
# enough that the several passes over a block hit the CPU cache, big enough that Python's
# per-call overhead stays a few percent; embeddings never load whole.
DEFAULT_BLOCK_ELEMENTS = 1024 * 1024


class Workspace:
    """Reusable block buffers by (role, dtype), so streaming loops allocate once, not per block."""

    def __init__(self, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> None:
        self.block_elements = block_elements
        self._buffers: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(self, role: str, dtype: torch.dtype, n: int) -> torch.Tensor:
        """A 1-D buffer of ``n`` elements (contents undefined), the same memory on every call."""
        buf = self._buffers.get((role, dtype))
        if buf is None or buf.numel() < n:
            buf = torch.empty(max(n, self.block_elements), dtype=dtype)
            self._buffers[(role, dtype)] = buf
        return buf[:n]


def element_size(dtype: torch.dtype) -> int:
    return dtype.itemsize


class FileReader:
    """Positional reads from a set of files, each opened once and shared by all tensors in it."""

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}

    def _fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_RDONLY)
            self._fds[path] = fd
        return fd

    def read_range(self, info: TensorInfo, start: int, stop: int) -> torch.Tensor:
        """Elements ``[start, stop)`` of ``info`` in row-major order, as a new 1-D tensor of its dtype."""
        return self.read_into(info, start, torch.empty(stop - start, dtype=info.dtype))

    def read_into(self, info: TensorInfo, start: int, out: torch.Tensor) -> torch.Tensor:
        """Fill the 1-D tensor ``out`` (dtype of ``info``) with elements ``[start, start + len(out))``.

        Reusing ``out`` across blocks is what keeps streaming fast: a fresh 64 MB tensor per block
        costs a page fault per 4 KiB, more than the copy itself.
        """
        if out.dtype != info.dtype:
            raise ValueError(f"read_into: buffer dtype {out.dtype} ≠ tensor dtype {info.dtype}")
        size = element_size(info.dtype)
        view = memoryview(out.view(torch.uint8).numpy()) if out.numel() else memoryview(b"")
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

    def read(self, info: TensorInfo) -> torch.Tensor:
        """The whole tensor in its stored dtype and shape."""
        return self.read_range(info, 0, info.numel).view(info.shape)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def blocks(numel: int, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> Iterator[tuple[int, int]]:
    """Flat ``[start, stop)`` ranges that cover ``numel`` elements; one empty range for empty tensors."""
    if numel == 0:
        yield (0, 0)
        return
    for start in range(0, numel, block_elements):
        yield start, min(numel, start + block_elements)


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Run torch ops on one thread inside streaming loops.

    On blocks of ~1M elements, intra-op parallelism gains little and its thread barriers collapse
    when the machine is busy (measured: 5× slower under load on 2 cores); the other core is used
    by the writer thread instead (file writes and sha256 release the GIL).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def all_finite(x: torch.Tensor) -> bool:
    """Whether every element is finite, in one reduction instead of an ``isfinite`` mask: the
    minimum and maximum are NaN or ±Inf iff some element is."""
    if x.numel() == 0:
        return True
    lo, hi = torch.aminmax(x)
    return math.isfinite(float(lo)) and math.isfinite(float(hi))
