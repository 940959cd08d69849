"""A mergekit YAML read into an rvec job: each method's mapping, the paper's linear config, out_dtype,
and one-line refusals of what rvec does not do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from fixtures import Family
from helpers import assert_user_error, load_folder
from rvec.cli import app
from rvec.errors import ConfigError
from rvec.vector.extract import extract
from rvec.vector.mergekit import job_from_config

runner = CliRunner()


def write_yaml(folder: Path, config: dict) -> Path:
    path = folder / "merge.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_paper_linear_config_is_instruct_plus_grpo_minus_sft(qwen_untied: Family, tmp_path: Path) -> None:
    f = qwen_untied
    models = [
        {"model": str(f.target), "parameters": {"weight": 1.0}},
        {"model": str(f.rl), "parameters": {"weight": 1.0}},
        {"model": str(f.sft), "parameters": {"weight": -1.0}},
    ]
    job = job_from_config({"merge_method": "linear", "models": models, "dtype": "float32"})
    assert (job.target, job.pairs, job.alphas, job.spec) == (
        str(f.target),
        ((str(f.sft), str(f.rl)),),
        (1.0,),
        None,
    )
    fused = tmp_path / "fused"
    args = [
        "apply",
        "--sft",
        str(f.sft),
        "--rl",
        str(f.rl),
        "--to",
        str(f.target),
        "--alpha",
        "1",
        "-o",
        str(fused),
    ]
    assert runner.invoke(app, [*args, "--no-progress"]).exit_code == 0
    for i, config in enumerate(
        [
            {"merge_method": "linear", "models": models, "dtype": "float32"},
            {
                "merge_method": "linear",
                "base_model": str(f.target),
                "models": models,
                "tokenizer_source": "base",
            },
        ]
    ):
        out = tmp_path / f"yaml{i}"
        result = runner.invoke(app, ["apply", "--mergekit", str(write_yaml(tmp_path, config)), "-o", str(out), "--no-progress"])  # fmt: skip
        assert result.exit_code == 0, result.output
        expected, got = load_folder(fused), load_folder(out)
        assert set(got) == set(expected)
        for name in expected:
            assert torch.equal(got[name], expected[name]), name
        assert json.loads((out / "config.json").read_text()) == json.loads(
            (fused / "config.json").read_text()
        )


def test_linear_weights_map_exactly_in_real_arithmetic() -> None:
    job = job_from_config(
        {
            "merge_method": "linear",
            "base_model": "B",
            "models": [
                {"model": m, "parameters": {"weight": w}} for m, w in (("A", 2.0), ("B", 1.0), ("C", -1.0))
            ],
        }
    )
    # weights / 2: A 1, B 0.5, C −0.5; T = B, R = C, s = 1 − 0.5 = 0.5:
    # B + 0.5·(C − B) + 1·(A − C) = A + 0.5·B − 0.5·C ✓
    assert job.pairs == (("B", "C"), ("C", "A")) and job.alphas == (0.5, 1.0)


CONFIGS = [
    ("task_arithmetic", {"parameters": {"lambda": 0.5}}, {"weight": 0.7}, {}),
    ("ties", {"parameters": {"normalize": False, "int8_mask": True}}, {"weight": 1.0, "density": 0.4}, {}),
    ("dare_linear", {}, {"weight": 1.0, "density": 0.2}, {}),
    ("dare_ties", {"parameters": {"rescale": False, "density": 0.3}}, {"weight": 0.5}, {}),
    ("breadcrumbs", {}, {"weight": 1.0, "density": 0.8, "gamma": 0.02}, {}),
    ("breadcrumbs_ties", {"parameters": {"gamma": 0.05}}, {"weight": 1.0, "density": 0.8}, {}),
    ("ram", {"parameters": {"epsilon": 1e-4}}, None, {}),
]


@pytest.mark.parametrize(("method", "top", "per", "_"), CONFIGS)
def test_each_method_maps_to_a_merge_of_donor_pairs_applied_to_the_base(method, top, per, _) -> None:
    config = {
        "merge_method": method,
        "base_model": "base",
        "models": [
            {"model": "base"},
            *({"model": m, **({"parameters": per} if per else {})} for m in ("m1", "m2")),
        ],
        "out_dtype": "bfloat16",
        **top,
    }
    job = job_from_config(config, seed=5)
    assert job.target == "base" and job.pairs == (("base", "m1"), ("base", "m2")) and job.alphas == (1.0,)
    assert job.out_dtype == "bfloat16" and job.spec is not None and job.spec.seed == 5
    shared = job.spec.params.shared
    for key, value in top.get("parameters", {}).items():
        where = shared if key in shared else job.spec.params.per_vector[0]
        assert where[key] == value
    for key, value in (per or {}).items():
        assert [p[key] for p in job.spec.params.per_vector] == [value, value]


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"merge_method": "slerp", "base_model": "b", "models": [{"model": "a"}]}, "merge_method 'slerp' is not implemented by rvec"),
        ({"merge_method": "ties", "models": [{"model": "a"}], "slices": []}, "slices: layer slices"),
        ({"merge_method": "ties", "models": [{"model": "a"}], "frobnicate": 1}, "unknown key 'frobnicate'"),
        ({"merge_method": "ties", "base_model": "b", "models": [{"model": "a", "parameters": {"weight": 1, "density": [0.1, 0.5]}}]},
         "models.0.parameters.density: per-tensor lists"),
        ({"merge_method": "ties", "base_model": "b", "models": [{"model": "a", "parameters": {"weight": [{"filter": "mlp", "value": 1}]}}]},
         "per-tensor lists (filter/gradient) are not supported"),
        ({"merge_method": "ties", "base_model": "b", "models": [{"model": "a"}]}, "vector 1 has no 'weight', which mergekit requires"),
        ({"merge_method": "ties", "base_model": "b", "models": [{"model": "a", "parameters": {"weight": 1, "gamma": 0.1}}]},
         "ties has no parameter 'gamma'"),
        ({"merge_method": "ties", "models": [{"model": "a", "parameters": {"weight": 1}}]}, "ties needs base_model"),
        ({"merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": 1}}], "tokenizer_source": "union"},
         "tokenizer_source: 'union'"),
        ({"merge_method": "linear", "models": [{"model": "a+lora", "parameters": {"weight": 1}}]}, "LoRA references"),
        ({"merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": 1}}, {"model": "b", "parameters": {"weight": 1}}],
          "parameters": {"normalize": False}}, "scales the whole model"),
        ({"merge_method": "ties", "base_model": "b", "models": [{"model": "a", "parameters": {"weight": 1}}], "dtype": "int8"},
         "dtype: 'int8' is not one of"),
    ],
)  # fmt: skip
def test_what_rvec_does_not_do_is_refused_in_one_line(config, fragment) -> None:
    with pytest.raises(ConfigError) as err:
        job_from_config(config)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_ties_yaml_equals_merge_then_apply_and_honours_out_dtype(qwen_bf16: Family, tmp_path: Path) -> None:
    f = qwen_bf16
    config = {
        "merge_method": "ties",
        "base_model": str(f.sft),
        "models": [
            {"model": str(f.rl), "parameters": {"weight": 1.0, "density": 0.5}},
            {"model": str(f.target), "parameters": {"weight": 0.5, "density": 0.3}},
        ],
        "dtype": "float32",
        "out_dtype": "bfloat16",
    }
    out = tmp_path / "yaml"
    result = runner.invoke(app, ["apply", "--mergekit", str(write_yaml(tmp_path, config)), "-o", str(out), "--no-progress", "--no-lineage"])  # fmt: skip
    assert result.exit_code == 0, result.output
    v1 = extract(f.sft, f.rl, tmp_path / "v1")
    v2 = extract(f.sft, f.target, tmp_path / "v2", lineage=False)
    merged = tmp_path / "merged"
    args = [
        "merge",
        str(v1.path),
        str(v2.path),
        "--method",
        "ties",
        "--weights",
        "1,0.5",
        "--densities",
        "0.5,0.3",
    ]
    assert runner.invoke(app, [*args, "-o", str(merged), "--no-progress"]).exit_code == 0
    two_step = tmp_path / "two-step"
    args = [
        "apply",
        str(merged),
        "--to",
        str(f.sft),
        "--alpha",
        "1",
        "--dtype",
        "bfloat16",
        "-o",
        str(two_step),
    ]
    assert runner.invoke(app, [*args, "--no-progress", "--no-lineage"]).exit_code == 0
    got, expected = load_folder(out), load_folder(two_step)
    assert all(t.dtype == torch.bfloat16 for t in got.values())
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert np.isfinite(got["model.norm.weight"].float().numpy()).all()


def test_apply_mergekit_flag_conflicts_and_bad_yaml(qwen_untied: Family, tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"merge_method": "della", "base_model": "b", "models": [{"model": "a"}]})
    out = tmp_path / "o"
    assert_user_error(
        runner.invoke(app, ["apply", "--mergekit", str(path), "-o", str(out)]),
        "merge_method 'della' is not implemented",
    )
    result = runner.invoke(
        app, ["apply", "--mergekit", str(path), "--to", str(qwen_untied.target), "-o", str(out)]
    )
    assert_user_error(result, "--mergekit takes the models")
    bad = tmp_path / "bad.yml"
    bad.write_text("merge_method: [unclosed")
    assert_user_error(
        runner.invoke(app, ["apply", "--mergekit", str(bad), "-o", str(out)]), "cannot read it as YAML"
    )
    assert not out.exists()
