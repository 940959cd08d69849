"""Task arithmetic: ``m = Σᵢ wᵢ·vᵢ`` (÷ Σwᵢ with ``normalize``), times ``lambda`` — today's ``rvec apply`` sum.

Ilharco et al., *Editing Models with Task Arithmetic*, https://arxiv.org/abs/2212.04089.
mergekit defaults: ``normalize: false``, ``lambda: 1``.
"""

from __future__ import annotations

from rvec.vector.methods.gta import GeneralizedTaskArithmetic

TASK_ARITHMETIC = GeneralizedTaskArithmetic(
    name="task_arithmetic",
    pretty_name="Task Arithmetic",
    reference_url="https://arxiv.org/abs/2212.04089",
    sparsification=None,
    consensus=False,
    default_normalize=False,
    default_rescale=False,
)
