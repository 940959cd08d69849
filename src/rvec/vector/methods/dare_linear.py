"""DARE, summed: drop a random ``1 − density`` of each vector's entries, rescale, weighted sum.

Yu et al., *Language Models are Super Mario: Absorbing Abilities from Homologous Models as a Free
Lunch*, https://arxiv.org/abs/2311.03099. mergekit defaults: ``density: 1``, ``rescale: true``
(L1-norm matching, see :mod:`.sparsify`), ``normalize: false``, ``lambda: 1``. The mask is seeded
and counter-based: the same for a seed whatever the block size.
"""

from __future__ import annotations

from rvec.vector.methods.gta import GeneralizedTaskArithmetic

DARE_LINEAR = GeneralizedTaskArithmetic(
    name="dare_linear",
    pretty_name="Linear DARE",
    reference_url="https://arxiv.org/abs/2311.03099",
    sparsification="random",
    consensus=False,
    default_normalize=False,
    default_rescale=True,
)
