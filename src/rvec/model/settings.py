"""Backend settings: one frozen pydantic model per backend, parsed once at the edge.

``rvec eval`` flags (``--backend``, ``--device``, ``--dtype``, ``--batch-size``) and a study's
``backend:`` section become the same object through :func:`rvec.model.registry.parse_backend_settings`
(or the study's validation). Downstream code takes the typed object, never the raw flags. The
settings are recorded in results (the language model's ``describe()``); what changes a response
also enters cache keys (see :meth:`rvec.model.state.BackendSpec.cache_identity`).

Example:
    >>> HFSettings(dtype="float32", batch_size=8).model_dump()
    {'name': 'hf', 'device': 'auto', 'dtype': 'float32', 'batch_size': 8}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rvec.checkpoint.dtypes import FLOAT_NAMES

__all__ = ["BackendSettings", "HFSettings"]


class BackendSettings(BaseModel):
    """What every backend takes; each backend subclasses it with ``name: Literal[...]`` and its own
    engine options (a vLLM backend would add tensor parallelism, GPU memory fraction, …)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    """The registry name of the backend (``hf``)."""
    device: str = "auto"
    """``auto``: cuda when available, else cpu; or a torch device string (``cuda:1``)."""
    dtype: str = "auto"
    """``auto`` (the backend's default for the device), ``float32``, ``bfloat16``, ``float16``."""
    batch_size: int = Field(16, ge=1)
    """Requests per forward batch."""

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value != "auto" and value not in FLOAT_NAMES:
            raise ValueError(f"unknown dtype '{value}'; use auto, {', '.join(FLOAT_NAMES)}")
        return value


class HFSettings(BackendSettings):
    """The embedded ``transformers`` backend: float32 on CPU, bfloat16 on GPU by default
    (:func:`rvec.model.loading.default_dtype`)."""

    name: Literal["hf"] = "hf"
