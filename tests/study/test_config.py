"""study.yaml validation: every problem reported at once, with exact texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from rvec.errors import ConfigError
from rvec.model.settings import HFSettings
from rvec.study.config import load_study, parse_study

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def test_several_errors_are_reported_together() -> None:
    raw = {
        "name": "x",
        "targets": ["some/model"],
        "tasks": ["gsm8k"],
        "alphas": "one",
        "limit": 0,
        "colour": "red",
        "backend": {"batch_size": 0, "gpu": True},
    }
    with pytest.raises(ConfigError) as info:
        parse_study(raw, source="s.yaml")
    assert info.value.errors == [
        "alphas: Input should be a valid list",
        "limit: Input should be greater than or equal to 1",
        "backend.batch_size: Input should be greater than or equal to 1",
        "backend.gpu: unknown key",
        "colour: unknown key",
    ]
    assert str(info.value).startswith("s.yaml: 5 problems; alphas: Input should be a valid list; ")


def test_semantic_errors_are_collected_after_types_pass() -> None:
    raw = {
        "name": "x",
        "targets": ["m"],
        "tasks": ["gsm8k", "gsm9k"],
        "adversarial": ["gsm-plus:nonsense"],
        "conditions": ["plain", "shout"],
        "perturbations": ["typo:2", "wobble"],
        "alphas": [1.0, 1.0],
        "controls": {"rl_donor_think": True},
        "vector": "/no/such/vector",
    }
    with pytest.raises(ConfigError) as info:
        parse_study(raw)
    errors = info.value.errors
    assert "vector: /no/such/vector is not a folder" in errors
    assert "controls.rl_donor_think: needs donors (the RL donor is the model evaluated)" in errors
    assert "conditions: 'shout' is not a condition of preset 'paper' (plain, think)" in errors
    assert any(e.startswith("tasks: unknown task 'gsm9k'; valid: ") for e in errors)
    assert any(e.startswith("adversarial: unknown task 'gsm-plus:nonsense'") for e in errors)
    assert "perturbations: 'typo:2': typo rate 2.0 is outside (0, 1]; e.g. typo:0.05" in errors
    assert any(e.startswith("perturbations: ") and "wobble" in e for e in errors)
    assert "alphas: values repeat" in errors
    assert len(errors) == 8


def test_an_unknown_backend_is_one_of_the_problems_listed() -> None:
    raw = {"name": "x", "targets": ["m"], "tasks": ["gsm8k"], "limit": 0, "backend": {"name": "vlm"}}
    with pytest.raises(ConfigError) as info:
        parse_study(raw, source="s.yaml")
    assert info.value.errors == [
        "limit: Input should be greater than or equal to 1",
        "backend.name: unknown backend 'vlm'; valid: hf, vllm",
    ]


def test_backend_settings_are_the_named_backends() -> None:
    raw = {"name": "x", "targets": ["m"], "tasks": ["gsm8k"], "vector": "."}
    config = parse_study({**raw, "backend": {"name": "hf", "dtype": "float32"}})
    assert config.backend == HFSettings(dtype="float32")
    assert parse_study(raw).backend == HFSettings()
    with pytest.raises(ConfigError) as info:
        parse_study({**raw, "backend": {"dtype": "fp8"}})
    assert info.value.errors == ["backend.dtype: unknown dtype 'fp8'; use auto, float32, bfloat16, float16"]


def test_exactly_one_source_of_v() -> None:
    with pytest.raises(ConfigError) as info:
        parse_study({"name": "x", "targets": ["m"], "tasks": ["gsm8k"]})
    assert info.value.errors == ["donors / vector / random_in_place_of_v: give exactly one source of v"]


def test_yaml_errors_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_study(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_study(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", ["demo.yaml", "paper-qwen2.5-1.5b.yaml", "paper-qwen2.5-7b.yaml"])
def test_shipped_studies_validate(name: str) -> None:
    config = load_study(STUDIES / name)
    assert config.conditions == ["plain", "think"]
    assert {"gsm8k", "humaneval", "sciq"} <= set(config.tasks)
