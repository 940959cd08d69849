"""The ``vllm`` registry entry: how the backend loads, without importing vLLM.

:class:`VLLMSpec` is the entry :mod:`rvec.model.registry` holds; its settings are
:class:`~rvec.model.vllm.settings.VLLMSettings`. Only :meth:`VLLMSpec.load` imports the engine
(:mod:`rvec.model.vllm.state`), so choosing ``hf`` never imports vLLM and validating a study needs
neither vLLM nor torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rvec.model.settings import BackendSettings, checked_settings
from rvec.model.vllm.settings import VLLMSettings

if TYPE_CHECKING:
    from rvec.model.state import ModelState

__all__ = ["VLLMSpec"]


class VLLMSpec:
    """The vLLM backend (:class:`~rvec.model.vllm.state.VllmModelState`), an optional extra."""

    name = "vllm"
    reference_url = "https://docs.vllm.ai/en/v0.32.0/"
    settings_type = VLLMSettings

    def load(self, source: str | Path, settings: BackendSettings) -> ModelState:
        """Start an engine on ``source`` (see :meth:`VllmModelState.load`).

        Raises:
            BackendUnavailableError: vllm is not installed.
        """
        from rvec.model.vllm.state import VllmModelState  # vllm: only when this backend runs

        return VllmModelState.load(source, checked_settings(settings, VLLMSettings))

    def cache_identity(self, settings: BackendSettings) -> dict[str, Any]:
        """``{"backend": "vllm", "dtype": …, <engine options that change a response>}``; the memory
        settings, replicas and the Ray address do not change a response and are left out."""
        settings = checked_settings(settings, VLLMSettings)
        options = settings.engine_options()
        return {
            "backend": "vllm",
            "dtype": options.resolved_dtype(),
            "tensor_parallel": settings.tensor_parallel,
            "max_model_len": settings.max_model_len,
            "attention_backend": settings.attention_backend,
            "batch_invariant": settings.batch_invariant,
            "enforce_eager": settings.enforce_eager,
            "max_num_seqs": settings.max_num_seqs,
        }
