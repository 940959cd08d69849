"""Model Breadcrumbs: drop each vector's largest-``|v|`` outliers (``gamma``) and its smallest entries,
keeping ``density``; weighted sum.

Davari & Belilovsky, *Model Breadcrumbs: Scaling Multi-Task Model Merging with Sparse Masks*,
https://arxiv.org/abs/2312.06795. mergekit defaults: ``density: 1``, ``gamma: 0.01``,
``rescale: false``, ``normalize: false``, ``lambda: 1``. Both cuts are exact and streamed
(:mod:`.select`, sharing their passes).
"""

from __future__ import annotations

from rvec.vector.methods.gta import GeneralizedTaskArithmetic

BREADCRUMBS = GeneralizedTaskArithmetic(
    name="breadcrumbs",
    pretty_name="Model Breadcrumbs",
    reference_url="https://arxiv.org/abs/2312.06795",
    sparsification="magnitude_outliers",
    consensus=False,
    default_normalize=False,
    default_rescale=False,
)
