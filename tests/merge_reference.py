"""Whole-tensor numpy implementations of mergekit 0.1.5's merge methods, written from its definitions
(``sparsify.py``, ``generalized_task_arithmetic.py``, ``ram.py``) with a stable sort for ties, to
check rvec's streamed ones against. float32 throughout, sums left to right."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rescaled(flat: np.ndarray, mask: np.ndarray, rescale: bool) -> np.ndarray:
    masked = flat * mask.astype(np.float32)
    if not rescale:
        return masked
    before = float(np.abs(flat).astype(np.float64).sum())
    after = float(np.abs(masked).astype(np.float64).sum())
    if before < 1e-7 or after < 1e-7:
        return masked
    return masked * np.float32(before / after)


def magnitude(flat: np.ndarray, density: float, rescale: bool = False) -> np.ndarray:
    n = flat.size
    if density >= 1:
        return flat.copy()
    if density <= 0 or n == 0:
        return np.zeros_like(flat)
    k = max(1, int(density * n))
    mask = np.zeros(n, bool)
    mask[np.argsort(-np.abs(flat), kind="stable")[:k]] = True
    return rescaled(flat, mask, rescale)


def magnitude_outliers(flat: np.ndarray, density: float, gamma: float, rescale: bool = False) -> np.ndarray:
    n = flat.size
    if density >= 1:
        return flat.copy()
    target, n_top = int(density * n), int(gamma * n)
    n_bot = max(0, n - target - n_top)
    mask = np.zeros(n, bool)
    mask[np.argsort(np.abs(flat), kind="stable")[n_bot : n_bot + target]] = True
    return rescaled(flat, mask, rescale)


def gta(
    sparsified: Sequence[np.ndarray],
    weights: Sequence[float],
    *,
    consensus: bool,
    normalize: bool,
    lam: float = 1.0,
) -> np.ndarray:
    w = [np.float32(x) for x in weights]
    weighted = [d * wi for d, wi in zip(sparsified, w)]
    if consensus:
        total = weighted[0].copy()
        for d in weighted[1:]:
            total = total + d
        elected = np.where(total >= 0, np.float32(1), np.float32(-1))
        agree = [np.sign(d) == elected for d in weighted]
        mixed = np.zeros_like(weighted[0])
        divisor = np.zeros_like(weighted[0])
        for d, a, wi in zip(weighted, agree, w):
            mixed = mixed + d * a.astype(np.float32)
            divisor = divisor + wi * a.astype(np.float32)
        divisor[divisor == 0] = 1
    else:
        mixed = weighted[0].copy()
        for d in weighted[1:]:
            mixed = mixed + d
        divisor = np.float32(0)
        for wi in w:
            divisor = np.float32(divisor + wi)
        if abs(divisor) < 1e-8:
            divisor = np.float32(1)
    if normalize:
        mixed = mixed / divisor
    if lam != 1:
        mixed = mixed * np.float32(lam)
    return mixed.astype(np.float32)


def ram(deltas: Sequence[np.ndarray], epsilon: float = 1e-5) -> np.ndarray:
    tv = np.stack(deltas)
    touched = np.abs(tv) > np.float32(epsilon)
    count = touched.sum(axis=0)
    tvz = tv * touched
    parts = tvz * (count == 1) + tvz * (count > 1) / np.maximum(count, 1).astype(np.float32)
    out = np.zeros_like(deltas[0])
    for row in parts:
        out = out + row
    return out
