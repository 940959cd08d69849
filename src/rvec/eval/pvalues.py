"""p-values of paired comparisons: exact McNemar on 0/1 items, a paired sign-flip permutation test
on per-item means (sampled cells), and Holm's adjustment of a family of them (the atlas)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import binomtest, permutation_test

__all__ = ["holm_adjusted", "mcnemar_exact", "sign_flip_p"]


def sign_flip_p(differences: Mapping[str, np.ndarray], *, resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation p-value of the unweighted mean over strata of the
    mean difference (see the module docstring).

    Args:
        differences (Mapping[str, np.ndarray]): stratum -> (n_s,) per-item differences ``b_i − a_i``.
        resamples (int, default 10,000): random sign flips when ``2^n`` exceeds it (else exact).
        seed (int, default 0): seed of ``numpy.random.default_rng`` for the random flips.

    Returns:
        float: The p-value; 1.0 when every difference is 0.

    Example:
        >>> round(sign_flip_p({"": np.array([1.0, 1, 1, 0, -1, 1])}), 4)  # = McNemar's binomial(4 of 5)
        0.375
    """
    # Item i of stratum s weighs 1/(S·n_s): the weighted sum is the mean over strata of stratum means.
    d = np.concatenate([differences[name] for name in sorted(differences)]).astype(np.float64)  # (n,)
    w = np.concatenate(
        [np.full(len(x), 1.0 / (len(differences) * len(x))) for _, x in sorted(differences.items())]
    )
    if not np.any(d):
        return 1.0

    def statistic(x: np.ndarray, axis: int) -> np.ndarray:
        return np.sum(x * w, axis=axis)

    result = permutation_test(
        (d,),
        statistic,
        permutation_type="samples",
        vectorized=True,
        n_resamples=resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(min(1.0, result.pvalue))


def mcnemar_exact(b01: int, b10: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts (1.0 when there are none)."""
    if b01 + b10 == 0:
        return 1.0
    return float(binomtest(b01, b01 + b10, 0.5).pvalue)


def holm_adjusted(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (strong control of the family-wise error
    rate, no assumption on their dependence), in input order.

    Written here because scipy has only Benjamini–Hochberg/Yekutieli
    (``scipy.stats.false_discovery_control``, which controls the false discovery rate, not the
    family-wise error) and statsmodels is not a dependency for these five lines. With the ``m``
    p-values sorted ascending, ``p_(1) ≤ … ≤ p_(m)``, the adjusted value of the ``i``-th is
    ``max_{j ≤ i} min(1, (m − j + 1)·p_(j))``; rejecting where the adjusted value is ≤ α is Holm's test
    (Holm 1979, https://www.jstor.org/stable/4615733). NaN entries are left out of the family and
    stay NaN.

    Example:
        >>> holm_adjusted([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    order = sorted((i for i, p in enumerate(pvalues) if not math.isnan(p)), key=lambda i: pvalues[i])
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
