"""Paired statistics for "A vs B on the same items": accuracies, difference, bootstrap CI, a paired
test (McNemar, or its sign-flip generalisation for sampled items), flips.

Every comparison in a study report goes through :func:`paired_comparison` (one task) or
:func:`stratified_comparison` (an unweighted mean over subtasks, as for BIG-Bench Hard), so every
printed difference carries its interval (EVAL_PROTOCOL.md, *Statistics*).

Notation, for the ``n`` doc_ids both sides share, in sorted doc_id order: ``a_i, b_i ∈ {0, 1}``
(correct or not) and ``d_i = b_i − a_i``.

* accuracies ``acc_a = Σ a_i / n``, ``acc_b = Σ b_i / n``; difference ``diff = acc_b − acc_a = mean(d)``;
* paired bootstrap: draw ``R`` index vectors ``I_r`` of length ``n`` uniformly with replacement from
  ``numpy.random.default_rng(seed)`` (one ``rng.integers(0, n, size=(R, n))`` stream), take
  ``D_r = mean(d[I_r])``, and report the percentile interval ``[q_{(1−c)/2}(D), q_{(1+c)/2}(D)]``
  (``numpy.quantile``, linear interpolation) for confidence ``c``;
* flips: ``flips_up = #{a_i = 0, b_i = 1}`` (``b01``), ``flips_down = #{a_i = 1, b_i = 0}`` (``b10``);
* exact McNemar: the two-sided binomial test of ``b01`` successes in ``b01 + b10`` trials at 0.5,
  ``p = min(1, 2·Σ_{k ≤ min(b01, b10)} C(b01+b10, k) / 2^(b01+b10))``; ``p = 1`` without discordant pairs.

Sampled items (``--samples n``) are right in a share ``a_i, b_i ∈ [0, 1]`` of their samples.
Everything above holds with those means (the bootstrap resamples items, never samples) except
McNemar (0/1 only), replaced by the **paired sign-flip permutation test** of ``mean(d)`` (scipy's
``permutation_test``, ``permutation_type="samples"``, two-sided): under "B changes nothing" each
``d_i`` is as likely to be ``−d_i``; on 0/1 items it *is* exact McNemar. Exact when ``2^n ≤ resamples``, else ``resamples`` seeded
random flips. Wilcoxon's signed-rank test was rejected: it ranks, and drops or splits the zero
differences where most items sit. Flips count items whose mean rose or fell; ``Comparison.test``
names the test (``"mcnemar"`` or ``"sign-flip"``).

Example:
    >>> c = paired_comparison({"1": False, "2": True}, {"1": True, "2": True}, resamples=1000)
    >>> c.flips_up, c.flips_down, c.mcnemar_p
    (1, 0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rvec.errors import RvecError
from rvec.eval.pvalues import mcnemar_exact, sign_flip_p

__all__ = [
    "Comparison",
    "StatisticsError",
    "accuracy_interval",
    "format_delta",
    "format_p",
    "format_pct",
    "paired_comparison",
    "stratified_comparison",
]

PerItem = Mapping[str, bool | float]
"""doc_id -> correct (greedy), or the mean correctness of the item's samples in [0, 1] (sampled)."""

# Index draws are made this many entries at a time (32 MiB of int64) so that 10,000 resamples of a
# large task stay in memory. Row-wise chunks of ``Generator.integers`` continue one stream, so the
# result equals a single ``rng.integers(0, n, size=(R, n))`` call.
_CHUNK_ENTRIES = 1 << 22


class StatisticsError(RvecError, ValueError):
    """A comparison cannot be computed: no shared items, or a bad resampling setting.

    Example: ``no doc_id is shared by the two cells (40 and 40 items); compare cells of the same task``
    """


@dataclass(frozen=True)
class Comparison:
    """The paired comparison of B against A on the items they share (see the module docstring).

    Attributes:
        n: items shared by A and B (summed over strata for a stratified comparison).
        acc_a: accuracy of A on those items (for strata: the unweighted mean of stratum accuracies).
        acc_b: accuracy of B on those items (idem).
        diff: ``acc_b − acc_a``.
        ci_low: lower end of the paired bootstrap percentile CI of ``diff``.
        ci_high: upper end of that CI.
        mcnemar_p: two-sided p-value of ``test``: exact McNemar (pooled discordant pairs for
            strata), or the sign-flip permutation test on sampled items.
        flips_up: items wrong in A and right in B (sampled: whose mean rose).
        flips_down: items right in A and wrong in B (sampled: whose mean fell).
        confidence: the CI's confidence level.
        resamples: bootstrap resamples drawn.
        seed: the ``numpy.random.default_rng`` seed.
        strata: number of strata averaged (1 for a plain paired comparison).
        test: ``"mcnemar"`` (0/1 items) or ``"sign-flip"`` (an item's mean of several samples).
    """

    n: int
    acc_a: float
    acc_b: float
    diff: float
    ci_low: float
    ci_high: float
    mcnemar_p: float
    flips_up: int
    flips_down: int
    confidence: float = 0.95
    resamples: int = 10_000
    seed: int = 0
    strata: int = 1
    test: str = "mcnemar"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return asdict(self)


def paired_comparison(
    a: PerItem,
    b: PerItem,
    *,
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Comparison:
    """Compare B against A on the doc_ids both contain; ids present on one side only are ignored.

    Args:
        a (Mapping[str, bool | float]): per-item correctness of the reference (e.g. the baseline),
            or each item's mean correctness over its samples.
        b (Mapping[str, bool | float]): the same for the compared cell.
        resamples (int, default 10,000): bootstrap resamples.
        seed (int, default 0): seed of ``numpy.random.default_rng``; same seed, same CI.
        confidence (float, default 0.95): CI confidence level.

    Returns:
        Comparison: accuracies, ``diff = acc_b − acc_a``, its percentile bootstrap CI, the exact
        McNemar p-value (or the sign-flip one, for means) and the flips, with the formulas of the
        module docstring.

    Raises:
        StatisticsError: no doc_id is shared, a value outside [0, 1], ``resamples < 1``, or
            ``confidence`` is not in (0, 1).

    Example:
        >>> paired_comparison({"q1": True, "q2": False}, {"q1": True, "q2": True}).diff
        0.5
    """
    return stratified_comparison({"": (a, b)}, resamples=resamples, seed=seed, confidence=confidence)


def stratified_comparison(
    strata: Mapping[str, tuple[PerItem, PerItem]],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Comparison:
    """Compare the unweighted mean over strata (e.g. BBH subtasks) of B against that of A.

    Each stratum is paired on its own shared doc_ids. The bootstrap resamples items *within* each
    stratum (strata in sorted name order, each drawing ``rng.integers(0, n_s, size=(R, n_s))`` from
    one generator), and averages the stratum mean differences, so it is the bootstrap of the
    unweighted mean rather than of the pooled items. McNemar and the flips pool the discordant pairs
    of all strata: under "B changes no item's outcome" every discordant pair is a fair coin,
    whatever its stratum. With one stratum this is exactly :func:`paired_comparison`.

    Args:
        strata (Mapping[str, tuple[Mapping[str, bool | float], Mapping[str, bool | float]]]):
            name -> (a, b), per-item correctness or means.
        resamples (int, default 10,000): bootstrap resamples.
        seed (int, default 0): seed of ``numpy.random.default_rng``.
        confidence (float, default 0.95): CI confidence level.

    Returns:
        Comparison: with ``strata = len(strata)``; ``acc_a``/``acc_b``/``diff`` are unweighted means.

    Raises:
        StatisticsError: no strata, a stratum shares no doc_id, ``resamples < 1``, or ``confidence``
            is not in (0, 1).
    """
    if not strata:
        raise StatisticsError("no strata to compare; pass at least one (a, b) pair")
    if resamples < 1:
        raise StatisticsError(f"resamples = {resamples}; pass a positive count, e.g. 10000")
    if not 0.0 < confidence < 1.0:
        raise StatisticsError(f"confidence = {confidence}; pass a level in (0, 1), e.g. 0.95")

    pairs = {name: _paired_arrays(*strata[name], name=name) for name in sorted(strata)}
    binary = all(_binary(xa) and _binary(xb) for xa, xb in pairs.values())
    rng = np.random.default_rng(seed)
    boot = np.zeros(resamples, dtype=np.float64)  # (R,) sum of stratum mean differences
    for xa, xb in pairs.values():
        # 0/1 items: exact integer differences, as before sampled items existed (same draws, same CI).
        d = xb.astype(np.int8) - xa.astype(np.int8) if binary else xb - xa
        boot += _bootstrap_means(d, resamples, rng)
    boot /= len(pairs)
    tail = (1.0 - confidence) / 2.0
    ci_low, ci_high = np.quantile(boot, [tail, 1.0 - tail])

    up = sum(int(np.count_nonzero(xb > xa)) for xa, xb in pairs.values())
    down = sum(int(np.count_nonzero(xa > xb)) for xa, xb in pairs.values())
    acc_a = float(np.mean([xa.mean() for xa, _ in pairs.values()]))
    acc_b = float(np.mean([xb.mean() for _, xb in pairs.values()]))
    if binary:
        p = mcnemar_exact(up, down)
    else:
        p = sign_flip_p({name: xb - xa for name, (xa, xb) in pairs.items()}, resamples=resamples, seed=seed)
    return Comparison(
        n=sum(len(xa) for xa, _ in pairs.values()),
        acc_a=acc_a,
        acc_b=acc_b,
        diff=float(np.mean([xb.mean() - xa.mean() for xa, xb in pairs.values()])),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        mcnemar_p=p,
        flips_up=up,
        flips_down=down,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
        strata=len(pairs),
        test="mcnemar" if binary else "sign-flip",
    )


def accuracy_interval(
    per_item: PerItem | list[PerItem],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Accuracy and its percentile bootstrap CI; a list of strata gives their unweighted mean.

    Used for error bars of single accuracies (plots); differences go through :func:`paired_comparison`.

    Args:
        per_item (Mapping[str, bool | float] | list[Mapping[str, bool | float]]): one cell's
            per-item correctness (or per-item means of samples), or several (BBH subtasks) whose
            accuracies are averaged without weights.
        resamples (int, default 10,000): bootstrap resamples.
        seed (int, default 0): seed of ``numpy.random.default_rng``.
        confidence (float, default 0.95): CI confidence level.

    Returns:
        tuple[float, float, float]: ``(accuracy, ci_low, ci_high)``.

    Raises:
        StatisticsError: no items, ``resamples < 1``, or ``confidence`` is not in (0, 1).
    """
    cells = [per_item] if isinstance(per_item, Mapping) else list(per_item)
    if not cells or any(not cell for cell in cells):
        raise StatisticsError("an accuracy interval needs at least one item per cell; the cell is empty")
    if resamples < 1:
        raise StatisticsError(f"resamples = {resamples}; pass a positive count, e.g. 10000")
    if not 0.0 < confidence < 1.0:
        raise StatisticsError(f"confidence = {confidence}; pass a level in (0, 1), e.g. 0.95")
    rng = np.random.default_rng(seed)
    boot = np.zeros(resamples, dtype=np.float64)
    means = []
    for cell in cells:
        x = _values(cell, sorted(cell), where="")
        x = x.astype(np.int8) if _binary(x) else x  # 0/1 items: exact integer sums, as always
        means.append(float(x.mean()))
        boot += _bootstrap_means(x, resamples, rng)
    boot /= len(cells)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return float(np.mean(means)), float(low), float(high)


def _paired_arrays(a: PerItem, b: PerItem, *, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(n,) float arrays of a and b on the shared doc_ids, in sorted doc_id order."""
    shared = sorted(set(a) & set(b))
    if not shared:
        where = f"stratum {name!r}: " if name else ""
        raise StatisticsError(
            f"{where}no doc_id is shared by the two cells ({len(a)} and {len(b)} items); "
            "compare cells of the same task, or map derived items to their clean doc_id"
        )
    return _values(a, shared, where=name), _values(b, shared, where=name)


def _values(cell: PerItem, ids: list[str], *, where: str) -> np.ndarray:
    """(n,) float64 values of ``ids``: 0/1 for correctness, a share in [0, 1] for sampled items."""
    x = np.array([float(cell[k]) for k in ids], dtype=np.float64)
    bad = x[(x < 0) | (x > 1) | ~np.isfinite(x)]
    if bad.size:
        at = f"stratum {where!r}: " if where else ""
        raise StatisticsError(
            f"{at}per-item value {float(bad[0])!r} is not a correctness in [0, 1]; pass booleans or each "
            "item's mean over its samples"
        )
    return x


def _binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def _bootstrap_means(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(R,) means of ``x`` over R index resamples with replacement: ``x`` int8 (values in {-1, 0,
    1}) or float64 (differences of per-item means)."""
    n = len(x)
    out = np.empty(resamples, dtype=np.float64)
    rows = max(1, _CHUNK_ENTRIES // n)
    exact = x.dtype.kind == "i"
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))  # (r, n) int64
        # Integer sums are exact, so the mean does not depend on the summation order.
        out[start:stop] = x[idx].sum(axis=1, dtype=np.int64 if exact else np.float64) / n
    return out


def format_pct(value: float) -> str:
    """An accuracy in percent with one decimal: ``0.6213 -> "62.1"`` (``"—"`` for NaN)."""
    if math.isnan(value):
        return "—"
    return f"{round(100.0 * value, 1) + 0.0:.1f}"


def _signed_pp(value: float) -> str:
    # "+ 0.0" turns a rounded -0.0 into 0.0, so no "-0.0" is printed.
    return f"{round(100.0 * value, 1) + 0.0:+.1f}"


def format_delta(c: Comparison) -> str:
    """The difference and its CI in percentage points: ``"+4.9 [+1.2, +8.6]"``.

    Args:
        c (Comparison): the comparison to print.

    Returns:
        str: ``diff [ci_low, ci_high]``, each signed, one decimal, in points (×100).

    Example:
        >>> format_delta(Comparison(100, 0.5, 0.549, 0.049, 0.012, 0.086, 0.01, 6, 1))
        '+4.9 [+1.2, +8.6]'
    """
    return f"{_signed_pp(c.diff)} [{_signed_pp(c.ci_low)}, {_signed_pp(c.ci_high)}]"


def format_p(p: float) -> str:
    """A p-value for tables: three decimals, ``"<0.001"`` below that.

    Example:
        >>> format_p(0.03857421875), format_p(1.0), format_p(2e-6)
        ('0.039', '1.000', '<0.001')
    """
    if math.isnan(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"
