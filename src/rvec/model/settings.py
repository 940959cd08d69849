"""Backend settings: one frozen pydantic model per backend, parsed once at the edge.

``rvec eval`` flags (``--backend``, ``--device``, ``--dtype``, ``--batch-size``) and a study's
``backend:`` section become the same object through :func:`rvec.model.registry.parse_backend_settings`
(or the study's validation). Each engine subclasses :class:`BackendSettings` in its own package
(:class:`rvec.model.hf.settings.HFSettings`, :class:`rvec.model.vllm.settings.VLLMSettings`). Downstream code takes the typed object, never the raw flags. The
settings are recorded in results (the language model's ``describe()``); what changes a response
also enters cache keys (see :meth:`rvec.model.state.BackendSpec.cache_identity`).

Example:
    >>> from rvec.model.hf.settings import HFSettings
    >>> HFSettings(dtype="float32", batch_size=8).model_dump()
    {'name': 'hf', 'device': 'auto', 'dtype': 'float32', 'batch_size': 8}
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rvec.checkpoint.dtypes import parse_output_dtype
from rvec.errors import InvalidArgumentError, RvecError

__all__ = ["BackendSettings", "checked_settings"]


class BackendSettings(BaseModel):
    """What every backend takes; each backend subclasses it with ``name: Literal[...]`` and its own
    engine options (vLLM adds tensor parallelism, GPU memory fraction, …)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    """The registry name of the backend (``hf``)."""
    device: str = "auto"
    """``auto``: cuda when available, else cpu; or a torch device string (``cuda:1``)."""
    dtype: str = "auto"
    """``auto`` (the backend's default for the device), ``float32``, ``bfloat16``, ``float16`` or an alias."""
    batch_size: int = Field(16, ge=1)
    """Requests per forward batch."""

    @field_validator("dtype")
    @classmethod
    def _canonical_dtype(cls, value: str) -> str:
        """A name or alias (``bf16``, ``fp32``…) kept as its canonical name, so equal settings compare
        (and cache) equal."""
        try:
            dtype = parse_output_dtype(value)
        except RvecError as err:
            raise ValueError(str(err)) from None
        return "auto" if dtype is None else dtype.torch_name


SettingsT = TypeVar("SettingsT", bound=BackendSettings)


def checked_settings(settings: BackendSettings, expected: type[SettingsT]) -> SettingsT:
    """``settings`` when they are ``expected``'s, for a backend's ``load``.

    Raises:
        InvalidArgumentError: settings of another backend.
    """
    if not isinstance(settings, expected):
        raise InvalidArgumentError(
            f"settings for backend {settings.name!r} given to {expected.__name__}; "
            "select the backend with rvec.model.registry.get_backend(settings.name)"
        )
    return settings
