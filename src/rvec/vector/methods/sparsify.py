"""Sparsify one vector's tensor before a merge, streamed: which entries survive, and the rescale.

Three ways, mergekit's ``sparsification_method`` names, with mergekit 0.1.5's counts:

* ``magnitude`` (TIES's trim): keep the ``k = max(1, int(density·n))`` entries of largest ``|v|``
  (none when density ≤ 0); ties at the cut: earliest flat position first (:mod:`.select`).
* ``magnitude_outliers`` (Model Breadcrumbs): sort ``|v|`` ascending (ties by position), drop the
  ``n_bot = max(0, n − int(density·n) − int(gamma·n))`` smallest, keep the next ``int(density·n)``,
  drop the rest — the ``int(gamma·n)`` largest, fewer where the density leaves no room.
* ``random`` (DARE): keep exactly ``⌊density·n⌋`` entries chosen at random (below).

``density ≥ 1`` keeps the tensor as it is, rescale or not (mergekit returns it untouched).

``rescale`` is mergekit's: the kept entries are multiplied by ``‖v‖₁ / ‖kept‖₁`` so the tensor keeps
its L1 norm, unless either sum is below 1e-7 (then they stay as they are). mergekit 0.1.5 does this
(``RescaleNorm.l1``), not the DARE paper's ``1/(1 − p)``; with DARE's exact kept count the two differ by
the ratio of the kept entries' mean ``|v|`` to the tensor's, which is 1 in expectation. The sums are
float64 here (float32 in mergekit), so the factor can differ from mergekit's in its last bits. Not
float32 block sums, though they cost half: their rounding would make the factor, and so the merged
values' last bits, depend on the statistics passes' block size.

**DARE's mask.** The tensor's flat positions are cut into chunks of ``DARE_CHUNK`` (2¹⁶) elements;
chunk ``c`` covering ``[s, e)`` keeps exactly ``⌊d·e⌋ − ⌊d·s⌋`` entries (the sums telescope to
``⌊d·n⌋`` per tensor, the kept fraction's rounding rule), chosen as the ``kept`` smallest of 16-bit
words drawn from numpy's SFC64 generator seeded by ``SeedSequence([k₀, k₁, k₂, k₃, c])`` (each raw
64-bit output is four words, least significant first), the ``kᵢ`` words of a hash of (seed, vector
index, tensor name); equal words at the cut are taken earliest position first. A chunk's mask
depends on nothing else, so it is the same whatever block size reads it, in any order, on any
thread; SeedSequence and the raw SFC64 stream are fixed by numpy's stability policy for bit
generators. Each entry is kept with probability ``(⌊d·e⌋ − ⌊d·s⌋)/(e − s)``, within ``1/(e − s)``
of ``d``, except for the tie-break at the cut: about one entry per chunk shares the cut word (2¹⁶
words, 2¹⁶ values), which moves an entry's probability by at most ~2⁻¹⁶ with its position.
16-bit words halve the random draws against 32-bit ones (the draw is most of a mask's cost).
mergekit draws an independent Bernoulli(d) per entry instead, so its kept count varies around ``d·n``.

``rescale``'s L1 sums are taken block by block on the pipeline's worker threads (per-block float64
sums added in block order: the same factor on any number of threads). That pass may keep each block's
mask, one bit an element (:mod:`.kept_bits`, within a budget), so the merge reads it instead of
drawing or selecting it again.

Memory: one block of the tensor and its keys at a time (statistics: :mod:`.select`); per thread, a
block and its mask for the L1 sums; a DARE chunk's words (128 KiB) while its mask is drawn; the
packed masks :mod:`.kept_bits` holds (at most its budget).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rvec.checkpoint.pipeline import ThreadWorkspaces, default_workers, ordered_map
from rvec.checkpoint.reader import Workspace, blocks
from rvec.vector.methods.kept_bits import KeptBits
from rvec.vector.methods.select import Cut, descending_keys, magnitude_keys, prefix_cuts

Sparsification = Literal["magnitude", "random", "magnitude_outliers"]
SPARSIFICATIONS: tuple[Sparsification, ...] = ("magnitude", "random", "magnitude_outliers")
DARE_CHUNK = 1 << 16
RESCALE_EPS = 1e-7  # mergekit's rescaled_masked_tensor: below it, no rescale

FloatBlocks = Callable[[], Iterator[tuple[int, np.ndarray]]]
"""Called once per pass: yields ``(flat start, float32 block)`` covering the tensor in order."""


@dataclass(frozen=True)
class TensorBlocks:
    """One vector's tensor as float32 blocks: a :data:`FloatBlocks` pass per call, or any block alone.

    ``read(start, stop, ws)`` returns the block ``[start, stop)`` in ``ws``'s buffers; calls with
    distinct workspaces may run at once on several threads (the L1 sums of ``rescale`` do).
    """

    numel: int
    block_elements: int
    read: Callable[[int, int, Workspace], np.ndarray]
    ws: Workspace  # the serial passes' buffers

    def ranges(self) -> list[tuple[int, int]]:
        return [(a, b) for a, b in blocks(self.numel, self.block_elements) if b > a]

    def __call__(self) -> Iterator[tuple[int, np.ndarray]]:
        for start, stop in self.ranges():
            yield start, self.read(start, stop, self.ws)


def magnitude_kept(density: float, numel: int) -> int:
    """Entries ``magnitude`` keeps: ``max(1, int(density·n))``; 0 when density ≤ 0 or n = 0; n when ≥ 1."""
    if density >= 1:
        return numel
    if density <= 0 or numel == 0:
        return 0
    return min(numel, max(1, int(density * numel)))


def outlier_counts(density: float, gamma: float, numel: int) -> tuple[int, int]:
    """``(n_bot, kept)`` of ``magnitude_outliers``: the smallest ``n_bot`` dropped, the next ``kept`` kept."""
    if density >= 1:
        return 0, numel
    target = max(0, int(density * numel))
    n_top = max(0, int(gamma * numel))
    return max(0, numel - target - n_top), target


def random_kept(density: float, start: int, stop: int) -> int:
    """Entries DARE keeps among flat positions ``[start, stop)``: ``⌊d·stop⌋ − ⌊d·start⌋``."""
    if density >= 1:
        return stop - start
    if density <= 0:
        return 0
    return math.floor(density * stop) - math.floor(density * start)


def dare_key(seed: int, vector: int, tensor: str) -> tuple[int, ...]:
    """The key of one vector's tensor: four 32-bit words of a hash of (seed, vector index, name)."""
    digest = hashlib.sha256(f"rvec-dare-1|{seed}|{vector}|{tensor}".encode()).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


def dare_chunk_mask(
    key: tuple[int, ...], chunk: int, length: int, kept: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Which of a chunk's ``length`` entries DARE keeps: exactly ``kept`` of them (bool, into ``out``)."""
    mask = np.empty(length, dtype=np.bool_) if out is None else out
    if kept <= 0 or kept >= length:
        mask.fill(kept > 0)
        return mask
    # SFC64 seeded by SeedSequence(key, chunk): 4× faster here than Philox-4x64 (3.5 against 14.6 ns
    # an element, measured); SeedSequence and both raw streams are fixed by numpy's stability policy.
    bits = np.random.SFC64(np.random.SeedSequence([*key, chunk]))
    words = bits.random_raw((length + 3) // 4).view("<u2")[:length]  # (length,) uint16
    kth = np.partition(words, kept - 1)[kept - 1]
    np.less(words, kth, out=mask)
    short = kept - int(np.count_nonzero(mask))
    mask[np.flatnonzero(words == kth)[:short]] = True
    return mask


@dataclass(frozen=True)
class Pruning:
    """How one vector's tensor is sparsified: which entries of a block survive, and the rescale factor.

    ``cuts``: ``magnitude`` — the top-``kept`` prefix in descending-magnitude keys; ``magnitude_outliers``
    — the ascending prefixes of ``n_bot`` and ``n_bot + kept`` entries (kept = between them).
    """

    method: Sparsification
    numel: int
    kept: int
    density: float
    cuts: tuple[Cut, ...] = ()
    key: tuple[int, ...] = (0, 0, 0, 0)  # random: the generator's key (dare_key)
    scale: float = 1.0
    bits: KeptBits | None = field(default=None, compare=False, repr=False)  # the mask, once drawn

    def keep_mask(self, block: np.ndarray, start: int, ws: Workspace) -> np.ndarray:
        """Bool mask of the entries of ``block`` (flat positions from ``start``) that survive."""
        n = block.size
        out = ws.get("prune:mask", np.bool_, n)
        if self.bits is not None and self.bits.load(start, out) is not None:
            return out
        if self.method == "random":
            return self._random_mask(start, out)
        keys = ws.get("prune:keys", np.uint32, n)
        if self.method == "magnitude":
            return self.cuts[0].mask(descending_keys(block, keys), start, out)
        magnitude_keys(block, keys)
        below = self.cuts[0].mask(keys, start, ws.get("prune:below", np.bool_, n))
        self.cuts[1].mask(keys, start, out)
        return np.logical_and(out, np.logical_not(below, out=below), out=out)

    def _random_mask(self, start: int, out: np.ndarray) -> np.ndarray:
        stop = start + out.size
        for chunk in range(start // DARE_CHUNK, (stop - 1) // DARE_CHUNK + 1 if out.size else 0):
            lo, hi = chunk * DARE_CHUNK, min(self.numel, (chunk + 1) * DARE_CHUNK)
            kept = random_kept(self.density, lo, hi)
            a, b = max(lo, start), min(hi, stop)
            if (a, b) == (lo, hi):  # the whole chunk in this block: drawn in place
                dare_chunk_mask(self.key, chunk, hi - lo, kept, out[a - start : b - start])
            else:
                out[a - start : b - start] = dare_chunk_mask(self.key, chunk, hi - lo, kept)[a - lo : b - lo]
        return out

    def apply(
        self, block: np.ndarray, start: int, ws: Workspace, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """``block`` (float32, flat positions from ``start``) sparsified in place: dropped entries 0, kept × scale.

        ``mask``: this block's :meth:`keep_mask`, when the caller has it already.
        """
        np.multiply(block, self.keep_mask(block, start, ws) if mask is None else mask, out=block)
        if self.scale != 1.0:
            np.multiply(block, np.float32(self.scale), out=block)  # float32, as mergekit's masked * ratio
        return block


def prepare_pruning(
    method: Sparsification,
    blocks: TensorBlocks,
    numel: int,
    *,
    density: float,
    gamma: float = 0.0,
    rescale: bool = False,
    key: tuple[int, ...] = (0, 0, 0, 0),
    ws: Workspace,
    hold: Callable[[], KeptBits | None] | None = None,
) -> Pruning | None:
    """The :class:`Pruning` of one vector's tensor, from streamed passes over it; ``None`` keeps it whole.

    Passes: magnitude and outliers 1–3 (:func:`~.select.prefix_cuts`), random none; one more for
    ``rescale`` (the two L1 sums), which keeps the mask in ``hold()``'s bits when it gives some.
    """
    if density >= 1 or numel == 0:
        return None  # mergekit returns the tensor untouched, rescale or not
    if method == "random":
        pruning = Pruning("random", numel, random_kept(density, 0, numel), density, key=key)
    elif method == "magnitude":
        kept = magnitude_kept(density, numel)
        cut = prefix_cuts(_keys(blocks, descending_keys, ws), numel, [kept])
        pruning = Pruning("magnitude", numel, kept, density, cuts=tuple(cut))
    else:
        n_bot, kept = outlier_counts(density, gamma, numel)
        cuts = prefix_cuts(_keys(blocks, magnitude_keys, ws), numel, [n_bot, n_bot + kept])
        pruning = Pruning("magnitude_outliers", numel, kept, density, cuts=tuple(cuts))
    if not rescale:
        return pruning
    pruning = dataclasses.replace(pruning, bits=hold() if hold is not None else None)
    scale = _l1_scale(pruning, blocks)
    if pruning.bits is not None:
        pruning.bits.complete = True
    return dataclasses.replace(pruning, scale=scale)


def _keys(
    blocks: FloatBlocks, transform: Callable[[np.ndarray, np.ndarray], np.ndarray], ws: Workspace
) -> Callable[[], Iterator[tuple[int, np.ndarray]]]:
    def keyed() -> Iterator[tuple[int, np.ndarray]]:
        for start, block in blocks():
            yield start, transform(block, ws.get("prune:stat_keys", np.uint32, block.size))

    return keyed


def _l1_scale(pruning: Pruning, blocks: TensorBlocks) -> float:
    """mergekit's L1 rescale factor ``‖v‖₁ / ‖kept‖₁`` (1 when either is below 1e-7).

    The per-block sums run on the worker threads and are added in block order, so the factor is the
    same on any number of threads.
    """
    workspaces = ThreadWorkspaces(blocks.block_elements)

    def block_sums(bounds: tuple[int, int]) -> tuple[float, float]:
        local = workspaces.get()
        return _l1_sums(pruning, bounds[0], blocks.read(*bounds, local), local)

    workers = default_workers()
    before = after = 0.0
    for whole, kept in ordered_map(block_sums, blocks.ranges(), workers=workers, window=2 * workers):
        before += whole
        after += kept
    if before < RESCALE_EPS or after < RESCALE_EPS:
        return 1.0
    return before / after


def _l1_sums(pruning: Pruning, start: int, block: np.ndarray, ws: Workspace) -> tuple[float, float]:
    """``(Σ|v|, Σ|kept v|)`` of one block, in float64."""
    magnitude = np.abs(block, out=ws.get("prune:abs", np.float32, block.size))
    whole = float(magnitude.sum(dtype=np.float64))
    mask = pruning.keep_mask(block, start, ws)
    if pruning.bits is not None:
        pruning.bits.store(start, mask)
    np.multiply(magnitude, mask, out=magnitude)  # not where=: 10× slower
    return whole, float(magnitude.sum(dtype=np.float64))
