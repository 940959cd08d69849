"""Read tensors (or flat element ranges of them) without mapping whole files into memory.

Why not ``safe_open``: it memory-maps the file, and every page touched stays in the process's
resident set until the handle closes, so streaming a 1.2 GB checkpoint through one handle ends at
1.2 GB RSS. Reading byte ranges with ``readinto`` into a fresh torch buffer keeps peak memory at
the size of the blocks in flight, which is what lets ``extract``/``apply`` stay at a few tensors.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch

from rvec.checkpoint.index import TensorInfo
from rvec.errors import CorruptCheckpointError

# Elementwise work runs on flat blocks of at most this many elements (64 MiB of float32): big
# enough to amortise per-call overhead, small enough that embeddings never load whole.
DEFAULT_BLOCK_ELEMENTS = 16 * 1024 * 1024


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


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
        """Elements ``[start, stop)`` of ``info`` in row-major order, as a 1-D tensor of its dtype."""
        size = element_size(info.dtype)
        out = torch.empty(stop - start, dtype=info.dtype)
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
