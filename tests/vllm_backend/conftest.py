"""Fixtures of the vLLM group: engines started once per session (each start imports vLLM and takes
20–60 s on a 2-core CPU), the HF backends they are compared with, and the group's CI rule: without
vLLM these tests skip, unless ``CI`` is set, where they fail (``.ci/run`` runs them in the
environment ``.ci/vllm-env`` creates)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from vllm_helpers import ENGINE, LiveEngine, TinyFamily, build_tiny, prompt_logprobs, tokens_of


@pytest.fixture(scope="session", autouse=True)
def _vllm_installed() -> None:
    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("CI"):
            pytest.fail(
                "vllm is not installed but CI is set: run this group in the environment .ci/vllm-env creates"
            )
        pytest.skip(
            "vllm is not installed; create its environment with .ci/vllm-env (README: vLLM (optional))"
        )


# ---------------------------------------------------------------------------------- tiny models
@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> TinyFamily:
    return build_tiny(tmp_path_factory.mktemp("vllm-llama"), "llama", tied=True)


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> TinyFamily:
    return build_tiny(tmp_path_factory.mktemp("vllm-qwen"), "qwen2", tied=False)


def _engine(family: TinyFamily) -> Iterator[LiveEngine]:
    from rvec.model.vllm.settings import VLLMSettings
    from rvec.model.vllm.state import VllmModelState

    state = VllmModelState.load(family.target, VLLMSettings(max_model_len=8192, **ENGINE))
    fresh = prompt_logprobs(state.llm, tokens_of(state.tokenizer))  # before any α
    state.attach([family.vector])
    try:
        yield LiveEngine(state, family, fresh)
    finally:
        state.close()


@pytest.fixture(scope="session")
def llama_engine(tiny_llama: TinyFamily) -> Iterator[LiveEngine]:
    """The tiny Llama (tied, head_dim 64) in a vLLM engine, ``v`` attached at α = 0."""
    yield from _engine(tiny_llama)


@pytest.fixture(scope="session")
def qwen_engine(tiny_qwen: TinyFamily) -> Iterator[LiveEngine]:
    """The tiny Qwen2 (untied, q/k/v biases, head_dim 64) in a vLLM engine, ``v`` attached at α = 0."""
    yield from _engine(tiny_qwen)


@pytest.fixture
def llama_live(llama_engine: LiveEngine) -> Iterator[LiveEngine]:
    """The Llama engine for one test, put back to ``v`` attached at α = 0 afterwards."""
    yield llama_engine
    llama_engine.reset()


@pytest.fixture
def qwen_live(qwen_engine: LiveEngine) -> Iterator[LiveEngine]:
    yield qwen_engine
    qwen_engine.reset()


@pytest.fixture(scope="session")
def llama_hf(tiny_llama: TinyFamily):
    return _hf(tiny_llama.target)


@pytest.fixture(scope="session")
def qwen_hf(tiny_qwen: TinyFamily):
    return _hf(tiny_qwen.target)


def _hf(folder: Path):
    from rvec.model.hf.backend import HFBackend
    from rvec.model.hf.loading import load_causal_lm

    model, tokenizer, fingerprint = load_causal_lm(folder)
    return HFBackend(model, tokenizer, fingerprint=fingerprint, batch_size=8, progress=False)


# ------------------------------------------------------------------------------------- SmolLM2
@pytest.fixture(scope="session")
def smol_engine(smollm2_gguf: Path) -> Iterator:
    """SmolLM2-135M-Instruct (dequantized from the GGUF to float32) in a vLLM engine."""
    from rvec.model.vllm.settings import VLLMSettings
    from rvec.model.vllm.state import VllmModelState

    state = VllmModelState.load(smollm2_gguf, VLLMSettings(max_model_len=4096, **ENGINE))
    try:
        yield state
    finally:
        state.close()


@pytest.fixture(scope="session")
def smol_hf(smollm2):
    from rvec.model.hf.backend import HFBackend

    model, tokenizer, fingerprint = smollm2
    return HFBackend(model, tokenizer, fingerprint=fingerprint, batch_size=8, progress=False)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A local Ray runtime for the replica tests, shut down after them."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
