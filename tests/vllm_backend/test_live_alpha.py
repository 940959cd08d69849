"""α on the running engine: the HF backend's in-memory arithmetic, streamed into vLLM whole fused
group by whole fused group, restored bit-exactly, with the prefix cache reset on every switch."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from vllm_helpers import (
    ENGINE,
    LiveEngine,
    TinyFamily,
    assert_close_loglikelihoods,
    assert_same_texts,
    greedy_logprobs,
    prompt_logprobs,
    task_requests,
    tokens_of,
)

from rvec.vector.inmemory import InMemoryVectors
from rvec.vector.masks import Selection


@pytest.mark.parametrize("family", ["llama", "qwen"])
def test_alpha_one_answers_as_the_hf_backends_in_memory_alpha(
    family: str, request: pytest.FixtureRequest, data_dir: Path
) -> None:
    live: LiveEngine = request.getfixturevalue(f"{family}_live")
    hf = request.getfixturevalue(f"{family}_hf")
    generate, score = task_requests(data_dir, items=2, max_new_tokens=32)
    live.state.set_vectors([(live.family.vector, 1.0)])
    lm = live.state.language_model()
    applier = InMemoryVectors(hf.model, [live.family.vector])
    applier.set_alphas([1.0])
    hf.fingerprint = lm.fingerprint  # the HF backend checks its weights against the fingerprint
    try:
        assert_same_texts(lm.generate(generate), hf.generate(generate))
        assert_close_loglikelihoods(lm.loglikelihood(score), hf.loglikelihood(score))
    finally:
        applier.restore()
        hf.fingerprint = live.state.base_fingerprint


@pytest.mark.parametrize("family", ["llama", "qwen"])
def test_alpha_zero_after_alpha_one_is_bit_identical_to_a_fresh_engine(
    family: str, request: pytest.FixtureRequest
) -> None:
    live: LiveEngine = request.getfixturevalue(f"{family}_live")
    sequences = tokens_of(live.state.tokenizer)
    live.state.set_vectors([(live.family.vector, 1.0)])
    moved = prompt_logprobs(live.state.llm, sequences)
    assert moved != live.fresh
    live.state.set_vectors([(live.family.vector, 0.0)])
    assert prompt_logprobs(live.state.llm, sequences) == live.fresh  # exact floats
    assert live.state.fingerprint == live.state.base_fingerprint


def test_a_switch_resets_the_prefix_cache(llama_live: LiveEngine) -> None:
    state = llama_live.state
    prompt = tokens_of(state.tokenizer)[2]  # 500+ tokens: many full KV blocks
    assert state.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching
    # Earlier tests may have left this prompt's θ₀ blocks cached; a prefill that reads cached blocks
    # computes only the tail, with other matmul shapes, so its floats differ (~5e-6) from a full
    # prefill. Every measurement compared below starts from an empty cache.
    assert state.llm.reset_prefix_cache()
    base = greedy_logprobs(state.llm, prompt, 8)  # caches the prompt's blocks under θ₀
    # The hazard this guards against: a switch without a reset serves θ₀'s cached blocks.
    state.llm.collective_rpc("rvec_set_alphas", args=([1.0],))
    stale = greedy_logprobs(state.llm, prompt, 8)
    assert state.llm.reset_prefix_cache()
    fresh = greedy_logprobs(state.llm, prompt, 8)
    assert stale != fresh and fresh != base
    state.llm.collective_rpc("rvec_restore")
    assert state.llm.reset_prefix_cache()
    assert greedy_logprobs(state.llm, prompt, 8) == base  # θ₀'s blocks cached again
    # Through the state, the same switch gives the uncached answer.
    state.set_vectors([(llama_live.family.vector, 1.0)])
    assert greedy_logprobs(state.llm, prompt, 8) == fresh


def test_a_partial_fused_group_is_sent_whole(llama_live: LiveEngine, llama_hf) -> None:
    """Only q_proj selected: k_proj and v_proj of the fused qkv_proj must be sent too (as θ₀), or
    vLLM rebuilds the layer with uninitialised k/v (NaN log-likelihoods)."""
    state = llama_live.state
    only_q = Selection(include=(r"q_proj",))
    summary = state.select(only_q)
    assert summary["touched"] == [f"model.layers.{i}.self_attn.q_proj.weight" for i in range(2)]
    assert {f"model.layers.0.self_attn.{p}_proj.weight" for p in "qkv"} <= set(summary["sent"])
    assert not any("mlp" in n or "o_proj" in n for n in summary["sent"])
    requests = _sciq()
    state.set_vectors([(llama_live.family.vector, 1.0)])
    got = state.language_model().loglikelihood(requests)
    assert all(math.isfinite(x) for r in got for x in r.loglikelihoods or ())
    applier = InMemoryVectors(llama_hf.model, [llama_live.family.vector], selection=only_q)
    applier.set_alphas([1.0])
    llama_hf.fingerprint = "only-q"
    try:
        assert_close_loglikelihoods(got, llama_hf.loglikelihood(requests))
    finally:
        applier.restore()
        llama_hf.fingerprint = state.base_fingerprint
    assert state.fingerprint not in (state.base_fingerprint,)


def test_a_merge_computed_in_memory_answers_as_hf_and_restores_bit_exactly(
    tiny_llama: TinyFamily, llama_hf, data_dir: Path, tmp_path: Path
) -> None:
    """A study's combination on vLLM: the workers rebuild the merge from its recipe (the spec and
    the input folders), answer as the HF backend with the same merge in memory, and α = 0 gives
    back the fresh engine's log-probabilities exactly. Its own engine: the session engines keep
    what they attach, and the other tests expect ``v`` alone."""
    from rvec.model.vllm.settings import VLLMSettings
    from rvec.model.vllm.state import VllmModelState
    from rvec.vector.extract import extract
    from rvec.vector.merge import merge_spec
    from rvec.vector.merge_recipe import HashedMerge

    v = tiny_llama.vector
    v1 = extract(v.parent / "sft", tiny_llama.target, tmp_path / "v1").path
    ties = HashedMerge.of([v, v1], merge_spec("ties", 2, params={"density": 0.5}))
    generate, score = task_requests(data_dir, items=2, max_new_tokens=32)
    state = VllmModelState.load(tiny_llama.target, VLLMSettings(max_model_len=8192, **ENGINE))
    try:
        fresh = prompt_logprobs(state.llm, tokens_of(state.tokenizer))
        state.set_vectors([(ties, 1.0)])
        lm = state.language_model()
        assert lm.fingerprint != state.base_fingerprint
        applier = InMemoryVectors(llama_hf.model, [ties])
        applier.set_alphas([1.0])
        llama_hf.fingerprint = lm.fingerprint
        try:
            assert_same_texts(lm.generate(generate), llama_hf.generate(generate))
            assert_close_loglikelihoods(lm.loglikelihood(score), llama_hf.loglikelihood(score))
        finally:
            applier.restore()
            llama_hf.fingerprint = state.base_fingerprint
        state.set_vectors([(ties, 0.0)])
        assert state.llm.reset_prefix_cache()
        assert prompt_logprobs(state.llm, tokens_of(state.tokenizer)) == fresh
        assert state.fingerprint == state.base_fingerprint
    finally:
        state.close()
        for vector in ties.vectors:  # read here through the HF applier: its shards are open
            vector.close()


def test_a_switch_between_slices_reloads_only_what_either_touches(llama_live: LiveEngine, llama_hf) -> None:
    """Attention only, then MLP only: the second switch sends the attention and MLP groups, not the
    others; the same state again sends nothing; the engine answers as the HF backend's fresh holder
    of the MLP slice, and α = 0 is bit-identical to a fresh engine."""
    state, v = llama_live.state, llama_live.family.vector
    attention, mlp = Selection(include=(r"self_attn\.",)), Selection(include=(r"\.mlp\.",))
    state.attach([v])
    full = state.streaming["sent_bytes"]
    first = state.set_alphas([1.0], [attention])
    second = state.set_alphas([1.0], [mlp])
    assert 0 < first["sent_bytes"] < second["sent_bytes"] <= full
    again = state.set_alphas([0.7], [mlp])
    assert 0 < again["sent_bytes"] < second["sent_bytes"]  # the MLP groups alone
    state.set_alphas([1.0], [mlp])
    requests = _sciq()
    got = state.language_model().loglikelihood(requests)
    applier = InMemoryVectors(llama_hf.model, [v], selection=mlp)
    applier.set_alphas([1.0])
    llama_hf.fingerprint = "mlp-only"
    try:
        assert_close_loglikelihoods(got, llama_hf.loglikelihood(requests))
    finally:
        applier.restore()
        llama_hf.fingerprint = state.base_fingerprint
    state.set_vectors([(v, 0.0)])
    assert state.llm.reset_prefix_cache()
    assert prompt_logprobs(state.llm, tokens_of(state.tokenizer)) == llama_live.fresh


def test_workers_report_the_state_they_hold(llama_live: LiveEngine) -> None:
    state = llama_live.state
    v = llama_live.family.vector
    state.set_vectors([(v, 0.5)])
    first = state.workers_state()
    assert [w["alphas"] for w in first] == [[0.5]]
    state.set_vectors([(v, 0.0)])
    state.set_vectors([(v, 0.5)])
    assert state.workers_state() == first  # the same bytes streamed, the same live weights


def test_a_vector_given_twice_is_refused_and_alphas_must_match_the_vectors(llama_live: LiveEngine) -> None:
    from rvec.errors import InvalidArgumentError

    v = llama_live.family.vector
    with pytest.raises(InvalidArgumentError, match="given twice"):
        llama_live.state.set_vectors([(v, 1.0), (v, 0.5)])
    with pytest.raises(InvalidArgumentError, match="1 vector"):
        llama_live.state.set_alphas([1.0, 1.0])
    assert llama_live.state.fingerprint == llama_live.state.base_fingerprint


def _sciq():
    from rvec.eval.types import LoglikelihoodRequest

    return [
        LoglikelihoodRequest(
            None, "Question: What do plants make in sunlight?\nAnswer:", (" sugar", " rocks")
        ),
        LoglikelihoodRequest(None, "The sky on a clear day is", (" blue", " green", " a color")),
    ]
