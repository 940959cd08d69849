"""The HF backend's settings (``--backend hf``, a study's ``backend: {name: hf}``).

Example:
    >>> HFSettings(dtype="float32", batch_size=8).model_dump()
    {'name': 'hf', 'device': 'auto', 'dtype': 'float32', 'batch_size': 8}
"""

from __future__ import annotations

from typing import Literal

from rvec.model.settings import BackendSettings

__all__ = ["HFSettings"]


class HFSettings(BackendSettings):
    """The embedded ``transformers`` backend: float32 on CPU, bfloat16 on GPU by default
    (:func:`rvec.model.hf.loading.default_dtype`)."""

    name: Literal["hf"] = "hf"
