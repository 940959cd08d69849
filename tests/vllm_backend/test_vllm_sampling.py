"""Sampled generation on vLLM: per-request seeds (``SamplingParams.seed``) make every sample
reproducible and independent of the other requests of the call; greedy requests beside them stay
greedy; a sampled run through the runner names avg@n and pass@k as on HF."""

from __future__ import annotations

import json
from pathlib import Path

from vllm_helpers import LiveEngine

from rvec.eval.decoding import Sampling, draw_requests
from rvec.eval.types import GenerateRequest

PROMPTS = ["w1 w2", "Solve 3 + 4.", "a b c d e f g", "Hi"]


def sampled(seed: int) -> list[GenerateRequest]:
    sampling = Sampling(samples=3, temperature=1.0, top_p=0.9)
    return [r for p in PROMPTS for r in draw_requests(GenerateRequest(None, p, (), 12), sampling, seed=seed)]


def test_seeded_samples_are_reproducible_and_batch_free(llama_live: LiveEngine) -> None:
    lm = llama_live.state.language_model()
    requests = sampled(seed=0)
    first = [r.text for r in lm.generate(requests)]
    assert first == [r.text for r in lm.generate(requests)]
    # A request's random stream is its own seed's: alone, or in reverse order, it draws the same tokens
    # (vLLM on CPU moves logits by ~2e-5 across batches; a draw falls that close to a boundary rarely).
    assert [lm.generate([r])[0].text for r in requests[:4]] == first[:4]
    assert [r.text for r in reversed(lm.generate(list(reversed(requests))))] == first
    assert len(set(first)) > len(PROMPTS)  # an item's samples differ
    assert [r.text for r in lm.generate(sampled(seed=1))] != first


def test_greedy_requests_beside_sampled_ones_stay_greedy(llama_live: LiveEngine) -> None:
    lm = llama_live.state.language_model()
    greedy = [GenerateRequest(None, p, (), 12) for p in PROMPTS]
    alone = [r.text for r in lm.generate(greedy)]
    mixed = lm.generate([*greedy, *sampled(seed=0)])
    assert [r.text for r in mixed[: len(greedy)]] == alone


def test_a_sampled_run_on_vllm_names_its_metrics(
    llama_live: LiveEngine, data_dir: Path, tmp_path: Path
) -> None:
    from rvec.eval.overrides import RunOverrides, apply_overrides
    from rvec.eval.presets import get_preset
    from rvec.eval.runner import evaluate

    preset = apply_overrides(
        get_preset("reasoning"), RunOverrides(max_new_tokens=8, samples=2, temperature=0.8, top_p=0.95)
    )
    lm = llama_live.state.language_model()
    result = evaluate(
        lm, tasks=["math500"], preset=preset, limit=2, data_dir=data_dir, out_dir=tmp_path, progress=False
    )
    assert {"avg@2", "pass@1", "pass@2"} <= set(result.scores["math500"])
    assert [r.sample for r in result.samples["math500"]] == [0, 1, 0, 1]
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["rvec"]["lengths"]["math500"]["n"] == 4
    again = evaluate(lm, tasks=["math500"], preset=preset, limit=2, data_dir=data_dir, progress=False)
    assert [r.response for r in again.samples["math500"]] == [r.response for r in result.samples["math500"]]
