"""Builders and comparisons for the vLLM group: tiny families vLLM's CPU attention accepts (head_dim
64; it rejects 16), real task requests, raw prompt log-probabilities, response comparisons."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fixtures import TOKENS, VOCAB, perturb, random_state, save_model
from rvec.eval.types import GenerateRequest, LoglikelihoodRequest, Response

# (task, preset): every task family, raw prompts (lm-eval) and chat-templated ones (paper, lm-eval-chat).
TASKS = (
    ("gsm8k", "lm-eval"),
    ("gsm8k", "paper"),
    ("humaneval", "lm-eval"),
    ("bbh:boolean_expressions", "lm-eval"),
    ("bbh:date_understanding", "paper"),
    ("sciq", "lm-eval"),
    ("sciq", "lm-eval-chat"),
)

LL_TOLERANCE = 1e-3

ENGINE = {"enforce_eager": True, "kv_cache_gib": 0.5}
"""Engine settings of every test engine: eager (no compile, faster start), a small KV cache."""


@dataclass
class TinyFamily:
    """A target and the vector ``v = θ_RL − θ_SFT`` of its family's donors."""

    target: Path
    vector: Path


@dataclass
class LiveEngine:
    """A session engine with ``v`` attached, and its prompt log-probabilities before any α."""

    state: Any  # VllmModelState
    family: TinyFamily
    fresh: list[list[float]]

    def reset(self) -> None:
        """Back to θ₀ with no selection (tests may attach other vectors or select tensors)."""
        if self.state.selection is not None:
            self.state.select(None)
        self.state.set_vectors([])


def tiny_config(arch: str, *, tied: bool):
    from transformers import LlamaConfig, Qwen2Config

    common = dict(
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 64
        num_key_value_heads=1,
        vocab_size=VOCAB,
        max_position_embeddings=8192,  # real few-shot prompts are thousands of characters = tokens
        tie_word_embeddings=tied,
        # Wide weights give peaked logits: greedy texts vary instead of repeating one token.
        initializer_range=0.3,
        eos_token_id=TOKENS - 1,
        pad_token_id=TOKENS - 1,
        bos_token_id=TOKENS - 2,
    )
    return Qwen2Config(**common) if arch == "qwen2" else LlamaConfig(**common)


def build_tiny(root: Path, arch: str, *, tied: bool) -> TinyFamily:
    from rvec.vector.extract import extract

    config = tiny_config(arch, tied=tied)
    base = random_state(config, seed=11)
    sft = perturb(base, seed=12, scale=0.05)
    rl = perturb(sft, seed=13, scale=0.2)
    target = perturb(base, seed=14, scale=0.05)
    save_model(sft, config, root / "sft")
    save_model(rl, config, root / "rl")
    save_model(target, config, root / "target")
    extract(root / "sft", root / "rl", root / "v")
    return TinyFamily(target=root / "target", vector=root / "v")


def task_requests(
    data_dir: Path, *, items: int, max_new_tokens: int
) -> tuple[list[GenerateRequest], list[LoglikelihoodRequest]]:
    """The first ``items`` requests of every task in :data:`TASKS`, generation budgets capped."""
    from rvec.eval.data import DataSource
    from rvec.eval.presets import get_preset
    from rvec.eval.tasks import get_task

    source = DataSource(data_dir)
    generate, score = [], []
    for name, preset_name in TASKS:
        task, preset = get_task(name), get_preset(preset_name)
        for doc in task.docs(source, limit=items):
            request = task.request(doc, preset)
            if isinstance(request, GenerateRequest):
                cap = min(request.max_new_tokens, max_new_tokens)
                generate.append(dataclasses.replace(request, max_new_tokens=cap))
            else:
                score.append(request)
    return generate, score


def assert_same_texts(got: list[Response], expected: list[Response]) -> None:
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert (a.text, a.n_generated_tokens) == (b.text, b.n_generated_tokens), f"request {i}"


def assert_close_loglikelihoods(got: list[Response], expected: list[Response]) -> None:
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.continuation_lengths == b.continuation_lengths, f"request {i}"
        assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=LL_TOLERANCE), f"request {i}"


def tokens_of(tokenizer: Any) -> list[list[int]]:
    """A few token sequences, short and long, to compare prompt log-probabilities on."""
    texts = [
        "Question: Natalia sold clips to 48 of her friends in April. How many clips did she sell?",
        "def add(a, b):\n    return a + b\n" * 6,
        "The quick brown fox jumps over the lazy dog. " * 12,
    ]
    return [list(tokenizer(t)["input_ids"]) for t in texts]


def prompt_logprobs(llm: Any, sequences: list[list[int]]) -> list[list[float]]:
    """vLLM's log-probability of every prompt token after the first, per sequence (raw floats)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0, detokenize=False)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=s) for s in sequences], params, use_tqdm=False)
    return [
        [step[token].logprob for step, token in zip(o.prompt_logprobs[1:], seq[1:], strict=True)]
        for o, seq in zip(outputs, sequences, strict=True)
    ]


def greedy_logprobs(llm: Any, sequence: list[int], n: int) -> tuple[list[int], float]:
    """Greedy tokens and their summed log-probability (sensitive to every bit of the weights)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(temperature=0.0, max_tokens=n, logprobs=0, detokenize=False, ignore_eos=True)
    out = llm.generate([TokensPrompt(prompt_token_ids=sequence)], params, use_tqdm=False)[0].outputs[0]
    return list(out.token_ids), float(out.cumulative_logprob)
