"""Scores of sampled evaluation: unbiased pass@k and avg@n, per item and per cell.

With ``n`` samples per item of which ``c`` are correct, the unbiased estimator of the probability
that at least one of ``k`` samples is correct is (Chen et al. 2021, "Evaluating Large Language
Models Trained on Code", eq. 1, https://arxiv.org/abs/2107.03374)::

    pass@k = 1 - C(n - c, k) / C(n, k)

computed as ``1 - Π_{i = n-c+1}^{n} (1 - k / i)``, the product form of the paper's numpy code: the
binomials overflow a float for realistic ``n`` and the product never does. ``avg@n`` is ``c / n``,
the mean correctness of the samples (lighteval's ``avg@n``). A *cell* (one task under one model
state) scores the unweighted mean over its items: :func:`sampled_metrics` gives ``avg@n`` and
``pass@k`` for ``k`` in 1, 2, 4, … up to ``n`` (and ``n`` itself), the names ``results.json`` uses.
:func:`per_item` gives each item's mean correctness, what paired statistics compare.

Example:
    >>> round(pass_at_k(n=10, c=3, k=1), 6)
    0.3
    >>> round(pass_at_k(n=10, c=3, k=5), 6)
    0.916667
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from rvec.errors import InvalidArgumentError

__all__ = [
    "avg_at_n",
    "cell_avg_at_n",
    "cell_pass_at_k",
    "item_counts",
    "pass_at_k",
    "pass_ks",
    "per_item",
    "sampled_metrics",
]


def pass_at_k(*, n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one item.

    Args:
        n (int): Samples drawn (>= 1).
        c (int): Correct samples among them (0..n).
        k (int): Budget of attempts (1..n).

    Returns:
        float: The probability that a random ``k``-subset of the samples holds a correct one.

    Raises:
        InvalidArgumentError: ``n < 1``, ``c`` outside ``0..n``, or ``k`` outside ``1..n``.
    """
    _check(n=n, c=c, k=k)
    if n - c < k:
        return 1.0  # every k-subset must contain a correct sample
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def avg_at_n(*, n: int, c: int) -> float:
    """avg@n of one item: the share of its ``n`` samples that are correct.

    Raises:
        InvalidArgumentError: ``n < 1`` or ``c`` outside ``0..n``.
    """
    _check(n=n, c=c, k=1)
    return c / n


def item_counts(correct: Sequence[bool | float]) -> tuple[int, int]:
    """``(n, c)`` of one item from its samples' verdicts (1.0/0.0 or bools).

    Raises:
        InvalidArgumentError: a verdict other than 0 or 1.
    """
    values = [float(v) for v in correct]
    bad = [v for v in values if v not in (0.0, 1.0)]
    if bad:
        raise InvalidArgumentError(f"sample verdict {bad[0]!r} is not 0 or 1; pass@k counts correct samples")
    return len(values), int(sum(values))


def cell_pass_at_k(samples: Mapping[str, Sequence[bool | float]], *, k: int) -> dict[str, float]:
    """pass@k per item and for the cell.

    Args:
        samples (Mapping[str, Sequence[bool | float]]): doc_id -> the verdicts of its samples.
        k (int): Budget of attempts; every item needs at least ``k`` samples.

    Returns:
        dict[str, float]: doc_id -> pass@k, plus ``"mean"`` over the items.

    Raises:
        InvalidArgumentError: no items, or an item with fewer than ``k`` samples (named).
    """
    per_item = {doc_id: _item(doc_id, verdicts, k) for doc_id, verdicts in _nonempty(samples).items()}
    return {**per_item, "mean": float(np.mean(list(per_item.values())))}


def cell_avg_at_n(samples: Mapping[str, Sequence[bool | float]]) -> dict[str, float]:
    """avg@n per item and for the cell (doc_id -> share correct, plus ``"mean"``).

    Raises:
        InvalidArgumentError: no items, or an item without samples.
    """
    per_item = {}
    for doc_id, verdicts in _nonempty(samples).items():
        n, c = item_counts(verdicts)
        if n == 0:
            raise InvalidArgumentError(f"item {doc_id!r} has no samples; avg@n needs at least one")
        per_item[doc_id] = avg_at_n(n=n, c=c)
    return {**per_item, "mean": float(np.mean(list(per_item.values())))}


def pass_ks(n: int) -> list[int]:
    """The ``k`` of the pass@k a cell of ``n`` samples reports: 1, 2, 4, … up to ``n``, and ``n``.

    Example:
        >>> pass_ks(8), pass_ks(6), pass_ks(1)
        ([1, 2, 4, 8], [1, 2, 4, 6], [1])
    """
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return ks if ks[-1] == n else [*ks, n]


def _grouped(verdicts: Iterable[tuple[str, bool | float]]) -> dict[str, list[bool | float]]:
    groups: dict[str, list[bool | float]] = {}
    for doc_id, verdict in verdicts:
        groups.setdefault(doc_id, []).append(verdict)
    return groups


def per_item(verdicts: Iterable[tuple[str, bool | float]]) -> dict[str, bool | float]:
    """Each item's value for paired statistics: its verdict when it has one sample (a bool, as
    greedy cells have always stored), else the mean correctness of its samples (a float in [0, 1]).

    Args:
        verdicts (Iterable[tuple[str, bool | float]]): ``(doc_id, correct)`` per sample, in order.

    Returns:
        dict[str, bool | float]: doc_id -> verdict or mean, in first-seen order.
    """
    out: dict[str, bool | float] = {}
    for doc_id, values in _grouped(verdicts).items():
        out[doc_id] = bool(values[0]) if len(values) == 1 else float(np.mean([float(v) for v in values]))
    return out


def sampled_metrics(verdicts: Iterable[tuple[str, bool | float]], *, samples: int) -> dict[str, float]:
    """A sampled cell's ``avg@n`` and ``pass@k`` (k in :func:`pass_ks`), means over its items.

    Args:
        verdicts (Iterable[tuple[str, bool | float]]): ``(doc_id, correct)`` per sample.
        samples (int): ``n``, the samples drawn per item; every item must have that many.

    Returns:
        dict[str, float]: ``{"avg@8": …, "pass@1": …, "pass@2": …, "pass@4": …, "pass@8": …}``.

    Raises:
        InvalidArgumentError: no items, or an item with another number of samples (named).
    """
    groups = _grouped(verdicts)
    uneven = [(d, len(v)) for d, v in groups.items() if len(v) != samples]
    if uneven:
        doc_id, found = uneven[0]
        raise InvalidArgumentError(
            f"item {doc_id!r} has {found} sample(s), expected {samples}; a cell's items must all be drawn "
            "the same number of times"
        )
    out = {f"avg@{samples}": cell_avg_at_n(groups)["mean"]}
    for k in pass_ks(samples):
        out[f"pass@{k}"] = cell_pass_at_k(groups, k=k)["mean"]
    return out


def _item(doc_id: str, verdicts: Sequence[bool | float], k: int) -> float:
    n, c = item_counts(verdicts)
    if n < k:
        raise InvalidArgumentError(
            f"pass@{k}: item {doc_id!r} has {n} sample(s), fewer than k={k}; draw at least {k} or lower k"
        )
    return pass_at_k(n=n, c=c, k=k)


def _nonempty(samples: Mapping[str, Sequence[bool | float]]) -> Mapping[str, Sequence[bool | float]]:
    if not samples:
        raise InvalidArgumentError("no items to score; a cell needs at least one item with samples")
    return samples


def _check(*, n: int, c: int, k: int) -> None:
    if n < 1:
        raise InvalidArgumentError(f"n={n} samples: need at least 1")
    if not 0 <= c <= n:
        raise InvalidArgumentError(f"c={c} correct samples out of n={n}: must lie in 0..{n}")
    if not 1 <= k <= n:
        raise InvalidArgumentError(
            f"k={k} with n={n} samples: k must lie in 1..{n}; draw more samples or lower k"
        )
