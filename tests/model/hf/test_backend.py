"""HFBackend on the real SmolLM2-135M-Instruct (slow) and on a tiny random Llama (fast)."""

from __future__ import annotations

import pytest
import torch

from rvec.errors import InvalidArgumentError
from rvec.eval.types import GenerateRequest, LanguageModel, LoglikelihoodRequest
from rvec.model.hf.backend import HFBackend
from rvec.model.hf.tie_guard import TieGuard
from rvec.model.text import Row

QUESTIONS = (
    "What is 7 times 8?",
    "Name a primary colour.",
    "Janet has 3 apples and buys 5 more. She eats 2. How many apples are left? Explain briefly.",
    "Write one sentence about the sea.",
    "If a train travels 60 km per hour for 2.5 hours, how far does it go? Show the computation.",
    "Hi",
)


def chat(question: str, max_new_tokens: int = 24, stop: tuple[str, ...] = ()) -> GenerateRequest:
    return GenerateRequest(({"role": "user", "content": question},), None, stop, max_new_tokens)


@pytest.fixture(scope="module")
def smol(smollm2) -> HFBackend:
    model, tokenizer, fingerprint = smollm2
    return HFBackend(model, tokenizer, fingerprint=fingerprint, batch_size=4, progress=False)


def with_batch(lm: HFBackend, batch_size: int, **kwargs) -> HFBackend:
    return HFBackend(
        lm.model, lm.tokenizer, fingerprint=lm.fingerprint, batch_size=batch_size, progress=False, **kwargs
    )


# ------------------------------------------------------------------------------ real model, slow
@pytest.mark.slow
def test_generation_is_identical_across_reruns_batch_sizes_and_loops(smol: HFBackend) -> None:
    requests = [chat(q, max_new_tokens=16 + 4 * i) for i, q in enumerate(QUESTIONS)]
    first = [r.text for r in smol.generate(requests)]
    assert first == [r.text for r in smol.generate(requests)]
    assert first == [r.text for r in with_batch(smol, 1).generate(requests)]
    assert first == [r.text for r in with_batch(smol, 3, decode="generate").generate(requests)]
    assert all(first)


@pytest.mark.slow
def test_left_padding_changes_nothing(smol: HFBackend) -> None:
    short, long = chat("Hi", 20), chat(QUESTIONS[4], 20)
    lm = with_batch(smol, 2, tie_margin=0)  # guard off: the padded batch itself must be right
    together = [r.text for r in lm.generate([short, long])]
    alone = [lm.generate([short])[0].text, lm.generate([long])[0].text]
    assert together == alone

    context = "The capital of France is"
    lls_alone = lm.loglikelihood([LoglikelihoodRequest(None, context, (" Paris",))])[0].loglikelihoods
    batch = [
        LoglikelihoodRequest(None, context, (" Paris",)),
        LoglikelihoodRequest(None, "Rome, Berlin, Madrid and Lisbon are capitals. " * 4 + context, (" X",)),
    ]
    lls_padded = lm.loglikelihood(batch)[0].loglikelihoods
    # Wrong positions or an unmasked pad would move this by whole nats, not 1e-4.
    assert lls_alone is not None and lls_padded is not None
    assert lls_padded[0] == pytest.approx(lls_alone[0], abs=1e-4)


@pytest.mark.slow
def test_stop_string_and_everything_after_it_is_cut(smol: HFBackend) -> None:
    free = smol.generate([chat(QUESTIONS[2], 32)])[0]
    words = free.text.split()
    assert len(words) > 4, free.text
    stop = " " + words[3]
    cut = smol.generate([chat(QUESTIONS[2], 32, stop=(stop, "never-appears"))])[0]
    assert cut.text == free.text[: free.text.index(stop)]
    assert cut.n_generated_tokens < free.n_generated_tokens  # the row stopped early

    raw = smol.generate([GenerateRequest(None, "Q: What is 2+2?\nA:", ("\n",), 24)])[0]
    assert "\n" not in raw.text and raw.text.strip()


@pytest.mark.slow
def test_eos_ends_a_row_and_is_not_in_the_text(smol: HFBackend) -> None:
    response = smol.generate([chat("Hi", 64)])[0]
    assert response.n_generated_tokens < 64
    assert "<|im_end|>" not in (response.text or "")


@pytest.mark.slow
def test_loglikelihood_equals_a_direct_torch_computation(smol: HFBackend) -> None:
    context, continuations = "The capital of France is", (" Paris", " London", " a city in Europe")
    response = smol.loglikelihood([LoglikelihoodRequest(None, context, continuations)])[0]
    tokenizer, model = smol.tokenizer, smol.model
    expected = []
    for continuation in continuations:
        ctx = tokenizer(context)["input_ids"]
        whole = tokenizer(context + continuation)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([whole])).logits[0].float()  # (T, V)
        logprobs = torch.log_softmax(logits, dim=-1)
        expected.append(sum(float(logprobs[t - 1, whole[t]]) for t in range(len(ctx), len(whole))))
    assert response.loglikelihoods == pytest.approx(expected, abs=1e-4)
    assert response.continuation_lengths == (6, 7, 17)
    # lm-eval moves a context's trailing space into the continuation.
    moved = smol.loglikelihood([LoglikelihoodRequest(None, context + " ", ("Paris",))])[0]
    assert moved.loglikelihoods == pytest.approx(response.loglikelihoods[:1], abs=1e-5)


@pytest.mark.slow
def test_chat_template_is_rendered_and_bos_not_doubled(smol: HFBackend) -> None:
    rendered = smol.render(chat("Hi"))
    assert rendered.startswith("<|im_start|>") and rendered.endswith("<|im_start|>assistant\n")
    ids = smol.text.encode(rendered)
    assert ids == smol.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert ids[:2] != [smol.tokenizer.bos_token_id] * 2


@pytest.mark.slow
def test_tie_guard_decides_near_ties_from_the_sequence_alone(smol: HFBackend) -> None:
    prompt = smol.text.encode(smol.render(chat("Name a primary colour.")))
    guard = TieGuard(smol.model, margin=1e-3, device=smol.device)
    canonical = guard.canonical(prompt)
    logits = torch.zeros(1, len(smol.tokenizer))
    logits[0, 5] = logits[0, 7] = 10.0  # an exact tie between two other tokens
    row = Row(0, prompt, (), 4)
    assert guard.choose(logits, [row]) == [canonical]
    logits[0, 7] = 11.0  # a clear winner is taken as is
    assert guard.choose(logits, [row]) == [7]
    assert guard.recomputed == 2


@pytest.mark.slow
def test_on_result_streams_each_request_once(smol: HFBackend) -> None:
    seen: list[int] = []
    requests = [chat(q, 8) for q in QUESTIONS[:3]]
    responses = smol.generate(requests, on_result=lambda i, r: seen.append(i))
    assert sorted(seen) == [0, 1, 2] and len(responses) == 3
    assert isinstance(smol, LanguageModel)


# ----------------------------------------------------------------------------- tiny model, fast
@pytest.fixture(scope="module")
def tiny(llama_tied) -> HFBackend:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(llama_tied.target, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(llama_tied.target)
    return HFBackend(model, tokenizer, fingerprint="tiny", batch_size=2, progress=True)


def test_bad_arguments_are_one_line_errors(tiny: HFBackend) -> None:
    with pytest.raises(InvalidArgumentError, match="batch_size 0"):
        with_batch(tiny, 0)
    with pytest.raises(InvalidArgumentError, match="exactly one of messages or prompt"):
        tiny.generate([GenerateRequest(None, None, (), 4)])
    with pytest.raises(InvalidArgumentError, match="empty"):
        tiny.loglikelihood([LoglikelihoodRequest(None, "w1 w2", ("",))])


def test_results_come_back_in_input_order_with_budgets(tiny: HFBackend) -> None:
    prompts = ["w1", "w1 w2 w3 w4 w5 w6", "w2 w3", "w4 w5 w6 w7"]
    requests = [GenerateRequest(None, p, (), 3 + i) for i, p in enumerate(prompts)]
    batched = tiny.generate(requests)  # with the progress bar on
    alone = [tiny.generate([r])[0] for r in requests]
    assert [r.text for r in batched] == [r.text for r in alone]
    assert [r.n_generated_tokens for r in batched] == [r.n_generated_tokens for r in alone]
    assert all(r.n_generated_tokens <= 3 + i for i, r in enumerate(batched))


def test_name_identity_and_default_guard(tiny: HFBackend) -> None:
    assert tiny.name == "hf/float32"
    assert len(tiny.identity) == 64
    assert tiny.guard.margin == pytest.approx(1e-3)


def test_a_stale_fingerprint_is_refused(llama_tied) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(llama_tied.target, dtype=torch.float32).eval()
    lm = HFBackend(
        model, AutoTokenizer.from_pretrained(llama_tied.target), fingerprint="base", progress=False
    )
    assert lm.fingerprint == "base"
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)  # what an in-memory vector does
    with pytest.raises(InvalidArgumentError, match="weights changed"):
        _ = lm.fingerprint
    lm.fingerprint = "base+v"
    assert lm.fingerprint == "base+v"


def test_a_one_ulp_change_of_one_bfloat16_weight_is_caught(llama_tied) -> None:
    """The stale-weights guard reads raw bits: a change a bfloat16 sum rounds away still counts."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(llama_tied.target, dtype=torch.bfloat16).eval()
    lm = HFBackend(
        model, AutoTokenizer.from_pretrained(llama_tied.target), fingerprint="base", progress=False
    )
    weight = model.model.layers[1].mlp.up_proj.weight
    before = weight.sum()
    with torch.no_grad():
        weight.view(torch.int16).view(-1)[5] += 1  # the next bfloat16 value of one element
    assert torch.equal(weight.sum(), before)  # what the former checksum (a sum in the dtype) saw
    with pytest.raises(InvalidArgumentError, match="weights changed"):
        _ = lm.fingerprint
    with torch.no_grad():
        weight.view(torch.int16).view(-1)[5] -= 1
    assert lm.fingerprint == "base"
