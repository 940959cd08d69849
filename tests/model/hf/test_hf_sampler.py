"""Sampled generation and shared-context scoring on the HF engine (tiny random Llama, float32)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rvec.eval.data import DataSource
from rvec.eval.decoding import Sampling, draw_requests
from rvec.eval.presets import get_preset
from rvec.eval.tasks import get_task
from rvec.eval.types import Draw, GenerateRequest, LoglikelihoodRequest
from rvec.model.hf.backend import HFBackend
from rvec.model.hf.sampler import sample_token


@pytest.fixture(scope="module")
def tiny(llama_tied) -> HFBackend:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(llama_tied.target, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(llama_tied.target)
    return HFBackend(model, tokenizer, fingerprint="tiny", batch_size=3, progress=False)


def rebatched(lm: HFBackend, batch_size: int, **kwargs) -> HFBackend:
    return HFBackend(
        lm.model, lm.tokenizer, fingerprint=lm.fingerprint, batch_size=batch_size, progress=False, **kwargs
    )


PROMPTS = ["w1 w2", "Solve 3 + 4.", "a b c d e f g", "Hi", "x"]


def sampled(seed: int, samples: int = 3) -> list[GenerateRequest]:
    sampling = Sampling(samples=samples, temperature=1.0, top_p=0.9)
    return [r for p in PROMPTS for r in draw_requests(GenerateRequest(None, p, (), 12), sampling, seed=seed)]


# ------------------------------------------------------------------------------- the sampler itself
def test_sample_token_follows_the_nucleus_distribution() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    generator = torch.Generator().manual_seed(0)
    draws = [sample_token(logits, Draw(1.0, 0.9, 0), generator) for _ in range(20_000)]
    # top-p 0.9 keeps 0.5, 0.3, 0.15 (the mass before 0.05 is 0.95 >= 0.9): renormalised over 0.95
    freq = [draws.count(t) / len(draws) for t in range(4)]
    assert freq[3] == 0
    for got, p in zip(freq[:3], (0.5, 0.3, 0.15), strict=True):
        assert got == pytest.approx(p / 0.95, abs=0.015)


def test_a_tiny_top_p_is_the_argmax_and_temperature_sharpens() -> None:
    logits = torch.tensor([0.1, 2.0, 1.9, -3.0])
    generator = torch.Generator().manual_seed(1)
    assert {sample_token(logits, Draw(1.0, 1e-6, 0), generator) for _ in range(200)} == {1}
    cold = [sample_token(logits, Draw(0.01, 1.0, 0), generator) for _ in range(500)]
    assert cold.count(1) / 500 > 0.99  # exp(0.1 / 0.01) against the runner-up: practically always


# ------------------------------------------------------------------------------- seeded, batch-free
def test_samples_are_reproducible_and_do_not_depend_on_batch_or_order(tiny: HFBackend) -> None:
    requests = sampled(seed=0)
    first = [r.text for r in tiny.generate(requests)]
    assert first == [r.text for r in tiny.generate(requests)]
    assert first == [r.text for r in rebatched(tiny, 1).generate(requests)]
    assert first == [r.text for r in rebatched(tiny, 7, decode="generate").generate(requests)]
    reordered = list(reversed(requests))
    assert first == [r.text for r in reversed(tiny.generate(reordered))]
    # each sample alone, as if the other items and samples were never asked
    assert first[4] == tiny.generate([requests[4]])[0].text
    assert len(set(first)) > len(PROMPTS)  # the samples of an item differ from each other
    assert first != [r.text for r in tiny.generate(sampled(seed=1))]  # --seed changes the samples


def test_greedy_requests_beside_sampled_ones_stay_greedy(tiny: HFBackend) -> None:
    greedy = [GenerateRequest(None, p, (), 12) for p in PROMPTS]
    alone = [r.text for r in tiny.generate(greedy)]
    mixed = tiny.generate([*greedy, *sampled(seed=0)])
    assert [r.text for r in mixed[: len(greedy)]] == alone


# ------------------------------------------------------------------------------- shared contexts
def test_shared_contexts_equal_plain_scoring_on_real_sciq(tiny: HFBackend, data_dir: Path) -> None:
    preset = get_preset("lm-eval")
    task = get_task("sciq")
    real = [task.request(d, preset) for d in task.docs(DataSource(data_dir), limit=12)]
    # The tail of each real prompt: the tiny model has 128 positions, and a longer piece would take
    # the plain path (lm-eval's left truncation) instead of the shared one.
    requests = [LoglikelihoodRequest(None, r.prompt[-70:], r.continuations) for r in real]
    requests.append(LoglikelihoodRequest(None, "w1 w2", (" w3", " w3 w4 w5", "x")))  # uneven lengths
    fits = [len(tiny.text.encode(r.prompt + max(r.continuations, key=len))) < 128 for r in requests]
    assert all(fits)
    plain = rebatched(tiny, 4, share_contexts=False).loglikelihood(requests)
    shared = rebatched(tiny, 4).loglikelihood(requests)
    assert rebatched(tiny, 4).describe()["loglikelihood"] == "shared-context"
    for a, b in zip(plain, shared, strict=True):
        assert b.loglikelihoods == pytest.approx(a.loglikelihoods, abs=1e-4, rel=1e-5)
        assert b.continuation_lengths == a.continuation_lengths
        best_a = max(range(len(a.loglikelihoods)), key=a.loglikelihoods.__getitem__)
        best_b = max(range(len(b.loglikelihoods)), key=b.loglikelihoods.__getitem__)
        assert best_a == best_b  # the same verdict


def test_a_piece_longer_than_the_model_takes_the_plain_path(tiny: HFBackend, data_dir: Path) -> None:
    task = get_task("sciq")
    request = task.request(task.docs(DataSource(data_dir), limit=1)[0], get_preset("lm-eval"))
    assert len(tiny.text.encode(request.prompt)) > 128  # left-truncated as lm-eval does, never shared
    plain = rebatched(tiny, 4, share_contexts=False).loglikelihood([request])
    assert rebatched(tiny, 4).loglikelihood([request]) == plain
