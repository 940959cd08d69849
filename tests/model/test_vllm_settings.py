"""The ``vllm`` registry entry without vLLM: its settings validate at the edge (CLI flags, a study's
``backend:``), its cache identity keeps its cells apart from HF's, and choosing ``hf`` never imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rvec.cli import app
from rvec.errors import InvalidArgumentError
from rvec.model.registry import BACKENDS, get_backend, parse_backend_settings
from rvec.model.vllm.settings import VLLMSettings
from rvec.study.config import parse_study


def study(tmp_path: Path, backend: dict) -> dict:
    (tmp_path / "vec").mkdir(exist_ok=True)
    return {
        "name": "s",
        "vector": str(tmp_path / "vec"),
        "targets": ["m/"],
        "tasks": ["gsm8k"],
        "backend": backend,
    }


def test_the_registry_selects_vllm_and_parses_its_engine_options() -> None:
    assert list(BACKENDS) == ["hf", "vllm"]
    settings = parse_backend_settings({"name": "vllm", "tensor_parallel": 2, "gpu_memory": 0.85})
    assert isinstance(settings, VLLMSettings)
    options = settings.engine_options()
    assert (options.tensor_parallel_size, options.gpu_memory_utilization, options.resolved_dtype()) == (
        2,
        0.85,
        "float32",
    )


def test_engine_flags_are_refused_by_hf_and_bad_values_by_vllm() -> None:
    with pytest.raises(InvalidArgumentError, match="tensor_parallel: not a setting of the hf backend"):
        parse_backend_settings({"name": "hf", "tensor_parallel": 2})
    with pytest.raises(InvalidArgumentError, match="backend vllm: gpu_memory"):
        parse_backend_settings({"name": "vllm", "gpu_memory": 1.5})
    result = CliRunner().invoke(app, ["eval", "m/", "--tasks", "gsm8k", "--tensor-parallel", "2"])
    assert result.exit_code == 1
    assert "tensor_parallel: not a setting of the hf backend" in result.output


def test_vllm_cells_never_share_a_key_with_hf_and_memory_settings_do_not_enter_it() -> None:
    spec = get_backend("vllm")
    key = spec.cache_identity(VLLMSettings())
    assert key["backend"] == "vllm" and key["dtype"] == "float32"
    assert key != get_backend("hf").cache_identity(parse_backend_settings({"name": "hf"}))
    same = VLLMSettings(gpu_memory=0.5, kv_cache_gib=8, replicas=4, ray_address="auto", batch_size=3)
    assert spec.cache_identity(same) == key
    assert spec.cache_identity(VLLMSettings(tensor_parallel=2)) != key
    assert spec.cache_identity(VLLMSettings(max_model_len=4096)) != key


def test_a_study_backend_section_takes_the_vllm_settings(tmp_path: Path) -> None:
    raw = study(tmp_path, {"name": "vllm", "replicas": 2})
    assert parse_study(raw).backend == VLLMSettings(replicas=2)
    bad = {**raw, "backend": {"name": "vllm", "replicas": 0, "batch_sise": 4}}
    with pytest.raises(Exception, match=r"backend\.replicas") as err:
        parse_study(bad)
    assert "backend.batch_sise" in str(err.value)


def test_rvec_run_flags_replace_the_study_backend(tmp_path: Path) -> None:
    from rvec.study.runner import with_overrides

    config = parse_study(study(tmp_path, {"dtype": "float32"}))
    vllm = with_overrides(config, backend="vllm", engine={"replicas": 2, "ray_address": None})
    assert vllm.backend == VLLMSettings(replicas=2)
    assert with_overrides(config, engine={"replicas": None}).backend == config.backend
    with pytest.raises(InvalidArgumentError, match="replicas: not a setting of the hf backend"):
        with_overrides(config, engine={"replicas": 2})


def test_choosing_hf_imports_no_vllm() -> None:
    code = (
        "import sys; from rvec.model.registry import get_backend, parse_backend_settings;"
        "s = parse_backend_settings({'name': 'hf'}); get_backend('hf').cache_identity(s);"
        "get_backend('vllm').cache_identity(parse_backend_settings({'name': 'vllm'}));"
        "print('vllm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
