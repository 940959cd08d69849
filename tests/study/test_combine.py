"""Combinations of vectors in memory (a study's ``vectors:``/``combine:``) and study models made from
a mergekit YAML: the in-memory merge equals ``rvec merge`` + ``rvec apply`` tensor by tensor and
restores bit-exactly; the cell key names the method, every parameter, the seed and the inputs; the
study file's mistakes are one line each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from fixtures import Family
from helpers import load_folder
from rvec.cli import app
from rvec.errors import ConfigError
from rvec.model.hf.settings import HFSettings
from rvec.model.registry import open_model_state
from rvec.study.combine import combination_spec
from rvec.study.config import parse_study
from rvec.study.runner import run_study
from rvec.vector.extract import extract
from rvec.vector.merge import merge_spec
from rvec.vector.merge_recipe import HashedMerge, MergeRecipe, delta_ref, merge_hash, open_delta_ref
from rvec.vector.mergekit import apply_mergekit, load_mergekit

CPU = HFSettings(device="cpu", dtype="float32", batch_size=4)


@pytest.fixture(scope="module")
def pair(qwen_untied: Family, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two vectors of the tiny Qwen family: v0 = RL − SFT, v1 = target − SFT (same tensors)."""
    root = tmp_path_factory.mktemp("combine")
    extract(qwen_untied.sft, qwen_untied.rl, root / "v0")
    extract(qwen_untied.sft, qwen_untied.target, root / "v1")
    return root / "v0", root / "v1"


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: t.detach().clone() for k, t in model.state_dict().items()}


CASES = [
    ("task_arithmetic", ["--weights", "1,0.5"], {"weights": [1.0, 0.5]}),
    ("ties", ["--densities", "0.5,0.3"], {"densities": [0.5, 0.3]}),
    ("dare_ties", ["--density", "0.4", "--seed", "3"], {"params": {"density": 0.4}, "seed": 3}),
    ("breadcrumbs", ["--density", "0.6", "--gamma", "0.05"], {"params": {"density": 0.6, "gamma": 0.05}}),
    ("ram", [], {}),
]


@pytest.mark.parametrize(("method", "flags", "spec_args"), CASES, ids=[c[0] for c in CASES])
def test_in_memory_combination_equals_merge_then_apply_and_restores_bit_exactly(
    pair: tuple[Path, Path], qwen_untied: Family, tmp_path: Path, method: str, flags: list, spec_args: dict
) -> None:
    v0, v1 = pair
    runner = CliRunner()
    merged, out = tmp_path / "merged", tmp_path / "out"
    done = runner.invoke(app, ["merge", str(v0), str(v1), "--method", method, *flags, "-o", str(merged)])
    assert done.exit_code == 0, done.output
    done = runner.invoke(
        app, ["apply", str(merged), "--to", str(qwen_untied.target), "--alpha", "1", "-o", str(out)]
    )
    assert done.exit_code == 0, done.output
    written = load_folder(out)
    combo = HashedMerge.of([v0, v1], merge_spec(method, 2, **spec_args))
    with open_model_state(str(qwen_untied.target), CPU) as state:
        model = state.language_model().model
        before = weights(model)
        state.set_vectors([(combo, 1.0)])
        now = model.state_dict()
        assert state.fingerprint != state.base_fingerprint
        differ = [k for k in written if not torch.equal(now[k], written[k])]
        assert differ == []
        assert any(not torch.equal(now[k], before[k]) for k in before)
        state.restore()
        after = model.state_dict()
        assert all(torch.equal(after[k], before[k]) for k in before)
        assert state.fingerprint == state.base_fingerprint


def test_merge_hash_names_method_parameters_seed_and_inputs(pair: tuple[Path, Path]) -> None:
    v0, v1 = pair
    ties = HashedMerge.of([v0, v1], merge_spec("ties", 2, params={"density": 0.5}))
    hashes = {
        ties.content_hash,
        HashedMerge.of([v1, v0], merge_spec("ties", 2, params={"density": 0.5})).content_hash,
        HashedMerge.of([v0, v1], merge_spec("ties", 2, params={"density": 0.4})).content_hash,
        HashedMerge.of([v0, v1], merge_spec("dare_ties", 2, params={"density": 0.5})).content_hash,
        HashedMerge.of([v0, v1], merge_spec("dare_ties", 2, params={"density": 0.5}, seed=1)).content_hash,
        HashedMerge.of(
            [v0, v1], merge_spec("ties", 2, weights=[1, 0.7], params={"density": 0.5})
        ).content_hash,
    }
    assert len(hashes) == 6
    same = HashedMerge.of([v0, v1], merge_spec("ties", 2, densities=[0.5, 0.5]))
    reseeded = HashedMerge.of([v0, v1], merge_spec("ties", 2, params={"density": 0.5}, seed=7))
    assert (
        same.content_hash
        == ties.content_hash
        == reseeded.content_hash  # the seed only names merges that draw masks (DARE)
        == merge_hash(ties.spec, [v.content_hash for v in ties.vectors])
    )
    # A merge travels to another process (a vLLM worker) as its recipe and comes back the same.
    ref = delta_ref(ties)
    assert isinstance(ref, MergeRecipe) and ref.inputs == (str(v0), str(v1))
    rebuilt = open_delta_ref(ref)
    assert rebuilt.content_hash == ties.content_hash
    name = next(iter(ties.shapes))
    assert (rebuilt.read_delta(name, 0, 16) == ties.read_delta(name, 0, 16)).all()
    assert delta_ref(rebuilt.vectors[0]) == str(v0)


def combine_study(family: Family, pair: tuple[Path, Path], data_dir: Path, **overrides) -> dict:
    v0, v1 = pair
    raw = {
        "name": "combine",
        "vector": str(v0),
        "vectors": {"v1": str(v1)},
        "combine": {
            "ta": {"method": "task_arithmetic", "vectors": ["v", "v1"]},
            "ties": {"method": "ties", "vectors": ["v", "v1"], "densities": [0.5, 0.5]},
            "dare": {"method": "dare_linear", "vectors": ["v", "v1"], "density": 0.5, "seed": 0},
        },
        "rows": {"sft": {"model": str(family.sft), "vs": "target"}},
        "targets": [str(family.target)],
        "alphas": [1.0],
        "controls": {"subtraction": False, "random_seeds": []},
        "conditions": ["plain"],
        "tasks": ["arith"],
        "max_new_tokens": 4,
        "limit": 3,
        "data_dir": str(data_dir),
        "bootstrap_resamples": 1000,
        "backend": {"name": "hf", "device": "cpu", "batch_size": 8},
    }
    raw.update(overrides)
    return raw


def test_study_evaluates_each_combination_in_memory_under_its_own_key(
    qwen_untied: Family, pair: tuple[Path, Path], data_dir: Path, tmp_path: Path
) -> None:
    raw = combine_study(qwen_untied, pair, data_dir)
    out = tmp_path / "run"
    run_study(parse_study(raw), out, progress=False)
    plan = json.loads((out / "study.json").read_text())
    labels = {c["variant"] for c in plan["cells"]}
    shown = {"TIES(v, v1)", "Task Arithmetic(v, v1)", "Linear DARE(v, v1)"}
    assert {"target + 1·v1", *(f"target + {s}" for s in shown)} <= labels
    vector_labels = {c["vector_label"] for c in plan["cells"]}
    assert {"v1", "combine:ta", "combine:ties", "combine:dare"} <= vector_labels
    keys = [c["key"] for c in plan["cells"]]
    assert len(set(keys)) == len(keys) == 7  # baseline, +v, +v1, three combinations, the sft row
    record = plan["combine"]["combinations"]
    assert record["combine:dare"]["seed"] == 0 and record["combine:dare"]["method"] == "dare_linear"
    assert record["combine:ties"]["inputs"] == ["v", "v1"]
    assert len(list((out / "cells").glob("*.json"))) == 7
    assert plan["combine"]["rows"] == {"sft": "target"}
    assert not (out / "models").exists() or not any((out / "models").iterdir())  # nothing merged on disk
    report = (out / "report.md").read_text()
    assert "## Vectors and combinations" in report and "TIES(v, v1)" in report
    assert "| sft | plain | arith | 3 |" in report  # the extra row, compared with the baseline
    # Another seed is another combination: only its cell is new on resume.
    raw["combine"]["dare"]["seed"] = 1
    again: list[tuple[str, bool]] = []
    run_study(
        parse_study(raw),
        out,
        resume=True,
        progress=False,
        on_cell=lambda c, cached: again.append((c.variant.name, cached)),
    )
    fresh = [label for label, cached in again if not cached]
    assert len(fresh) == 1 and "DARE" in fresh[0]


@pytest.mark.parametrize(
    ("combine", "fragment"),
    [
        ({"x": {"method": "slerp", "vectors": ["v", "v1"]}}, "combine.x.method: "),
        ({"x": {"method": "ties", "vectors": ["v", "v2"]}}, "'v2' is not a vector of the study"),
        ({"x": {"method": "ties", "vectors": ["v", "v1"], "gamma": 0.1}}, "combine.x.gamma: "),
        ({"x": {"method": "ties", "vectors": ["v", "v1"], "weights": [1.0]}}, "combine.x.weights: "),
        (
            {"x": {"method": "ties", "vectors": ["v", "v1"], "density": 0.5, "densities": [0.5, 0.5]}},
            "not both",
        ),
    ],
)
def test_combination_mistakes_are_one_line_each(
    qwen_untied: Family, pair: tuple[Path, Path], data_dir: Path, combine: dict, fragment: str
) -> None:
    raw = combine_study(qwen_untied, pair, data_dir, combine=combine)
    with pytest.raises(ConfigError) as err:
        parse_study(raw)
    assert any(fragment in e and "\n" not in e for e in err.value.errors), err.value.errors


def test_combination_spec_uses_the_study_seed_by_default(
    qwen_untied: Family, pair: tuple[Path, Path], data_dir: Path
) -> None:
    raw = combine_study(qwen_untied, pair, data_dir, seed=11)
    raw["combine"]["dare"].pop("seed")
    config = parse_study(raw)
    assert combination_spec(config.combine["dare"], default_seed=config.seed).seed == 11


def write_yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_study_model_from_a_mergekit_yaml_equals_apply_mergekit(
    qwen_untied: Family, data_dir: Path, tmp_path: Path
) -> None:
    merge = {
        "merge_method": "ties",
        "base_model": str(qwen_untied.sft),
        "models": [
            {"model": str(qwen_untied.rl), "parameters": {"weight": 1.0, "density": 0.5}},
            {"model": str(qwen_untied.target), "parameters": {"weight": 0.5, "density": 0.5}},
        ],
        "parameters": {"normalize": True},
        "dtype": "float32",
    }
    yml = write_yaml(tmp_path / "ties.yml", merge)
    raw = {
        "name": "mk",
        "models": {"merged": {"mergekit": "ties.yml"}},
        "random_in_place_of_v": 0.01,
        "targets": ["merged"],
        "controls": {"subtraction": False, "random_seeds": []},
        "conditions": ["plain"],
        "tasks": ["arith"],
        "max_new_tokens": 2,
        "limit": 2,
        "data_dir": str(data_dir),
        "bootstrap_resamples": 1000,
        "backend": {"name": "hf", "device": "cpu", "batch_size": 8},
    }
    study_file = write_yaml(tmp_path / "study.yaml", raw)
    config = parse_study(yaml.safe_load(study_file.read_text()), base=tmp_path)
    out = tmp_path / "run"
    run_study(config, out, progress=False)
    made = list((out / "models").glob("merged-*"))
    assert len(made) == 1
    apply_mergekit(load_mergekit(yml), tmp_path / "expected")
    expected, got = load_folder(tmp_path / "expected"), load_folder(made[0])
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.parametrize(
    ("entry", "yaml_text", "fragment"),
    [
        ({"mergekit": "missing.yml"}, None, "models.m.mergekit: missing.yml is not a file"),
        ({"mergekit": "m.yml"}, {"merge_method": "slerp", "models": []}, "models.m.mergekit: "),
        ({"mergekit": "m.yml", "weight": 1}, {"merge_method": "linear", "models": []}, "models.m.weight"),
        (
            {"mergekit": "m.yml"},
            {"merge_method": "linear", "slices": [], "models": [{"model": "a"}]},
            "slices",
        ),
    ],
)
def test_mergekit_model_mistakes_are_one_line_each(
    data_dir: Path, tmp_path: Path, entry: dict, yaml_text: dict | None, fragment: str
) -> None:
    if yaml_text is not None:
        write_yaml(tmp_path / "m.yml", yaml_text)
    raw = {
        "name": "mk",
        "models": {"m": entry},
        "random_in_place_of_v": 0.01,
        "targets": ["m"],
        "tasks": ["arith"],
        "data_dir": str(data_dir),
    }
    with pytest.raises(ConfigError) as err:
        parse_study(raw, base=tmp_path)
    assert any(fragment in e and "\n" not in e for e in err.value.errors), err.value.errors


def test_a_rows_vs_that_names_no_row_is_refused_before_any_cell(
    qwen_untied: Family, pair: tuple[Path, Path], data_dir: Path, tmp_path: Path
) -> None:
    raw = combine_study(
        qwen_untied, pair, data_dir, rows={"sft": {"model": str(qwen_untied.sft), "vs": "taget"}}
    )
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        run_study(parse_study(raw), out, progress=False)
    assert err.value.errors == [
        "rows.sft.vs: 'taget' is not a row of this study; name one of: target, target + 1·v, "
        "target + 1·v1, target + Task Arithmetic(v, v1), target + TIES(v, v1), target + Linear DARE(v, v1), sft"
    ]
    assert not (out / "cells").exists() or not any((out / "cells").iterdir())  # nothing evaluated
