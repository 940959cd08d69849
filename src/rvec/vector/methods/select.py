"""Exact order statistics of ``|v|`` over a tensor read block by block, in bounded memory.

TIES keeps each vector's ``k`` largest ``|v|``; breadcrumbs drops the smallest and the largest.
mergekit sorts each whole tensor (``torch.argsort``: the tensor, its indices as int64 and a sorted
copy in memory at once). Here a radix selection over the float32 bit patterns finds the same cut in
at most three streamed passes, holding one block and two histograms (2¹⁵ and 2¹⁶ int64 counts,
768 KiB) — hand-written because numpy's ``partition`` needs the whole array in memory:

1. The magnitude of a finite float32, read as uint32 with the sign bit cleared, orders like the
   value (IEEE 754 non-negative floats order as their bit patterns). Pass 1 counts the keys' top 15
   bits; the bin that holds the m-th key is then known.
2. Pass 2 counts the low 16 bits of the keys in that bin: the m-th key ``t`` exactly.
3. When only some of the entries equal to ``t`` belong to the prefix, pass 3 finds the position of
   the last one that does.

Order and ties: the prefix of size ``m`` is the first ``m`` entries sorted by (key, flat
position), so equal keys are taken earliest position first — what a stable sort gives. mergekit's
``torch.argsort`` is not stable on CPU (measured: torch 2.13), so where equal magnitudes straddle
its cut, its choice among them is arbitrary and can differ from rvec's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

KEY_LIMIT = 1 << 31  # keys are uint32 below this: a float32 magnitude's bits, sign cleared
_ABS_BITS = np.uint32(0x7FFFFFFF)
_HI_SHIFT = 16
_HI_BINS = KEY_LIMIT >> _HI_SHIFT
_LO_BINS = 1 << _HI_SHIFT
_LO_MASK = np.uint32(_LO_BINS - 1)

KeyBlocks = Callable[[], Iterator[tuple[int, np.ndarray]]]
"""Called once per pass: yields ``(flat start, uint32 keys)`` for the whole tensor, in order."""


@dataclass(frozen=True)
class Cut:
    """The first entries in (key, position) order: ``key < below_key``, or ``key == below_key`` and
    ``position < before``."""

    key: int
    before: int

    def mask(self, keys: np.ndarray, start: int, out: np.ndarray) -> np.ndarray:
        """``out[j]`` = whether the entry at flat position ``start + j`` (key ``keys[j]``) is in the prefix."""
        np.less(keys, np.uint32(self.key), out=out)  # KEY_LIMIT (the whole tensor) fits a uint32
        hi = min(keys.size, self.before - start)
        if hi > 0:
            out[:hi] |= keys[:hi] == np.uint32(self.key)
        return out


def magnitude_keys(block: np.ndarray, out: np.ndarray) -> np.ndarray:
    """uint32 keys that order like ``|block|`` (float32 in, ``out`` uint32 of the same size)."""
    return np.bitwise_and(block.view(np.uint32), _ABS_BITS, out=out)


def descending_keys(block: np.ndarray, out: np.ndarray) -> np.ndarray:
    """uint32 keys that order like ``−|block|``: the largest magnitude first."""
    magnitude_keys(block, out)
    return np.subtract(_ABS_BITS, out, out=out)


def prefix_cuts(blocks: KeyBlocks, numel: int, sizes: Sequence[int]) -> list[Cut]:
    """The :class:`Cut` of each prefix size in ``sizes`` (0 ≤ size ≤ numel), sharing the passes.

    Raises:
        ValueError: a size outside ``[0, numel]`` (a caller's bug: sizes come from validated densities).
    """
    cuts: dict[int, Cut] = {}
    todo = []
    for m in sizes:
        if not 0 <= m <= numel:
            raise ValueError(f"prefix size {m} outside [0, {numel}]")
        if m == 0:
            cuts[m] = Cut(0, 0)  # key < 0 never holds
        elif m == numel:
            cuts[m] = Cut(KEY_LIMIT, 0)
        else:
            todo.append(m)
    if todo:
        cuts.update(_select(blocks, numel, sorted(set(todo))))
    return [cuts[m] for m in sizes]


def _select(blocks: KeyBlocks, numel: int, sizes: list[int]) -> dict[int, Cut]:
    hi_hist = np.zeros(_HI_BINS, np.int64)
    for _, keys in blocks():  # pass 1: top 15 bits
        hi_hist += np.bincount(keys >> _HI_SHIFT, minlength=_HI_BINS)
    hi_cum = np.cumsum(hi_hist)
    found = {}  # m -> (high bin, rank inside it, 1-based)
    for m in sizes:
        b = int(np.searchsorted(hi_cum, m))  # first bin whose cumulative count reaches m
        found[m] = (b, m - int(hi_cum[b] - hi_hist[b]))
    bins = sorted({b for b, _ in found.values()})
    lo_hist = {b: np.zeros(_LO_BINS, np.int64) for b in bins}
    for _, keys in blocks():  # pass 2: low 16 bits inside the bins that hold a cut
        high = keys >> _HI_SHIFT
        for b in bins:
            lo_hist[b] += np.bincount(keys[high == b] & _LO_MASK, minlength=_LO_BINS)
    cuts: dict[int, Cut] = {}
    ties_wanted: dict[int, tuple[int, int]] = {}  # m -> (key, how many entries equal to it are in)
    for m, (b, rank) in found.items():
        lo_cum = np.cumsum(lo_hist[b])
        low = int(np.searchsorted(lo_cum, rank))
        key = (b << _HI_SHIFT) | low
        wanted = rank - int(lo_cum[low] - lo_hist[b][low])
        if wanted == int(lo_hist[b][low]):
            cuts[m] = Cut(key, numel)  # every entry equal to the key is in
        else:
            ties_wanted[m] = (key, wanted)
    if ties_wanted:
        cuts.update(_tie_positions(blocks, ties_wanted))
    return cuts


def _tie_positions(blocks: KeyBlocks, wanted: dict[int, tuple[int, int]]) -> dict[int, Cut]:
    """Pass 3: where the last wanted entry equal to each cut's key lies."""
    seen = dict.fromkeys(wanted, 0)
    cuts: dict[int, Cut] = {}
    for start, keys in blocks():
        for m, (key, count) in wanted.items():
            if m in cuts:
                continue
            equal = keys == np.uint32(key)
            here = int(np.count_nonzero(equal))
            if seen[m] + here >= count:
                j = int(np.flatnonzero(equal)[count - seen[m] - 1])
                cuts[m] = Cut(key, start + j + 1)
            seen[m] += here
        if len(cuts) == len(wanted):
            break
    return cuts
