"""DARE with TIES's sign consensus: random drop and rescale per vector, then elect a sign per entry.

Yu et al., https://arxiv.org/abs/2311.03099 (DARE) with Yadav et al.'s sign election. mergekit
defaults: ``density: 1``, ``rescale: true``, ``normalize: false``, ``lambda: 1``.
"""

from __future__ import annotations

from rvec.vector.methods.gta import GeneralizedTaskArithmetic

DARE_TIES = GeneralizedTaskArithmetic(
    name="dare_ties",
    pretty_name="DARE TIES",
    reference_url="https://arxiv.org/abs/2311.03099",
    sparsification="random",
    consensus=True,
    default_normalize=False,
    default_rescale=True,
)
