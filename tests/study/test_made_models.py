"""A study that starts from shipped vectors: models made in the run folder (``models:``), v read
from a folder while the donors are evaluated as rows (``controls.donor_rows``), per-task item
counts (``task_limits``) and the report's RL-vs-SFT table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fixtures import Family
from helpers import load_folder
from rvec.errors import ConfigError
from rvec.eval.stats import format_delta
from rvec.study.config import parse_study
from rvec.study.report_index import Comparer
from rvec.study.runner import run_study
from rvec.vector.extract import extract


def made_study(family: Family, vector: Path, data_dir: Path) -> dict:
    return {
        "name": "made",
        # The RL donor is rebuilt as SFT + v, as the demo rebuilds it from a pair's shipped files.
        "models": {"rl-made": {"base": str(family.sft), "add": [str(vector)]}},
        "donors": {"sft": str(family.sft), "rl": "rl-made"},
        "vector": str(vector),
        "targets": [str(family.target)],
        "controls": {"subtraction": False, "random_seeds": [], "donor_rows": True},
        "conditions": ["plain"],
        "tasks": ["gsm8k", "arith"],
        "task_limits": {"arith": 5},
        "limit": 2,
        "max_new_tokens": 4,
        "data_dir": str(data_dir),
        "bootstrap_resamples": 1000,
        "backend": {"name": "hf", "device": "cpu", "batch_size": 8},
    }


@pytest.fixture(scope="module")
def made_run(qwen_untied: Family, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("made")
    vector = root / "v"
    extract(qwen_untied.sft, qwen_untied.rl, vector)
    config = parse_study(made_study(qwen_untied, vector, data_dir))
    out = root / "run"
    run = run_study(config, out, progress=False)
    made = sorted((out / "models").glob("rl-made-*"))
    made_mtime = made[0].joinpath("rvec.json").stat().st_mtime_ns if made else None
    resumed = run_study(config, out, resume=True, progress=False)
    return {"out": out, "run": run, "resumed": resumed, "made": made, "made_mtime": made_mtime}


def test_the_made_model_is_base_plus_v(made_run: dict, qwen_untied: Family) -> None:
    assert len(made_run["made"]) == 1
    made = load_folder(made_run["made"][0])
    rl = load_folder(qwen_untied.rl)
    assert made.keys() == rl.keys()
    for name, tensor in rl.items():  # sft + (rl − sft) = rl, within float32 rounding
        torch.testing.assert_close(made[name], tensor, rtol=0, atol=1e-6)


def test_donor_rows_and_task_limits(made_run: dict) -> None:
    cells = made_run["run"].cells
    rows = {(c.variant.name, c.condition, c.task): c for c in cells}
    for variant in ("target", "target + 1·v", "SFT donor", "RL donor"):
        assert rows[(variant, "plain", "arith")].n == 5
        assert rows[(variant, "plain", "gsm8k")].n == 2
    assert rows[("RL donor", "plain", "arith")].variant.model == "rl-made"
    assert any("v is read from" in note for note in made_run["run"].notes)
    # The norms plot is of the v the study names (no v is extracted into the run folder).
    assert (made_run["out"] / "plots" / "vector_norms.png").is_file()
    assert not (made_run["out"] / "vectors" / "v").exists()


def test_report_compares_rl_with_sft_on_paired_items(made_run: dict) -> None:
    cells = {(c.variant.name, c.task): c for c in made_run["run"].cells}
    report = (made_run["out"] / "report.md").read_text()
    assert "## Donors: RL vs SFT" in report
    comparer = Comparer(resamples=1000, seed=1234)
    for task in ("gsm8k", "arith"):
        c = comparer.cells("rl-vs-sft", cells[("SFT donor", task)], cells[("RL donor", task)])
        assert c is not None
        line = next(row for row in report.splitlines() if row.startswith(f"| plain | {task} | {c.n} |"))
        assert format_delta(c) in line


def test_resume_reuses_the_made_model_and_every_cell(made_run: dict) -> None:
    resumed = made_run["resumed"]
    assert resumed.computed == 0 and resumed.cached == len(made_run["run"].cells)
    again = sorted((made_run["out"] / "models").glob("rl-made-*"))
    assert again == made_run["made"]
    assert again[0].joinpath("rvec.json").stat().st_mtime_ns == made_run["made_mtime"]


def test_made_model_mistakes_are_listed_together(tmp_path: Path) -> None:
    vector = tmp_path / "v"
    vector.mkdir()
    raw = {
        "name": "x",
        "models": {
            "a/b": {"base": "later", "add": [str(vector)]},
            "later": {"base": str(tmp_path / "missing"), "add": [str(tmp_path / "nope")], "alphas": [1, 2]},
        },
        "vector": str(vector),
        "random_in_place_of_v": 0.01,
        "targets": ["later"],
        "tasks": ["gsm8k"],
        "task_limits": {"gsm9k": 3},
    }
    with pytest.raises(ConfigError) as info:
        parse_study(raw)
    assert info.value.errors == [
        "random_in_place_of_v: a stand-in for v goes without donors and vector; drop one",
        "models.a/b: name it with letters, digits, '.', '_' or '-' (it becomes a folder name)",
        "models.a/b.base: later is defined later or is a/b itself; define it first",
        f"models.later.base: {tmp_path / 'missing'} does not exist",
        f"models.later.add: {tmp_path / 'nope'} is not a folder",
        "models.later.alphas: 2 values for 1 vectors; give one α per vector",
        info.value.errors[6],
    ]
    assert info.value.errors[6].startswith("task_limits: ") and "gsm9k" in info.value.errors[6]


def test_a_made_model_name_may_be_used_before_it_exists(tmp_path: Path) -> None:
    vector = tmp_path / "v"
    vector.mkdir()
    config = parse_study(
        {
            "name": "x",
            "models": {"sft": {"base": str(tmp_path), "add": ["v"]}},
            "vector": str(vector),
            "targets": ["sft"],
            "tasks": ["arith"],
            "task_limits": {"arith": 200},
            "limit": 3,
        },
        base=tmp_path,
    )
    assert config.models["sft"].add == [str(vector.resolve())]  # read from the study's folder
    assert config.limit_for("arith") == 200 and config.limit_for("gsm8k") == 3
