"""The atlas, the α search and KL on the vLLM backend: every cell is an in-memory state of one live
engine (slices and search trials switch α, and reload only what changes), dev and test stay apart,
and the whole next-token distribution (KL) equals the HF backend's within float32 noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from vllm_helpers import ENGINE, LiveEngine, TinyFamily, task_requests

from rvec.study.cells import load_cell
from rvec.study.config import parse_study
from rvec.study.runner import run_study


def _study(family: TinyFamily, backend: dict) -> dict:
    return {
        "name": "vllm-atlas-search",
        "vector": str(family.vector),
        "targets": [str(family.target)],
        "alphas": [1.0],
        "controls": {"subtraction": False, "random_seeds": []},
        "conditions": ["plain"],
        "tasks": ["arith"],
        "limit": 6,
        "max_new_tokens": 6,
        "bootstrap_resamples": 1000,
        "kl": True,
        "atlas": {"blocks": 2},
        "search": {"task": "arith", "dev": 4, "test": 5, "profile": 2, "bounds": [0.0, 2.0], "trials": 3},
        "backend": backend,
    }


@pytest.fixture(scope="module")
def runs(tiny_llama: TinyFamily, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("atlas-search")
    backends = {
        "vllm": {"name": "vllm", "max_model_len": 8192, **ENGINE},
        "hf": {"name": "hf", "device": "cpu", "dtype": "float32", "batch_size": 8},
    }
    for name, backend in backends.items():
        run_study(parse_study(_study(tiny_llama, backend)), root / name, progress=False)
    return {name: root / name for name in backends}


def test_the_atlas_runs_on_vllm_with_every_part_and_its_complement(runs: dict[str, Path]) -> None:
    plan = json.loads((runs["vllm"] / "study.json").read_text())
    record = plan["atlas"][next(iter(plan["atlas"]))]
    variants = {e["variant"] for e in plan["cells"]}
    assert len(record["parts"]) == 4  # 2 blocks × attention, MLP
    assert all(p["only"] in variants and p["all_but"] in variants for p in record["parts"])
    assert "atlas" in (runs["vllm"] / "report.md").read_text().lower()


def test_the_search_on_vllm_keeps_dev_and_test_apart(runs: dict[str, Path]) -> None:
    out = runs["vllm"]
    record = json.loads((out / "search" / "search.json").read_text())
    dev, test = set(record["split"]["dev"]), set(record["split"]["test"])
    assert len(dev) == 4 and len(test) == 5 and not dev & test
    assert len(record["trials"]) == 3
    for trial in record["trials"]:
        assert set(load_cell(out / "cells", trial["key"]).per_item) == dev
    for key in record["test"].values():
        assert set(load_cell(out / "cells", key).per_item) == test


def test_vllm_and_hf_give_the_same_split_and_first_trial(runs: dict[str, Path]) -> None:
    """The split is the task's and the seed's, not the engine's; trial 0 is v as extracted on both."""
    vllm, hf = (json.loads((runs[n] / "search" / "search.json").read_text()) for n in ("vllm", "hf"))
    assert vllm["split"] == hf["split"]
    assert vllm["trials"][0]["params"] == hf["trials"][0]["params"] == {"block0": 1.0, "block1": 1.0}


def test_next_token_logprobs_equal_the_hf_backends(llama_live: LiveEngine, llama_hf, data_dir: Path) -> None:
    """vLLM's every-token log-probabilities of one step = HF's log-softmax of the last position, at θ₀
    and with v applied (the distribution KL compares)."""
    generate, score = task_requests(data_dir, items=2, max_new_tokens=4)
    requests = [*generate, *score]
    lm = llama_live.state.language_model()
    ours, theirs = lm.next_token_logprobs(requests), llama_hf.next_token_logprobs(requests)
    assert ours.shape == theirs.shape and np.isfinite(ours).all()
    np.testing.assert_allclose(ours, theirs, atol=2e-4)
    assert np.allclose(np.exp(ours).sum(axis=1), 1.0, atol=1e-4)  # the whole vocabulary, normalised
    # A few requests per engine call bound vLLM's Python objects; two at a time gives the same rows
    # up to the batch's float32 noise (vLLM's matmuls change shape with the batch: ~1e-5 here).
    import rvec.model.vllm.backend as backend

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend, "_LOGPROB_ENTRIES", 2 * ours.shape[1])
        np.testing.assert_allclose(lm.next_token_logprobs(requests), ours, atol=1e-4)


def test_kl_on_vllm_equals_kl_on_hf(runs: dict[str, Path]) -> None:
    """Every cell of both runs carries a KL; the target's is 0 and the others agree across engines."""

    def kls(run: Path) -> dict[str, float]:
        plan = json.loads((run / "study.json").read_text())
        cells = {e["variant"]: load_cell(run / "cells", e["key"]) for e in plan["cells"]}
        return {name: cell.extra["kl"]["mean"] for name, cell in cells.items() if cell.extra.get("kl")}

    vllm, hf = kls(runs["vllm"]), kls(runs["hf"])
    assert set(vllm) == set(hf) and len(vllm) >= 9  # target, v, 4 parts and 4 complements
    assert vllm["target"] == hf["target"] == 0.0
    for name, value in hf.items():
        assert vllm[name] == pytest.approx(value, rel=1e-2, abs=1e-3), name
