"""The vLLM backend's settings (``--backend vllm`` flags, a study's ``backend: {name: vllm}``); no vLLM import.

Example:
    >>> VLLMSettings(tensor_parallel=2, gpu_memory=0.85).engine_options().tensor_parallel_size
    2
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from rvec.model.settings import BackendSettings

if TYPE_CHECKING:
    from rvec.model.vllm.engine import VllmEngineOptions

__all__ = ["VLLMSettings"]


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
        """The options :func:`rvec.model.vllm.engine.start_engine` takes."""
        from rvec.model.vllm.engine import VllmEngineOptions

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
