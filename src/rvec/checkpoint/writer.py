"""Write checkpoints as they are computed: sharded safetensors streamed block by block, into the
temporary folder of :func:`rvec.atomic.atomic_dir`, which appears, complete, only on success.

Why a streaming writer instead of ``safetensors.torch.save_file``: ``save_file`` needs every tensor
of a shard in memory at once. Because ``extract``/``apply`` know every output name, dtype and shape
before computing anything, the header of each shard can be written first and the data appended as
blocks are produced, so memory stays at one block whatever the size of the embedding matrix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from rvec.checkpoint.dtypes import DType, coerce
from rvec.errors import InvalidArgumentError, RvecError

logger = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_BYTES = 4 * 1024**3
WRITE_QUEUE_DEPTH = 8  # blocks waiting for the writer thread; bounds memory when compute outruns the disk


@dataclass(frozen=True)
class PlannedTensor:
    """One output tensor, known before any data is computed."""

    name: str
    dtype: DType
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", coerce(self.dtype))  # a torch.dtype is accepted too

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def parse_size(text: str | int) -> int:
    """``"2GB"``, ``"500MB"``, ``"1GiB"`` or an int → bytes."""
    if isinstance(text, int):
        return text
    units = {
        "": 1,
        "B": 1,
        "KB": 1000,
        "MB": 1000**2,
        "GB": 1000**3,
        "KIB": 1024,
        "MIB": 1024**2,
        "GIB": 1024**3,
    }
    s = text.strip().upper()
    number = s.rstrip("KMGIB")
    unit = s[len(number) :]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError) as err:
        raise InvalidArgumentError(f"shard size '{text}': expected a size like 2GB, 500MB or 1GiB") from err
    if value < 1:
        raise InvalidArgumentError(f"shard size '{text}': must be positive")
    return int(value)


def plan_shards(tensors: Sequence[PlannedTensor], max_shard_bytes: int) -> list[list[PlannedTensor]]:
    """Split tensors, in order, into shards of at most ``max_shard_bytes`` (a bigger tensor gets its own)."""
    shards: list[list[PlannedTensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


def shard_names(prefix: str, count: int) -> list[str]:
    """Hugging Face naming: ``model.safetensors`` alone, else ``model-00001-of-00003.safetensors``."""
    if count == 1:
        return [f"{prefix}.safetensors"]
    return [f"{prefix}-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def _header_bytes(shard: Sequence[PlannedTensor], metadata: dict[str, str]) -> bytes:
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for t in shard:
        header[t.name] = {
            "dtype": t.dtype.name,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + t.nbytes],
        }
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the spec lets the header be padded with spaces to align data
    return len(raw).to_bytes(8, "little") + raw


class _BackgroundSink:
    """Runs file writes and hashing, in order, on one thread beside the compute loop.

    Both release the GIL, so on a 2-core machine the disk and sha256 work overlaps the float32
    arithmetic instead of adding to it. Errors surface at the next :meth:`submit` or at :meth:`drain`.
    """

    def __init__(self, depth: int = WRITE_QUEUE_DEPTH) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="rvec-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._error is None:
                try:
                    job()
                except BaseException as err:  # re-raised in the caller's thread
                    self._error = err

    def submit(self, job: Callable[[], None]) -> None:
        self._raise()
        self._queue.put(job)

    def drain(self) -> None:
        """Wait for every submitted job; stop the thread; re-raise its error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


class ShardedWriter:
    """Streams planned tensors into shards. Call :meth:`write` with consecutive flat blocks of each
    tensor, tensors in plan order; :meth:`finish` checks that every byte arrived and writes the index.

    Example:
        >>> w = ShardedWriter(folder, plan, prefix="model")           # doctest: +SKIP
        >>> for t in plan: w.write(t.name, compute(t))                  # doctest: +SKIP
        >>> files = w.finish()                                          # doctest: +SKIP
    """

    def __init__(
        self,
        folder: Path,
        plan: Sequence[PlannedTensor],
        *,
        prefix: str,
        max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.prefix = prefix
        self.metadata = {"format": "pt", **(metadata or {})}
        self.shards = plan_shards(list(plan), max_shard_bytes)
        self.names = shard_names(prefix, len(self.shards))
        self._order = [(i, t) for i, shard in enumerate(self.shards) for t in shard]
        self._pos = 0  # index into _order of the tensor being written
        self._written = 0  # bytes written of that tensor
        self._file: bool | None = None
        self._shard = -1
        self.sha256: dict[str, str] = {}
        self._sink = _BackgroundSink()
        self._open_shard: tuple[BinaryIO, hashlib._Hash, str] | None = None  # touched by the sink thread only

    def _open(self, shard: int) -> None:
        self._close_file()
        self._shard = shard
        name = self.names[shard]
        head = _header_bytes(self.shards[shard], self.metadata)

        def job() -> None:
            file = (self.folder / name).open("wb")
            digest = hashlib.sha256(head)
            file.write(head)
            self._open_shard = (file, digest, name)

        self._sink.submit(job)
        self._file = True  # a shard is open (in the sink)

    def _close_file(self) -> None:
        if self._file is not None:

            def job() -> None:
                assert self._open_shard is not None
                file, digest, name = self._open_shard
                file.close()
                self.sha256[name] = digest.hexdigest()
                self._open_shard = None

            self._sink.submit(job)
            self._file = None

    def write(self, name: str, block: np.ndarray, *, on_written: Callable[[], None] | None = None) -> None:
        """Append the next flat block of tensor ``name``, in the planned dtype.

        Without ``on_written`` the block is copied, so the caller may reuse its buffer at once.
        With it, the writer thread uses ``block`` itself and calls ``on_written`` once the bytes are
        in the file and the hash: the caller must not touch the buffer before.
        """
        self._skip_empty()  # zero-element tensors planned before this one (they get no blocks)
        if self._pos >= len(self._order):
            raise RvecError(f"writer: unexpected tensor '{name}' after all planned tensors")
        shard, planned = self._order[self._pos]
        if planned.name != name or block.dtype != planned.dtype.numpy:
            raise RvecError(
                f"writer: got '{name}' ({block.dtype}), expected '{planned.name}' ({planned.dtype})"
            )
        if shard != self._shard:
            self._open(shard)
        data = np.ascontiguousarray(block).reshape(-1).view(np.uint8)
        if on_written is None:
            data = data.copy()

        def job() -> None:
            assert self._open_shard is not None
            file, digest, _ = self._open_shard
            file.write(data)
            digest.update(data)
            if on_written is not None:
                on_written()

        self._sink.submit(job)
        self._written += data.nbytes
        if self._written > planned.nbytes:
            raise RvecError(f"writer: '{name}' received {self._written} bytes, planned {planned.nbytes}")
        if self._written == planned.nbytes:
            self._pos += 1
            self._written = 0
            self._skip_empty()

    def _skip_empty(self) -> None:
        # Zero-element tensors have no blocks to wait for; open their shard so its header exists.
        while self._pos < len(self._order) and self._order[self._pos][1].nbytes == 0:
            if self._order[self._pos][0] != self._shard:
                self._open(self._order[self._pos][0])
            self._pos += 1

    def finish(self) -> list[str]:
        """Close the last shard, write ``<prefix>.safetensors.index.json`` when sharded; return file names."""
        self._skip_empty()
        if self._pos != len(self._order):
            raise RvecError(f"writer: tensor '{self._order[self._pos][1].name}' was not completely written")
        for i in range(len(self.shards)):
            if i > self._shard:  # shards holding only empty tensors
                self._open(i)
        self._close_file()
        self._sink.drain()
        if len(self.shards) > 1:
            weight_map = {t.name: self.names[i] for i, t in self._order}
            total = sum(t.nbytes for _, t in self._order)
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (self.folder / f"{self.prefix}.safetensors.index.json").write_text(
                json.dumps(index, indent=2) + "\n"
            )
        return list(self.names)

    def abort(self) -> None:
        """Stop writing after a failure; the partial files are left to the atomic folder's cleanup."""
        self._file = None
        with contextlib.suppress(BaseException):  # the original error is the one that propagates
            self._sink.drain()
        if self._open_shard is not None:
            self._open_shard[0].close()
            self._open_shard = None


def metadata_allowance(tensor_count: int) -> int:
    """Bytes to reserve, beside the tensor data, for what an output folder holds besides it: shard
    headers and the index (~150 bytes a tensor), ``rvec.json`` (per-tensor records), the card.

    Generous on purpose: the free-space check must count every byte written, and these files are
    written last, when running out of space would waste the whole computation.
    """
    return 1024**2 + 2048 * tensor_count
