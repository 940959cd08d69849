"""The block pipeline: results in submission order whatever the finishing order, errors surface."""

from __future__ import annotations

import random
import threading
import time

import pytest

from rvec.checkpoint.pipeline import BufferPool, ThreadWorkspaces, default_workers, ordered_map


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_ordered_map_keeps_submission_order(workers: int) -> None:
    delays = [random.Random(i).uniform(0, 0.004) for i in range(60)]

    def slow_square(i: int) -> tuple[int, str]:
        time.sleep(delays[i])  # later items often finish first
        return i * i, threading.current_thread().name

    results = list(ordered_map(slow_square, range(60), workers=workers, window=2 * workers))
    assert [r for r, _ in results] == [i * i for i in range(60)]
    threads = {name for _, name in results}
    assert len(threads) == 1 if workers == 1 else len(threads) > 1


def test_ordered_map_raises_and_starts_no_more_items() -> None:
    started: list[int] = []

    def fail_at_five(i: int) -> int:
        started.append(i)
        if i == 5:
            raise ValueError("boom at 5")
        time.sleep(0.002)
        return i

    got = []
    with pytest.raises(ValueError, match="boom at 5"):
        for r in ordered_map(fail_at_five, range(1000), workers=2, window=4):
            got.append(r)
    assert got == [0, 1, 2, 3, 4]
    assert max(started) < 5 + 4 + 2  # the window bounds how far work ran ahead of the failure


def test_buffer_pool_reuses_and_never_blocks() -> None:
    pool = BufferPool(nbytes=64, count=2)
    a, b = pool.take(), pool.take()
    c = pool.take()  # all out: a fresh buffer instead of waiting
    assert {a.nbytes, b.nbytes, c.nbytes} == {64}
    pool.give(a)
    assert pool.take() is a


def test_thread_workspaces_are_per_thread() -> None:
    spaces = ThreadWorkspaces(block_elements=8)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(spaces.get()))
    thread.start()
    thread.join()
    assert spaces.get() is spaces.get() and seen[0] is not spaces.get()
    assert 1 <= default_workers() <= 4
