"""study.yaml validation: every problem reported at once, with exact texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from rvec.errors import ConfigError
from rvec.model.hf.settings import HFSettings
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
        "donors / vector / random_in_place_of_v: give a source of v",
    ]
    assert str(info.value).startswith("s.yaml: 6 problems; alphas: Input should be a valid list; ")


def test_type_errors_and_semantic_errors_come_in_one_report(tmp_path: Path) -> None:
    """One run lists every problem: non-finite α (YAML's .nan/.inf), a bad type, an unknown task,
    HumanEval without allow_code_execution, a missing local target."""
    study = tmp_path / "s.yaml"
    study.write_text(
        "name: x\n"
        "targets: [./no-such-model]\n"
        "random_in_place_of_v: .nan\n"
        "alphas: [1.0, .nan]\n"
        "controls: {alpha_sweep: [.inf, -.inf]}\n"
        "tasks: [gsm9k, humaneval]\n"
        "limit: 0\n"
        "backend: {dtype: int8}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_study(study)
    errors = info.value.errors
    assert errors[:7] == [
        "random_in_place_of_v: Input should be a finite number",
        "alphas.1: Input should be a finite number",
        "controls.alpha_sweep.0: Input should be a finite number",
        "controls.alpha_sweep.1: Input should be a finite number",
        "limit: Input should be greater than or equal to 1",
        "backend.dtype: dtype 'int8': expected float32, bfloat16 or float16 (or fp32, bf16, fp16)",
        "targets: ./no-such-model does not exist",
    ]
    assert errors[7].startswith("tasks: unknown task 'gsm9k'; valid: ")
    assert errors[8:] == [
        "tasks: humaneval runs model-written code; set allow_code_execution: true to evaluate it"
    ]
    assert str(info.value).startswith(f"{study}: 9 problems; ")


def test_backend_dtype_takes_the_same_aliases_as_the_commands() -> None:
    raw = {"name": "x", "targets": ["m"], "tasks": ["gsm8k"], "random_in_place_of_v": 0.01}
    assert parse_study({**raw, "backend": {"dtype": "bf16"}}).backend.dtype == "bfloat16"
    assert parse_study({**raw, "backend": {"dtype": "FP32"}}).backend.dtype == "float32"
    assert parse_study(raw).backend.dtype == "auto"


def test_vector_is_opened_where_it_was_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative ``vector:`` is read from the study file's folder, whatever the working folder."""
    (tmp_path / "studies" / "vec").mkdir(parents=True)
    study = tmp_path / "studies" / "s.yaml"
    study.write_text("name: x\nvector: vec\ntargets: [m]\ntasks: [gsm8k]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_study(study).vector == str((tmp_path / "studies" / "vec").resolve())


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
    raw = {
        "name": "x",
        "targets": ["m"],
        "tasks": ["gsm8k"],
        "vector": ".",
        "limit": 0,
        "backend": {"name": "vlm"},
    }
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
    assert info.value.errors == [
        "backend.dtype: dtype 'fp8': expected float32, bfloat16 or float16 (or fp32, bf16, fp16)"
    ]


def test_a_source_of_v_is_required() -> None:
    with pytest.raises(ConfigError) as info:
        parse_study({"name": "x", "targets": ["m"], "tasks": ["gsm8k"]})
    assert info.value.errors == ["donors / vector / random_in_place_of_v: give a source of v"]


def test_yaml_errors_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_study(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_study(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", ["paper-qwen2.5-1.5b.yaml", "paper-qwen2.5-7b.yaml"])
def test_shipped_studies_validate(name: str) -> None:
    config = load_study(STUDIES / name)
    assert config.conditions == ["plain", "think"]
    assert {"gsm8k", "humaneval", "sciq"} <= set(config.tasks)


@pytest.mark.parametrize("name", ["demo.yaml", "demo-full.yaml"])
def test_the_demo_is_built_on_the_shipped_pair(name: str) -> None:
    config = load_study(STUDIES / name)
    pairs = STUDIES.parent / "pairs"
    assert config.vector == str((pairs / "smollm2-135m-arith" / "vector").resolve())
    assert config.donors is not None and config.controls.donor_rows
    assert config.models[config.donors.rl].base == config.donors.sft  # θ_RL rebuilt as θ_SFT + v
    assert config.models[config.donors.rl].add == [config.vector]
    for target in config.targets:  # neither donor
        assert target not in (config.donors.sft, config.donors.rl)
    assert config.limit_for("arith") >= 150 and {"gsm8k", "humaneval", "sciq"} <= set(config.tasks)


def test_the_combine_demo_combines_the_two_shipped_rl_vectors_on_the_demos_target() -> None:
    from rvec.vector.artifact import read_vector

    config = load_study(STUDIES / "combine-demo.yaml")
    demo = load_study(STUDIES / "demo.yaml")
    pairs = STUDIES.parent / "pairs"
    assert config.vector == demo.vector
    assert config.vectors == {"v1": str((pairs / "smollm2-135m-arith-seed1-rl" / "vector").resolve())}
    assert config.targets == ["sibling-sft"] and config.models["sibling-sft"] == demo.models["sibling-sft"]
    assert {c.method for c in config.combine.values()} == {"task_arithmetic", "ties", "dare_linear", "ram"}
    assert all(c.vectors == ["v", "v1"] for c in config.combine.values())
    v1 = read_vector(config.vectors["v1"])  # verified against its manifest
    assert v1.manifest["compression"]["rank"] == 2  # shipped at rank 2 to keep the tree under 58 MB
    assert sum(f.stat().st_size for f in v1.path.iterdir()) < 6_000_000  # the bound for v₁
