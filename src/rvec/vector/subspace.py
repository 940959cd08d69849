"""The linear algebra of ``rvec anatomy``: the singular spectrum of one matrix of a vector and the
overlap of its principal subspaces with a reference matrix's (the target's θ), one matrix at a time.

Everything works on the *tall orientation* ``M`` (p × q, p ≥ q) of a matrix ``X``: ``X`` itself, or
``Xᵀ`` when ``X`` has fewer rows than columns, so the Gram matrices below are q × q, the shorter side.

Two routes, one result:

* **streamed** (dense and sparse tensors, any block reader): one pass over row chunks of ``M``
  accumulates the float64 Gram matrices ``G_v = M_vᵀM_v``, ``G_θ = M_θᵀM_θ`` and the cross product
  ``C = M_vᵀM_θ``. ``eigvalsh(G_v)`` gives every σ² of v; the top-k eigenvectors of ``G_v`` and
  ``G_θ`` (LAPACK ``syevr`` on an index subset) give the right singular vectors; the left ones never
  need forming: ``U_vᵀU_θ = Σ_v⁻¹ V_vᵀ C V_θ Σ_θ⁻¹``. Memory: three q × q float64 matrices and one
  chunk, whatever p is (the 151,936-row embedding of a 0.5B model needs 19 MB). Why not LAPACK's
  SVD of the whole matrix: it needs every row in memory at once, in float64 (three copies of a
  545 MB embedding), and it cost 2.3 s for a 4864 × 896 matrix here against 0.15 s for its Gram
  matrix and 0.1 s for the eigenvalues; and why not a randomized range finder for θ: it needs
  2q + 2 passes over θ for q power iterations where the Gram matrix needs one, measured no faster
  here (0.21 s for k = 16, q = 2 on the same matrix), and it is approximate where the Gram route is
  exact up to float64 rounding.
* **factored** (``v = B @ A``): QR of each factor and an SVD of the r × r core,
  ``B A = Q_B (R_B R_Aᵀ) Q_Aᵀ`` — exact, nothing multiplied out; the pass over θ accumulates
  ``U_v,kᵀ M_θ`` instead of ``C``.

Accuracy of the Gram route: eigenvalues carry an absolute error of about ``q·ε₆₄·σ₁²``, so a
singular value is off by at most ``√(q·ε₆₄)·σ₁`` (1e-6·σ₁ at q = 4864) and a subspace angle by
about ``ε₆₄·σ₁²/(σ_k² − σ_{k+1}²)``. Both are far below :func:`noise_floor`, under which singular
values count as 0 on either route, so the three encodings of one vector agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FLOAT32_EPS = float(np.finfo(np.float32).eps)  # 2⁻²³
ENERGY_SHARE = 0.9


def noise_floor(top: float, shape: tuple[int, int]) -> float:
    """``σ₁·max(m, n)·ε₃₂``: singular values at or below it count as 0.

    numpy.linalg.matrix_rank's default tolerance for float32 data. A vector is stored in float32,
    and rounding the entries of a rank-r matrix to float32 alone adds singular values up to about
    ``2⁻²⁴·√r·σ₁``; counting them would make a dense copy of a factored tensor look full-rank.
    """
    return top * max(shape) * FLOAT32_EPS


def clean(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Singular values sorted descending (float64), those at or below :func:`noise_floor` set to 0."""
    sigma = np.sort(np.asarray(values, np.float64))[::-1].copy()
    if sigma.size and sigma[0] > 0:
        sigma[sigma <= noise_floor(float(sigma[0]), shape)] = 0.0
    return np.maximum(sigma, 0.0)


def effective_rank(sigma: np.ndarray) -> float:
    """``exp(−Σ pᵢ ln pᵢ)`` with ``pᵢ = σᵢ/Σⱼ σⱼ`` (Roy & Vetterli 2007); 0 for a zero matrix.

    Between 1 (one direction) and the number of non-zero σ (all equal).
    """
    total = float(np.sum(sigma))
    if total <= 0:
        return 0.0
    p = sigma[sigma > 0] / total
    return math.exp(-float(np.sum(p * np.log(p))))


def energy_rank(sigma: np.ndarray, share: float = ENERGY_SHARE) -> int:
    """The smallest k with ``Σ_{i≤k} σᵢ² ≥ share·Σ σᵢ²`` (σ descending); 0 for a zero matrix."""
    energy = np.cumsum(np.asarray(sigma, np.float64) ** 2)
    if energy.size == 0 or energy[-1] <= 0:
        return 0
    return int(np.searchsorted(energy, share * energy[-1], side="left")) + 1


@dataclass(frozen=True)
class Decomposition:
    """Spectrum and top singular vectors of one matrix in its tall orientation (p × q).

    ``sigma`` holds every singular value (cleaned, descending); ``right`` (q × k) the top-k right
    singular vectors; ``left`` (p × k) the top-k left ones when known explicitly (factored route).
    """

    sigma: np.ndarray
    right: np.ndarray
    left: np.ndarray | None = None

    @property
    def rank(self) -> int:
        return int(np.count_nonzero(self.sigma))


def factored_decomposition(p_factor: np.ndarray, q_factor: np.ndarray, k: int) -> Decomposition:
    """``M = P Qᵀ`` (P: p × r, Q: q × r) decomposed exactly through QR of each factor.

    ``P Qᵀ = Q_P (R_P R_Qᵀ) Q_Qᵀ``; the SVD of the r × r core gives σ and, multiplied back, the
    singular vectors. Cost O((p + q)·r²).
    """
    p64, q64 = p_factor.astype(np.float64), q_factor.astype(np.float64)
    shape = (p64.shape[0], q64.shape[0])
    if p64.shape[1] == 0:
        return Decomposition(np.zeros(0), np.zeros((shape[1], 0)), np.zeros((shape[0], 0)))
    qp, rp = np.linalg.qr(p64)  # (p, r), (r, r)
    qq, rq = np.linalg.qr(q64)  # (q, r), (r, r)
    u, s, vt = np.linalg.svd(rp @ rq.T)
    sigma = clean(s, shape)
    top = min(k, sigma.size)
    return Decomposition(sigma, qq @ vt[:top].T, qp @ u[:, :top])


def _top_eigen(gram: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenvalues (descending) of a symmetric matrix and their eigenvectors."""
    q = gram.shape[0]
    k = min(k, q)
    if k == 0:
        return np.zeros(0), np.zeros((q, 0))
    import scipy.linalg  # here, not at the top: 0.25 s on every CLI command's import

    values, vectors = scipy.linalg.eigh(gram, subset_by_index=[q - k, q - 1], driver="evr")
    return values[::-1], vectors[:, ::-1]


@dataclass
class GramPass:
    """Accumulates, over row chunks of the tall orientation, what :func:`finish` needs.

    Args:
        q: columns of the tall orientation.
        vector: accumulate ``M_vᵀM_v`` (false when v is factored: its decomposition is known).
        target: accumulate ``M_θᵀM_θ`` and the cross term (an overlap is wanted).
        left_v: v's top-k left singular vectors (p × k) when known (factored): the cross term is
            then ``U_v,kᵀ M_θ`` (k × q) instead of ``M_vᵀM_θ``.
    """

    q: int
    vector: bool
    target: bool
    left_v: np.ndarray | None = None
    gv: np.ndarray = field(init=False)
    gt: np.ndarray = field(init=False)
    cross: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.gv = np.zeros((self.q, self.q) if self.vector else (0, 0))
        self.gt = np.zeros((self.q, self.q) if self.target else (0, 0))
        rows = self.q if self.left_v is None else self.left_v.shape[1]
        self.cross = np.zeros((rows, self.q) if self.target else (0, 0))

    def add(self, first: int, mv: np.ndarray | None, mt: np.ndarray | None) -> None:
        """Rows ``first … first + len(chunk)`` of M_v and M_θ (float64, (rows, q); ``None`` if not needed)."""
        if self.vector and mv is not None:
            self.gv += mv.T @ mv
        if self.target and mt is not None:
            self.gt += mt.T @ mt
            if self.left_v is None and mv is not None:
                self.cross += mv.T @ mt
            elif self.left_v is not None:
                self.cross += self.left_v[first : first + mt.shape[0]].T @ mt

    def decomposition(self, shape: tuple[int, int], k: int) -> Decomposition:
        """v's decomposition from ``M_vᵀM_v``: every σ from its eigenvalues, the top-k right vectors."""
        import scipy.linalg  # lazily, as in _top_eigen

        sigma = clean(np.sqrt(np.maximum(scipy.linalg.eigvalsh(self.gv), 0.0)), shape)
        _, right = _top_eigen(self.gv, k)
        return Decomposition(sigma, right)


@dataclass(frozen=True)
class Overlap:
    """Principal-subspace overlaps of v with θ, in the tall orientation (left = the p side)."""

    k: int
    left: float
    right: float


def finish(gram: GramPass, v: Decomposition, shape: tuple[int, int], k: int) -> Overlap | None:
    """``‖U_v,kᵀU_θ,k‖²_F/k`` and ``‖V_v,kᵀV_θ,k‖²_F/k`` with ``k = min(k, rank v, rank θ)``.

    Returns:
        The overlaps, or ``None`` when either matrix is zero (no subspace to compare).
    """
    lam, right_t = _top_eigen(gram.gt, k)
    sigma_t = np.sqrt(np.maximum(lam, 0.0))
    if sigma_t.size == 0 or sigma_t[0] <= 0:
        return None
    rank_t = int(np.count_nonzero(sigma_t > noise_floor(float(sigma_t[0]), shape)))
    used = min(k, v.rank, rank_t, v.right.shape[1])
    if used == 0:
        return None
    rv, rt = v.right[:, :used], right_t[:, :used]
    # U_v,kᵀ M_θ: accumulated directly for a factored v, else Σ_v⁻¹ V_v,kᵀ (M_vᵀ M_θ).
    projected = gram.cross[:used] if v.left is not None else (rv.T @ gram.cross) / v.sigma[:used, None]
    left = (projected @ rt) / sigma_t[None, :used]  # U_v,kᵀ U_θ,k = U_v,kᵀ M_θ V_θ,k Σ_θ⁻¹ (k × k)
    return Overlap(
        k=used,
        left=float(np.sum(left**2)) / used,
        right=float(np.sum((rv.T @ rt) ** 2)) / used,
    )
