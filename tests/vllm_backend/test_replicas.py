"""Ray replicas: whole cells per replica, α switched only between bundles, the same cells as one engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vllm_helpers import ENGINE

from rvec.model.vllm.replicas import CellJob, plan_bundles


def _job(key: str, alpha: float) -> CellJob:
    return CellJob(key, (alpha,), {})


def test_bundles_keep_one_alpha_and_feed_every_replica() -> None:
    jobs = [_job("a", 0.0), _job("b", 1.0), _job("c", 0.0), _job("d", 0.0), _job("e", 1.0)]
    assert [[j.key for j in b] for b in plan_bundles(jobs, 1)] == [["a", "c", "d"], ["b", "e"]]
    four = plan_bundles(jobs, 4)
    assert len(four) == 4 and sorted(j.key for b in four for j in b) == list("abcde")
    assert all(len({j.alphas for j in b}) == 1 for b in four)
    assert len(plan_bundles(jobs[:1], 8)) == 1  # one cell is never split


def _study(family, data_dir: Path, **backend) -> dict:
    """Three model states (baseline, +1·v, −1·v) × a generated and a scored task."""
    return {
        "name": "tiny-vllm",
        "vector": str(family.vector),
        "targets": [str(family.target)],
        "alphas": [1.0],
        "controls": {"subtraction": True, "random_seeds": []},
        "conditions": ["plain"],
        "tasks": ["gsm8k", "sciq"],
        "preset": "lm-eval",
        "max_new_tokens": 8,
        "limit": 2,
        "data_dir": str(data_dir),
        "bootstrap_resamples": 1000,
        "backend": {"name": "vllm", "max_model_len": 8192, **ENGINE, **backend},
    }


@pytest.mark.slow
def test_a_study_on_two_ray_replicas_gives_the_cells_of_one_engine(
    tiny_llama, data_dir: Path, tmp_path: Path, ray_local: None
) -> None:
    from rvec.study.config import parse_study
    from rvec.study.runner import run_study

    one = run_study(parse_study(_study(tiny_llama, data_dir)), tmp_path / "one", progress=False)
    two = run_study(parse_study(_study(tiny_llama, data_dir, replicas=2)), tmp_path / "two", progress=False)
    assert one.computed == two.computed == 6
    cells = {c.cache_key: c for c in one.cells}
    assert {c.cache_key for c in two.cells} == set(cells)  # replicas do not enter the cell keys
    for cell in two.cells:
        mine = cells[cell.cache_key]
        assert (cell.variant.name, cell.task, cell.per_item, cell.scores) == (
            mine.variant.name,
            mine.task,
            mine.per_item,
            mine.scores,
        )
    assert json.loads((tmp_path / "two" / "study.json").read_text())["backend"]["replicas"] == 2
    assert {c.variant.kind for c in one.cells} == {"baseline", "vector", "subtraction"}
    assert len({c.variant.name for c in one.cells}) == 3  # target, target + 1·v, target − 1·v
