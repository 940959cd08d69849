"""TIES-merging: trim each vector to its ``density`` largest ``|v|``, elect a sign per entry, average
the agreeing entries (disjoint mean).

Yadav et al., *TIES-Merging: Resolving Interference When Merging Models*,
https://arxiv.org/abs/2306.01708. mergekit defaults: ``density: 1``, ``normalize: true`` (the
disjoint mean), ``rescale: false``, ``lambda: 1``. The trim's cut is exact and streamed
(:mod:`.select`: three passes over each vector's tensor, one block in memory).
"""

from __future__ import annotations

from rvec.vector.methods.gta import GeneralizedTaskArithmetic

TIES = GeneralizedTaskArithmetic(
    name="ties",
    pretty_name="TIES",
    reference_url="https://arxiv.org/abs/2306.01708",
    sparsification="magnitude",
    consensus=True,
    default_normalize=True,
    default_rescale=False,
)
