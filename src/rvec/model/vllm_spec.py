"""The ``vllm`` registry entry: its settings and how it loads, without importing vLLM.

:class:`VLLMSettings` is what ``rvec eval --backend vllm`` flags and a study's ``backend:`` section
validate into; :class:`VLLMSpec` is the entry :mod:`rvec.model.registry` holds. Only
:meth:`VLLMSpec.load` imports the engine (:mod:`rvec.model.vllm_state`), so choosing ``hf`` never
imports vLLM and validating a study needs neither vLLM nor torch.

Example:
    >>> VLLMSettings(tensor_parallel=2, gpu_memory=0.85).engine_options().tensor_parallel_size
    2
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from rvec.errors import InvalidArgumentError
from rvec.model.settings import BackendSettings

if TYPE_CHECKING:
    from rvec.model.state import ModelState
    from rvec.model.vllm_engine import VllmEngineOptions

__all__ = ["VLLMSettings", "VLLMSpec"]


class VLLMSettings(BackendSettings):
    """The vLLM engine: float32 by default on every device, vLLM's batch-invariant mode on CUDA.

    ``batch_size`` is not used: vLLM schedules its own batches (``max_num_seqs`` bounds them).
    ``device`` is vLLM's platform (the installed build: CUDA or CPU); ``auto`` or that platform's
    name are accepted.
    """

    name: Literal["vllm"] = "vllm"
    tensor_parallel: int = Field(1, ge=1)
    """GPUs (or CPU ranks) one engine spans (``--tensor-parallel``)."""
    gpu_memory: float = Field(0.9, gt=0.0, le=1.0)
    """Fraction of each GPU the engine may take (``--gpu-memory``)."""
    max_model_len: int | None = Field(None, ge=16)
    """Prompt + generation limit (``--max-model-len``); ``None`` = the model's own."""
    attention_backend: str | None = None
    """vLLM attention backend (``FLASH_ATTN``, ``TRITON_ATTN``, ``CPU_ATTN``…); ``None`` = vLLM's choice."""
    batch_invariant: bool | None = None
    """vLLM's batch-invariant kernels; ``None`` = on where vLLM has them (CUDA, ROCm, XPU)."""
    enforce_eager: bool | None = None
    """No ``torch.compile``/graph capture (faster start, slower decoding); ``None`` = eager on CPU,
    where vLLM's compiled sampler helpers rebuild per batch shape and their C++ build fails on a
    loaded machine, compiled on GPUs."""
    kv_cache_gib: float = Field(2.0, gt=0.0)
    """KV-cache memory on CPU (on GPUs vLLM sizes it from ``gpu_memory``)."""
    max_num_seqs: int | None = Field(None, ge=1)
    """Requests decoded together; ``None`` = vLLM's default."""
    replicas: int = Field(1, ge=1)
    """Engines of ``rvec run``, each a Ray actor over ``tensor_parallel`` GPUs (``--replicas``)."""
    ray_address: str | None = None
    """Join this Ray cluster (``auto``, ``ray://head:10001``); ``None`` = a local one (``--ray-address``)."""

    def engine_options(self) -> VllmEngineOptions:
        """The options :func:`rvec.model.vllm_engine.start_engine` takes."""
        from rvec.model.vllm_engine import VllmEngineOptions

        return VllmEngineOptions(
            dtype=self.dtype,  # type: ignore[arg-type]
            tensor_parallel_size=self.tensor_parallel,
            gpu_memory_utilization=self.gpu_memory,
            max_model_len=self.max_model_len,
            attention_backend=self.attention_backend,
            batch_invariant=self.batch_invariant,
            enforce_eager=self.enforce_eager,
            kv_cache_gib=self.kv_cache_gib,
            max_num_seqs=self.max_num_seqs,
        )


class VLLMSpec:
    """The vLLM backend (:class:`~rvec.model.vllm_state.VllmModelState`), an optional extra."""

    name = "vllm"
    reference_url = "https://docs.vllm.ai/en/v0.32.0/"
    settings_type = VLLMSettings

    def load(self, source: str | Path, settings: BackendSettings) -> ModelState:
        """Start an engine on ``source`` (see :meth:`VllmModelState.load`).

        Raises:
            BackendUnavailableError: vllm is not installed.
        """
        from rvec.model.vllm_state import VllmModelState  # vllm: only when this backend runs

        return VllmModelState.load(source, _checked(settings))

    def cache_identity(self, settings: BackendSettings) -> dict[str, Any]:
        """``{"backend": "vllm", "dtype": …, <engine options that change a response>}``; the memory
        settings, replicas and the Ray address do not change a response and are left out."""
        settings = _checked(settings)
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


def _checked(settings: BackendSettings) -> VLLMSettings:
    if not isinstance(settings, VLLMSettings):
        raise InvalidArgumentError(
            f"settings for backend {settings.name!r} given to the vllm backend; "
            "select the backend with rvec.model.registry.get_backend(settings.name)"
        )
    return settings
