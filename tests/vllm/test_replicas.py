"""Ray replicas: whole cells per replica, α switched only between bundles, the same cells as one engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from vllm_helpers import ENGINE, LiveEngine

from rvec.model.vllm_replicas import CellJob, ReplicaPool, ReplicaSpec, plan_bundles, run_jobs


def _job(key: str, alpha: float) -> CellJob:
    return CellJob(key, (alpha,), {})


def test_bundles_keep_one_alpha_and_feed_every_replica() -> None:
    jobs = [_job("a", 0.0), _job("b", 1.0), _job("c", 0.0), _job("d", 0.0), _job("e", 1.0)]
    assert [[j.key for j in b] for b in plan_bundles(jobs, 1)] == [["a", "c", "d"], ["b", "e"]]
    four = plan_bundles(jobs, 4)
    assert len(four) == 4 and sorted(j.key for b in four for j in b) == list("abcde")
    assert all(len({j.alphas for j in b}) == 1 for b in four)
    assert len(plan_bundles(jobs[:1], 8)) == 1  # one cell is never split


def _cells(data_dir: Path) -> list[CellJob]:
    """A study's matrix in miniature: two variants (baseline, +1·v) × a generated and a scored task."""
    cells = []
    for variant, alpha in (("baseline", 0.0), ("+1·v", 1.0)):
        for task in ("gsm8k", "sciq"):
            args = {"tasks": [task], "preset": "lm-eval", "limit": 2, "data_dir": data_dir}
            cells.append(CellJob(f"{variant}/{task}", (alpha,), args))
    return cells


@pytest.mark.slow
def test_two_ray_replicas_give_the_cells_of_one_engine(
    llama_live: LiveEngine, data_dir: Path, ray_local: None
) -> None:
    from rvec.model.vllm_spec import VLLMSettings

    jobs = _cells(data_dir)
    one = run_jobs(llama_live.state, jobs)
    spec = ReplicaSpec(
        source=str(llama_live.family.target),
        vectors=(str(llama_live.family.vector),),
        settings=VLLMSettings(max_model_len=8192, **ENGINE),
    )
    with ReplicaPool(spec, replicas=2, cpus_per_replica=0.5) as pool:
        two = pool.run(jobs)
    assert list(two) == [j.key for j in jobs]
    assert {o.replica for o in two.values()} == {0, 1}  # both replicas worked
    for mine in one:
        theirs = two[mine.key]
        assert theirs.fingerprint == mine.fingerprint
        assert theirs.backend["identity"] == mine.backend["identity"]
        assert theirs.result.scores == mine.result.scores
        for task, records in mine.result.samples.items():
            assert [(r.doc_id, r.response, r.correct) for r in theirs.result.samples[task]] == [
                (r.doc_id, r.response, r.correct) for r in records
            ]
