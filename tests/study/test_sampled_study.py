"""A sampled study: every sampling parameter is in the cell key, cells hold per-item means, avg@n and
pass@k and their lengths; the report's length section, plot and α-sweep length column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures import Family
from rvec.errors import ConfigError
from rvec.eval.data import DataSource
from rvec.model.registry import get_backend
from rvec.study.cells import CellKeys, load_cell
from rvec.study.config import parse_study
from rvec.study.plan import plan_cells, resolved_preset
from rvec.study.runner import run_study


def study(family: Family, data_dir: Path, **overrides) -> dict:
    raw = {
        "name": "sampled",
        "donors": {"sft": str(family.sft), "rl": str(family.rl)},
        "targets": [str(family.target)],
        "alphas": [1.0],
        "controls": {"subtraction": False, "random_seeds": [], "alpha_sweep": [0.5]},
        "conditions": ["plain"],
        "tasks": ["gsm8k"],
        "preset": "reasoning",
        "max_new_tokens": 6,
        "samples": 2,
        "temperature": 1.0,
        "top_p": 0.9,
        "limit": 3,
        "data_dir": str(data_dir),
        "bootstrap_resamples": 1000,
        "backend": {"name": "hf", "device": "cpu", "batch_size": 8},
    }
    raw.update(overrides)
    return raw


def keys_of(raw: dict, data_dir: Path) -> list[str]:
    config = parse_study(raw)
    keys = CellKeys(config, resolved_preset(config), DataSource(data_dir), get_backend("hf"))
    return [keys.key(c, "fp", {}) for c in plan_cells(config, config.targets[0], rl_donor=None)[:1]]


@pytest.mark.parametrize(
    "change",
    [{"temperature": 0.7}, {"top_p": 0.8}, {"samples": 3}, {"seed": 7}, {"max_new_tokens": 7}],
)
def test_every_sampling_parameter_is_in_the_cell_key(
    qwen_untied: Family, data_dir: Path, change: dict
) -> None:
    raw = study(qwen_untied, data_dir)
    assert keys_of(raw, data_dir) == keys_of(dict(raw), data_dir)  # the key is a function of the study
    assert keys_of({**raw, **change}, data_dir) != keys_of(raw, data_dir)


def test_two_temperatures_are_two_cells(qwen_untied: Family, data_dir: Path) -> None:
    raw = study(qwen_untied, data_dir)
    warm, hot = keys_of({**raw, "temperature": 0.6}, data_dir), keys_of({**raw, "temperature": 1.2}, data_dir)
    greedy = keys_of({**raw, "samples": 1, "temperature": 0.0, "top_p": 1.0}, data_dir)
    assert len({*warm, *hot, *greedy}) == 3


def test_bad_sampling_in_a_study_is_reported(qwen_untied: Family, data_dir: Path) -> None:
    raw = study(qwen_untied, data_dir, temperature=0.0, tasks=["gsm8k", "sciq"], preset="lm-eval")
    with pytest.raises(ConfigError) as info:
        parse_study(raw)
    assert any("temperature 0 with 2 samples" in e for e in info.value.errors)


def test_a_sampled_study_runs_and_reports_length(qwen_untied: Family, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = run_study(parse_study(study(qwen_untied, data_dir)), out, progress=False)
    cells = [load_cell(out / "cells", c.cache_key) for c in run.cells]
    assert cells and all(c is not None for c in cells)
    for cell in cells:
        assert cell is not None
        assert {"avg@2", "pass@1", "pass@2"} <= set(cell.scores)
        assert all(v in (0, 0.5, 1) for v in cell.per_item.values())  # shares of 2 samples
        assert cell.accuracy == pytest.approx(cell.scores["avg@2"])
        samples = json.loads((out / "cells" / f"{cell.cache_key}.json").read_text())["samples"]
        assert len(samples) == 2 * len(cell.per_item)
        tokens = sorted(s["n_generated_tokens"] for s in samples)
        assert cell.tokens_mean == pytest.approx(sum(tokens) / len(tokens))
        assert cell.tokens_p90 is not None and cell.tokens_p90 <= 6
        summary = cell.extra["disagreement"]  # regex against math-verify, on every sample
        assert summary["metrics"] == ["acc,strict", "math_verify,answer"] and summary["n"] == len(samples)
        differ = [s for s in samples if s["metrics"]["acc,strict"] != s["metrics"]["math_verify,answer"]]
        assert summary["disagree"] == len(differ)
    report = (out / "report.md").read_text()
    assert "## Generation length" in report
    assert "## Scorers compared" in report
    assert "mean tokens" in report.split("## Generation length")[0]  # the controls (α sweep) table
    assert "paired sign-flip permutation test" in report
    assert (out / "plots" / "length_gsm8k.png").is_file()
