"""The pair's vectors: ``v = θ_RL − θ_SFT`` (and ``θ_SFT − θ_init`` for a LoRA SFT).

When the phase was LoRA the delta is exactly low rank, ``ΔW = (α/r)·B @ A`` for every adapted
matrix: it is stored from the adapter's own factors (small and exact) and checked, tensor by
tensor, against the dense difference of the two merged folders — they may differ only by the
float32 rounding of the merge. A full fine-tune gives a dense vector through ``rvec extract``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rvec.checkpoint.source import resolve
from rvec.errors import TrainingError
from rvec.pair.phases import Factors

__all__ = ["check_factors", "write_pair_vector"]

logger = logging.getLogger(__name__)

# The merge rounds W + ΔW to float32 once: |merged − W − ΔW| ≤ ulp(|W| + |ΔW|)/2. Allow a few ulps of
# the largest weight of the tensor, and say by how much the worst tensor came within it.
_ULPS = 4


def check_factors(base: Path, tuned: Path, factors: Factors) -> float:
    """The largest ``|(tuned − base) − B @ A|`` over every tensor, in units of the allowed rounding.

    Raises:
        TrainingError: a tensor differs by more than float32 rounding, or a tensor that changed has no
            factors (the merge touched something the adapter does not describe).
    """
    a_ckpt, b_ckpt = resolve(base), resolve(tuned)
    worst = 0.0
    for info in b_ckpt.index:
        if not info.dtype.is_floating_point:
            continue
        name = info.name
        tuned_values = b_ckpt.read(name)
        delta = tuned_values.astype(np.float32) - a_ckpt.read(name).astype(np.float32)
        if name in factors:
            a, b = factors[name]
            expected = (b @ a).reshape(delta.shape)
        else:
            expected = np.zeros_like(delta)
        scale = float(np.max(np.abs(tuned_values))) or 1.0
        allowed = _ULPS * float(np.spacing(np.float32(scale)))
        error = float(np.max(np.abs(delta - expected))) if delta.size else 0.0
        if error > allowed:
            raise TrainingError(
                f"{name}: merged delta differs from the adapter's factors by {error:.3g} (> {allowed:.3g}, "
                "float32 rounding); the merge is not the adapter's — report this with the pair's rvec.json"
            )
        worst = max(worst, error / allowed)
    return worst


def write_pair_vector(base: Path, tuned: Path, out: Path, *, factors: Factors | None, label: str) -> Path:
    """Write ``tuned − base`` to ``out`` as a vector folder: factored (exact, small) from the
    adapter's factors when the phase was LoRA, after checking them against the merged folders; else
    dense through ``rvec extract``."""
    from rvec.vector.extract import extract

    if factors is None:
        extract(str(base), str(tuned), out, overwrite=False)
        return out
    from rvec.vector.factored import write_factored_vector

    worst = check_factors(base, tuned, factors)
    logger.info(
        "%s: adapter factors match the merged folders (worst %.2f of the rounding bound)", label, worst
    )
    write_factored_vector(
        out,
        factors=factors,  # (A, scaling·B): the scaling is already folded in
        base=base,
        sources={"base": str(base), "tuned": str(tuned)},
        formula=f"{label} (LoRA factors, float32)",
        extra={"check": {"merged_vs_factors_worst_of_rounding_bound": worst}},
    )
    return out
