"""Model Breadcrumbs with TIES's sign consensus.

Davari & Belilovsky, https://arxiv.org/abs/2312.06795, with Yadav et al.'s sign election. mergekit
defaults: ``density: 1``, ``gamma: 0.01``, ``rescale: false``, ``normalize: false``, ``lambda: 1``.
"""

from __future__ import annotations

from rvec.vector.methods.gta import GeneralizedTaskArithmetic

BREADCRUMBS_TIES = GeneralizedTaskArithmetic(
    name="breadcrumbs_ties",
    pretty_name="Model Breadcrumbs with TIES",
    reference_url="https://arxiv.org/abs/2312.06795",
    sparsification="magnitude_outliers",
    consensus=True,
    default_normalize=False,
    default_rescale=False,
)
