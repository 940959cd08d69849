"""Compute blocks on several threads, hand them to the writer in order, reuse their buffers.

numpy releases the GIL inside its loops and ``preadv``/``write``/``sha256`` release it too, so plain
threads overlap reading, arithmetic and writing on a few cores without copying blocks between
processes. Results come back in submission order because a safetensors shard is written front to back.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from rvec.checkpoint.reader import Workspace

T = TypeVar("T")
R = TypeVar("R")

# Beyond a few threads a streamed apply is bound by memory bandwidth and the single writer thread
# (sha256 + write, about 1 GB/s here), not by arithmetic.
MAX_WORKERS = 4


def default_workers() -> int:
    """Worker threads for elementwise block work: the usable cores, at most :data:`MAX_WORKERS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


class BufferPool:
    """Byte buffers of one size, taken by workers and given back by the writer once written.

    ``take`` never blocks: if every buffer is out (only on an error path, where the writer has
    stopped giving them back) it allocates, so no worker can wait forever.
    """

    def __init__(self, nbytes: int, count: int) -> None:
        self.nbytes = nbytes
        self._free: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(np.empty(nbytes, np.uint8))

    def take(self) -> np.ndarray:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return np.empty(self.nbytes, np.uint8)

    def give(self, buffer: np.ndarray) -> None:
        self._free.put(buffer)


class ThreadWorkspaces:
    """One :class:`Workspace` per thread, so workers never share scratch buffers."""

    def __init__(self, block_elements: int) -> None:
        self.block_elements = block_elements
        self._local = threading.local()

    def get(self) -> Workspace:
        ws = getattr(self._local, "ws", None)
        if ws is None:
            ws = self._local.ws = Workspace(self.block_elements)
        return ws


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, window: int) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, at most ``window`` items in flight, results in order.

    With one worker it runs inline (no thread), which keeps tracebacks and profiles simple. An
    exception from ``fn`` is raised here, and the items not yet started are dropped.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    pending: deque[Future[R]] = deque()
    executor = ThreadPoolExecutor(workers, thread_name_prefix="rvec-block")
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
