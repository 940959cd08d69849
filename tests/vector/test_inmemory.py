"""In-memory application: equal to the written model, restored bit-exactly, α sweeps without reload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from fixtures import Family
from rvec.errors import IncompatibleError
from rvec.vector.apply import apply
from rvec.vector.extract import extract
from rvec.vector.inmemory import InMemoryVectors, applied
from rvec.vector.masks import Selection


@pytest.fixture(scope="module")
def vec(qwen_untied: Family, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("im") / "vec"
    extract(qwen_untied.sft, qwen_untied.rl, out)
    return out


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("alpha", [1.0, -0.6])
def test_in_memory_equals_written_model_and_restores_bit_exactly(
    vec: Path, qwen_untied: Family, qwen_bf16: Family, tmp_path: Path, dtype: torch.dtype, alpha: float
) -> None:
    target = (
        qwen_untied.target if dtype == torch.float32 else qwen_bf16.target
    )  # stored in the dtype it runs in
    model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype)
    before = snapshot(model)
    apply([vec], target, tmp_path / "out", alphas=[alpha])
    written = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=dtype).state_dict()
    with applied(model, [(vec, alpha)]):
        now = model.state_dict()
        assert all(torch.equal(now[k], written[k]) for k in written)
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_alpha_sweep_is_not_cumulative(vec: Path, qwen_untied: Family) -> None:
    model = AutoModelForCausalLM.from_pretrained(qwen_untied.target)
    iv = InMemoryVectors(model, [vec])
    iv.set_alphas([0.5])
    half = snapshot(model)
    iv.set_alphas([2.0])
    iv.set_alphas([0.5])
    assert all(torch.equal(model.state_dict()[k], half[k]) for k in half)
    iv.set_alphas([0.0])
    iv.restore()
    fresh = AutoModelForCausalLM.from_pretrained(qwen_untied.target).state_dict()
    assert all(torch.equal(model.state_dict()[k], fresh[k]) for k in fresh)


def test_selection_limits_touched_parameters(vec: Path, qwen_untied: Family) -> None:
    model = AutoModelForCausalLM.from_pretrained(qwen_untied.target)
    iv = InMemoryVectors(model, [vec], selection=Selection(include=(r"self_attn\.q_proj",)))
    assert iv.touched and all("q_proj" in n for n in iv.touched)


def test_restore_happens_even_when_the_body_raises(vec: Path, qwen_untied: Family) -> None:
    model = AutoModelForCausalLM.from_pretrained(qwen_untied.target)
    before = snapshot(model)
    with pytest.raises(RuntimeError), applied(model, [(vec, 1.0)]):
        raise RuntimeError("evaluation crashed")
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)


def test_untied_vector_on_tied_live_model_is_refused(vec: Path, llama_tied: Family) -> None:
    model = AutoModelForCausalLM.from_pretrained(llama_tied.target)
    with pytest.raises(IncompatibleError):
        InMemoryVectors(model, [vec])


def test_a_switch_between_slices_rewrites_only_what_either_touches(vec: Path, qwen_untied: Family) -> None:
    """Parameters whose terms (i, αᵢ·fᵢ) stay the same are left alone, and the weights are still those
    a fresh holder sets: what the vLLM engine's partial reload relies on."""
    model = AutoModelForCausalLM.from_pretrained(qwen_untied.target)
    before = snapshot(model)
    iv = InMemoryVectors(model, [vec])
    attention, mlp = Selection(include=(r"self_attn\.",)), Selection(include=(r"\.mlp\.",))
    iv.set_alphas([1.0], [attention])
    first = set(iv.changed)
    assert first and all("self_attn." in n for n in first)
    iv.set_alphas([1.0], [attention])  # the same state again: nothing rewritten
    assert iv.changed == []
    iv.set_alphas([1.0], [mlp])
    assert first < set(iv.changed) and all("self_attn." in n or ".mlp." in n for n in iv.changed)
    incremental = snapshot(model)
    iv.set_alphas([0.7], [mlp])  # a new α rewrites the slice's parameters only
    assert iv.changed and all(".mlp." in n for n in iv.changed)
    iv.restore()
    assert iv.changed and all(".mlp." in n for n in iv.changed)  # the attention is θ₀ already
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)

    fresh_model = AutoModelForCausalLM.from_pretrained(qwen_untied.target)
    InMemoryVectors(fresh_model, [vec]).set_alphas([1.0], [mlp])
    assert all(torch.equal(incremental[k], t) for k, t in fresh_model.state_dict().items())
