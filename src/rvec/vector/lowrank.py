"""Best rank-r factors of a vector's matrices (Eckart–Young: the truncated SVD), one tensor at a time.

Shared by ``rvec compress --rank`` and ``rvec export-lora``. The singular values come from LAPACK
(``numpy.linalg.svd``, float64, so the recorded error is exact to ~1e-15 rather than float32's
~1e-7); the factors are stored as float32 with the singular values split evenly,
``B = U_r·√Σ_r`` (out, r) and ``A = √Σ_r·V_rᵀ`` (r, in), so neither factor carries all the scale.
Memory: about three float64 copies of the one matrix being decomposed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rvec.errors import InvalidArgumentError
from rvec.vector.artifact import ReasoningVector
from rvec.vector.encodings import factored_norm


@dataclass(frozen=True)
class RankFactors:
    """``v ≈ b @ a`` at some rank, with the Frobenius norm of what truncation dropped."""

    a: np.ndarray  # (r, in) float32
    b: np.ndarray  # (out, r) float32
    norm: float  # ‖v‖_F of the input tensor
    tail: float  # ‖v − b@a‖_F in exact arithmetic: sqrt(Σ_{i>r} σᵢ²)

    @property
    def relative_error(self) -> float:
        return self.tail / self.norm if self.norm > 0 else 0.0


def check_rank(rank: int, shapes: Mapping[str, tuple[int, ...]], label: str) -> None:
    """``rank`` must be ≥ 1 and fit at least one matrix of the vector.

    Raises:
        InvalidArgumentError: ``rank`` < 1, no 2-D tensor, or ``rank`` above every matrix's min(rows, cols).
    """
    if rank < 1:
        raise InvalidArgumentError(f"--rank {rank}: must be at least 1")
    sides = [min(s) for s in shapes.values() if len(s) == 2]
    if not sides:
        raise InvalidArgumentError(f"{label}: has no 2-D tensor to factor; use --density instead")
    if rank > max(sides):
        raise InvalidArgumentError(
            f"--rank {rank}: larger than every matrix of {label} (the largest min(rows, cols) is {max(sides)}); "
            f"pass --rank {max(sides)} or less"
        )


def planned_rank(vector: ReasoningVector, name: str, rank: int) -> int:
    """The rank ``name`` is stored at: ``rank``, capped by min(rows, cols) and by a factored input's rank."""
    shape = vector.shapes[name]
    cap = min(shape)
    if vector.encoding(name) == "factored":
        cap = min(cap, int(vector.manifest["tensors"][name]["rank"]))
    return min(rank, cap)


def factors_at_rank(vector: ReasoningVector, name: str, rank: int) -> RankFactors:
    """The best rank-``planned_rank`` factors of the matrix ``v[name]``.

    A factored input of rank ≤ ``rank`` is returned as stored (exact, no SVD); a factored input of
    higher rank is truncated through the SVD of an r×r core (no dense product); anything else is
    read whole and decomposed.
    """
    target = planned_rank(vector, name, rank)
    if vector.encoding(name) == "factored":
        a, b = vector.factors(name)
        if a.shape[0] <= target:
            return RankFactors(a, b, factored_norm(a, b), 0.0)
        return _truncate_factors(a, b, target)
    matrix = vector.read(name).astype(np.float64)  # (out, in)
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    del matrix
    return _split(u[:, :target], s, vt[:target], target)


def _split(u_r: np.ndarray, s: np.ndarray, vt_r: np.ndarray, rank: int) -> RankFactors:
    root = np.sqrt(s[:rank])
    b = (u_r * root).astype(np.float32)  # (out, r)
    a = (root[:, None] * vt_r).astype(np.float32)  # (r, in)
    norm = math.sqrt(float(np.sum(s**2)))
    return RankFactors(a, b, norm, math.sqrt(float(np.sum(s[rank:] ** 2))))


def _truncate_factors(a: np.ndarray, b: np.ndarray, rank: int) -> RankFactors:
    """Best rank-``rank`` approximation of ``b @ a`` through QR of each factor: ``B A = Q_b (R_b R_aᵀ) Q_aᵀ``."""
    qb, rb = np.linalg.qr(b.astype(np.float64))  # (out, k), (k, r0)
    qa, ra = np.linalg.qr(a.T.astype(np.float64))  # (in, k'), (k', r0)
    u, s, vt = np.linalg.svd(rb @ ra.T, full_matrices=False)  # core (k, k')
    return _split(qb @ u[:, :rank], s, vt[:rank] @ qa.T, rank)
