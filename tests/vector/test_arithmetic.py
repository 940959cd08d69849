"""Golden arithmetic of extract/apply against a float32 torch reference, on tiny real checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fixtures import Family, perturb, random_state, save_model, tiny_config
from helpers import load_folder
from rvec.checkpoint.source import resolve
from rvec.vector.apply import apply
from rvec.vector.artifact import DonorPair, read_vector
from rvec.vector.extract import extract
from rvec.vector.masks import Selection, parse_layers, parse_schedule


@pytest.fixture(scope="module")
def vec_untied(qwen_untied: Family, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("v") / "vec"
    extract(qwen_untied.sft, qwen_untied.rl, out, max_shard_bytes=20_000)
    return out


def reference(family: Family, alpha: float) -> dict[str, torch.Tensor]:
    sft, rl, target = load_folder(family.sft), load_folder(family.rl), load_folder(family.target)
    return {k: target[k].float() + alpha * (rl[k].float() - sft[k].float()) for k in target}


def test_extract_writes_sharded_float32_vector_with_manifest(vec_untied: Path, qwen_untied: Family) -> None:
    files = sorted(p.name for p in vec_untied.iterdir())
    assert "rvec.json" in files and "README.md" in files and "vector.safetensors.index.json" in files
    assert sum(f.startswith("vector-") for f in files) >= 3
    manifest = json.loads((vec_untied / "rvec.json").read_text())
    sft, rl = load_folder(qwen_untied.sft), load_folder(qwen_untied.rl)
    v = load_folder(vec_untied)
    assert set(v) == set(sft)
    for name, t in v.items():
        expected = rl[name].float() - sft[name].float()
        assert t.dtype == torch.float32 and torch.equal(t, expected)
        rec = manifest["tensors"][name]
        assert rec["shape"] == list(t.shape)
        # float32 dot products per block, accumulated in float64: ~1e-6 relative (extract.py).
        assert rec["norm"] == pytest.approx(float(expected.double().norm()), rel=1e-5)
        assert rec["rel_norm"] == pytest.approx(
            float(expected.double().norm() / sft[name].double().norm()), rel=1e-5
        )
        assert rec["zero_fraction"] == pytest.approx(float((expected == 0).double().mean()))
    sha = manifest["sources"]["sft"]["sha256"]
    assert set(sha) == {p.name for p in qwen_untied.sft.glob("*.safetensors")} and all(
        len(h) == 64 for h in sha.values()
    )
    assert manifest["family"]["architecture"] == "Qwen2ForCausalLM"
    assert set(manifest["files"]) == {f for f in files if f.startswith("vector-")}


@pytest.mark.parametrize("alpha", [1.0, 0.37, -1.0])
def test_apply_float32_equals_reference_exactly(
    vec_untied: Path, qwen_untied: Family, tmp_path: Path, alpha: float
) -> None:
    apply([vec_untied], qwen_untied.target, tmp_path / "out", alphas=[alpha], max_shard_bytes=20_000)
    out = load_folder(tmp_path / "out")
    ref = reference(qwen_untied, alpha)
    assert set(out) == set(ref)
    for k in ref:
        assert out[k].dtype == torch.float32
        assert torch.equal(out[k], ref[k]), k


def test_apply_bf16_is_within_one_rounding_step(
    vec_untied: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    apply([vec_untied], qwen_untied.target, tmp_path / "out", alphas=[0.5], dtype=torch.bfloat16)
    out = load_folder(tmp_path / "out")
    for k, ref in reference(qwen_untied, 0.5).items():
        assert out[k].dtype == torch.bfloat16
        assert torch.equal(out[k], ref.to(torch.bfloat16)), k  # one cast of the float32 result: exactly RNE
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["dtype"] == "bfloat16"


def test_plus_then_minus_alpha_returns_original(
    vec_untied: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    apply([vec_untied], qwen_untied.target, tmp_path / "plus", alphas=[1.0])
    apply([vec_untied], tmp_path / "plus", tmp_path / "back", alphas=[-1.0])
    back, original = load_folder(tmp_path / "back"), load_folder(qwen_untied.target)
    for k in original:
        assert torch.allclose(
            back[k],
            original[k],
            rtol=0,
            atol=4 * torch.finfo(torch.float32).eps * float(original[k].abs().max() + 1),
        )


def test_several_vectors_sum_in_order(vec_untied: Path, qwen_untied: Family, tmp_path: Path) -> None:
    second = tmp_path / "vec2"
    extract(qwen_untied.target, qwen_untied.rl, second, lineage=False)
    apply([vec_untied, second], qwen_untied.target, tmp_path / "out", alphas=[0.5, -0.25])
    v1, v2 = load_folder(vec_untied), load_folder(second)
    target, out = load_folder(qwen_untied.target), load_folder(tmp_path / "out")
    for k in target:
        assert torch.equal(out[k], target[k].float() + 0.5 * v1[k] + -0.25 * v2[k]), k


def test_fused_donor_pair_equals_extract_then_apply(
    vec_untied: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    pair = DonorPair(sft=resolve(qwen_untied.sft), rl=resolve(qwen_untied.rl))
    apply([pair], qwen_untied.target, tmp_path / "fused", alphas=[0.7], dtype=torch.bfloat16)
    apply([vec_untied], qwen_untied.target, tmp_path / "two-step", alphas=[0.7], dtype=torch.bfloat16)
    a, b = load_folder(tmp_path / "fused"), load_folder(tmp_path / "two-step")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_masks_touch_exactly_the_named_tensors(vec_untied: Path, qwen_untied: Family, tmp_path: Path) -> None:
    selection = Selection(include=(r"mlp",), exclude=(r"down_proj",), layers=parse_layers("1-2"))
    result = apply([vec_untied], qwen_untied.target, tmp_path / "out", alphas=[1.0], selection=selection)
    out, target, ref = (
        load_folder(tmp_path / "out"),
        load_folder(qwen_untied.target),
        reference(qwen_untied, 1.0),
    )
    touched = {k for k in target if not torch.equal(out[k], target[k])}
    expected = {
        k for k in target if "mlp" in k and "down_proj" not in k and (".layers.1." in k or ".layers.2." in k)
    }
    assert touched == expected
    assert all(torch.equal(out[k], ref[k]) for k in expected)
    assert result.provenance["selection"]["layers"] == [1, 2]


def test_linear_schedule_scales_alpha_by_depth(vec_untied: Path, qwen_untied: Family, tmp_path: Path) -> None:
    selection = Selection(schedule=parse_schedule("linear:0:1.5:outside=0"))
    apply([vec_untied], qwen_untied.target, tmp_path / "out", alphas=[2.0], selection=selection)
    out, target, v = load_folder(tmp_path / "out"), load_folder(qwen_untied.target), load_folder(vec_untied)
    for k in target:
        if ".layers." in k:
            layer = int(k.split(".layers.")[1].split(".")[0])
            factor = 2.0 * (0 + 1.5 * layer / 3)
        else:
            factor = 0.0
        expected = target[k] if factor == 0 else target[k].float() + factor * v[k]
        assert torch.equal(out[k], expected), k


def test_output_loads_with_transformers_and_generates(
    vec_untied: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    apply([vec_untied], qwen_untied.target, tmp_path / "out", alphas=[1.0], dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(qwen_untied.target).chat_template
    ids = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False)
    assert ids.shape == (1, 7)
    card = (tmp_path / "out" / "README.md").read_text()
    assert card.startswith("---\nbase_model: ") and "- reasoning-vector" in card
    prov = json.loads((tmp_path / "out" / "rvec.json").read_text())
    assert prov["vectors"][0]["alpha"] == 1.0 and set(prov["files"]) == {
        p.name for p in (tmp_path / "out").glob("*.safetensors")
    }


def test_delta_survival_counts_entries_erased_by_rounding(
    vec_untied: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    result = apply([vec_untied], qwen_untied.target, tmp_path / "out", alphas=[1e-4], dtype=torch.bfloat16)
    target, v = load_folder(qwen_untied.target), load_folder(vec_untied)
    nonzero = erased = 0
    for k in target:
        delta = 1e-4 * v[k]
        out = (target[k].float() + delta).to(torch.bfloat16)
        nonzero += int((delta != 0).sum())
        erased += int(((delta != 0) & (out == target[k].to(torch.bfloat16))).sum())
    assert result.survival.nonzero == nonzero and result.survival.erased == erased
    assert 0.5 < result.survival.erased_fraction <= 1.0  # a tiny α mostly vanishes in bf16


@pytest.fixture(scope="module")
def tied_vec(llama_tied: Family, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tv") / "vec"
    extract(llama_tied.sft, llama_tied.rl, out)
    return out


def test_tied_model_stays_tied(tied_vec: Path, llama_tied: Family, tmp_path: Path) -> None:
    assert "lm_head.weight" not in load_folder(tied_vec)
    apply([tied_vec], llama_tied.target, tmp_path / "out", alphas=[1.0])
    out = load_folder(tmp_path / "out")
    assert "lm_head.weight" not in out
    assert json.loads((tmp_path / "out" / "config.json").read_text())["tie_word_embeddings"] is True
    ref = reference(llama_tied, 1.0)
    assert all(torch.equal(out[k], ref[k]) for k in out)


def test_tied_vector_on_untied_target_updates_both_matrices(tied_vec: Path, tmp_path: Path) -> None:
    config = tiny_config("llama", tied=False)
    base = random_state(tiny_config("llama", tied=True), seed=1)
    state = perturb(base, seed=9, scale=0.05)
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    target = save_model(state, config, tmp_path / "untied-target")
    result = apply([tied_vec], target, tmp_path / "out", alphas=[1.0])
    out, t, v = load_folder(tmp_path / "out"), load_folder(target), load_folder(tied_vec)
    embed_delta = v["model.embed_tokens.weight"]
    assert torch.equal(out["lm_head.weight"], t["lm_head.weight"] + embed_delta)
    assert torch.equal(out["model.embed_tokens.weight"], t["model.embed_tokens.weight"] + embed_delta)
    assert any("tied delta" in p for p in result.provenance["policies"])


def test_untied_vector_on_tied_target_unties_output(
    vec_untied: Path, tmp_path: Path, qwen_untied: Family
) -> None:
    base = random_state(tiny_config("qwen2", tied=False), seed=1)
    state = perturb(base, seed=11, scale=0.05)
    state.pop("lm_head.weight")
    target = save_model(state, tiny_config("qwen2", tied=True), tmp_path / "tied-target")
    result = apply([vec_untied], target, tmp_path / "out", alphas=[1.0])
    out, t, v = load_folder(tmp_path / "out"), load_folder(target), load_folder(vec_untied)
    assert torch.equal(out["lm_head.weight"], t["model.embed_tokens.weight"] + v["lm_head.weight"])
    assert torch.equal(
        out["model.embed_tokens.weight"], t["model.embed_tokens.weight"] + v["model.embed_tokens.weight"]
    )
    assert json.loads((tmp_path / "out" / "config.json").read_text())["tie_word_embeddings"] is False
    assert result.provenance["untied_lm_head"] is True


def _padded_target(tmp_path: Path, rows: int) -> Path:
    config = tiny_config("qwen2", tied=False, vocab=rows)
    base = random_state(tiny_config("qwen2", tied=False), seed=1)
    state = perturb(base, seed=12, scale=0.05)
    extra = rows - state["model.embed_tokens.weight"].shape[0]
    for k in ("model.embed_tokens.weight", "lm_head.weight"):
        state[k] = torch.cat([state[k], torch.randn(extra, state[k].shape[1]) * 0.02])
    return save_model(state, config, tmp_path / f"target-{rows}")


def test_vocab_overlap_policy_applies_to_shared_rows_only(vec_untied: Path, tmp_path: Path) -> None:
    target = _padded_target(tmp_path, 176)
    result = apply([vec_untied], target, tmp_path / "out", alphas=[1.0], embeddings="overlap")
    out, t, v = load_folder(tmp_path / "out"), load_folder(target), load_folder(vec_untied)
    for k in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(out[k][:160], t[k][:160] + v[k])
        assert torch.equal(out[k][160:], t[k][160:])
    assert any("overlap" in p for p in result.provenance["policies"])


def test_vocab_skip_policy_leaves_embeddings(vec_untied: Path, tmp_path: Path) -> None:
    target = _padded_target(tmp_path, 176)
    apply([vec_untied], target, tmp_path / "out", alphas=[1.0], embeddings="skip")
    out, t = load_folder(tmp_path / "out"), load_folder(target)
    assert torch.equal(out["lm_head.weight"], t["lm_head.weight"])
    assert torch.equal(out["model.embed_tokens.weight"], t["model.embed_tokens.weight"])
    assert not torch.equal(out["model.norm.weight"], t["model.norm.weight"])


def test_read_vector_round_trip(vec_untied: Path) -> None:
    vec = read_vector(vec_untied)
    assert vec.shapes["model.embed_tokens.weight"] == (160, 32)
    assert torch.equal(
        torch.from_numpy(vec.read("model.norm.weight")), load_folder(vec_untied)["model.norm.weight"]
    )


def test_worker_threads_and_block_size_do_not_change_a_bit(
    vec_untied: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    pair = DonorPair(sft=resolve(qwen_untied.sft), rl=resolve(qwen_untied.rl))
    runs = {
        (workers, block): apply(
            [pair, vec_untied],
            qwen_untied.target,
            tmp_path / f"w{workers}-b{block}",
            alphas=[0.3, -0.45],
            dtype=torch.bfloat16,
            workers=workers,
            block_elements=block,
            max_shard_bytes=20_000,
        )
        for workers, block in [(1, 1 << 18), (3, 1000), (2, 777)]
    }
    (_, first), *others = runs.items()
    reference_files = first.provenance["files"]
    for key, result in others:
        # Same shards, byte for byte (their sha256), and the same survival counts per tensor.
        assert result.provenance["files"] == reference_files, key
        assert result.survival.per_tensor == first.survival.per_tensor, key
    assert first.survival.nonzero > 0
