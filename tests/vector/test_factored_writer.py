"""``write_factored_vector``: the vector of a LoRA pair from its factors and its base checkpoint.

What ``rvec pair`` relies on: factors read from a live PEFT model apply (α = 1) as PEFT merges
them, within the documented float32 bound; untouched tensors cost no bytes, a SmolLM2-135M vector with rank-16
factors on every projection fits the 20 MB the repository allows, bad factors are one-line errors,
and compress / export-lora keep the zero tensors zero.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import peft
import pytest
import torch
from transformers import AutoModelForCausalLM

from fixtures import Family
from helpers import load_folder
from rvec.checkpoint.source import resolve
from rvec.errors import InvalidArgumentError
from rvec.vector.apply import apply
from rvec.vector.artifact import read_vector
from rvec.vector.compress import compress
from rvec.vector.factored import lora_factors, write_factored_vector
from rvec.vector.lora import UNEXPORTED_FILE, export_lora

RANK = 2
TRAINED = ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")  # a typical LoRA target set


def lora_like_factors(base: Path, rank: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name → (A, B)`` for the TRAINED projections of every block of ``base``, scale folded into B."""
    g = np.random.default_rng(seed)
    factors = {}
    for info in resolve(base).index:
        if any(f".{m}.weight" in info.name for m in TRAINED):
            out_dim, in_dim = info.shape
            a = g.standard_normal((rank, in_dim), dtype=np.float32)
            b = g.standard_normal((out_dim, rank), dtype=np.float32) * np.float32(1e-3)
            factors[info.name] = (a, b)
    return factors


@pytest.fixture(scope="module")
def pair_vector(qwen_untied: Family, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pairvec") / "vector"
    write_factored_vector(out, factors=lora_like_factors(qwen_untied.sft, RANK), base=qwen_untied.sft)
    return out


def test_base_fills_every_other_tensor_as_a_free_exact_zero(pair_vector: Path, qwen_untied: Family) -> None:
    v = read_vector(pair_vector)
    sft = resolve(qwen_untied.sft)
    floats = [t.name for t in sft.index if t.dtype.is_floating_point]
    assert list(v.shapes) == floats  # every float tensor, in the base's order
    assert v.config == sft.config and v.manifest["sources"]["sft"]["source"] == str(qwen_untied.sft)
    for name, rec in v.manifest["tensors"].items():
        if name in lora_like_factors(qwen_untied.sft, RANK):
            assert rec["encoding"] == "factored" and rec["rank"] == RANK and rec["norm"] > 0
            base_norm = float(np.linalg.norm(sft.read(name).astype(np.float64)))
            assert rec["rel_norm"] == pytest.approx(rec["norm"] / base_norm, rel=1e-6)
        else:
            assert rec["encoding"] == "sparse" and rec["kept"] == 0 and rec["norm"] == 0.0
            assert rec["zero_fraction"] == 1.0 and v.is_zero(name)
            assert v.index[f"{name}:values"].nbytes == 0
    assert (pair_vector / "lineage.safetensors").is_file()  # apply's lineage check has its probe


def test_smollm2_sized_rank_16_vector_fits_20_mb(tmp_path: Path) -> None:
    """SmolLM2-135M's shapes (30 blocks, hidden 576, MLP 1536, 3 KV heads of 64, vocab 49152, tied):
    rank-16 factors on the 7 projections of every block are 19.5 MB; the rest costs nothing."""
    hidden, mlp, kv, layers, vocab = 576, 1536, 192, 30, 49152
    shapes = {
        "self_attn.q_proj": (hidden, hidden),
        "self_attn.k_proj": (kv, hidden),
        "self_attn.v_proj": (kv, hidden),
        "self_attn.o_proj": (hidden, hidden),
        "mlp.gate_proj": (mlp, hidden),
        "mlp.up_proj": (mlp, hidden),
        "mlp.down_proj": (hidden, mlp),
    }
    g = np.random.default_rng(0)
    factors, zeros = {}, {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    for i in range(layers):
        for module, (out_dim, in_dim) in shapes.items():
            factors[f"model.layers.{i}.{module}.weight"] = (
                g.standard_normal((16, in_dim), dtype=np.float32),
                g.standard_normal((out_dim, 16), dtype=np.float32),
            )
        for norm in ("input_layernorm", "post_attention_layernorm"):
            zeros[f"model.layers.{i}.{norm}.weight"] = (hidden,)
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "intermediate_size": mlp,
        "num_hidden_layers": layers,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": vocab,
        "tie_word_embeddings": True,
    }
    write_factored_vector(
        tmp_path / "v", factors=factors, zeros=zeros, config=config, sources={"what": "shape test"}
    )
    size = sum(f.stat().st_size for f in (tmp_path / "v").iterdir())
    factor_bytes = 4 * sum(a.size + b.size for a, b in factors.values())
    assert factor_bytes < size <= 20_000_000, size
    v = read_vector(tmp_path / "v")
    assert v.shapes["model.embed_tokens.weight"] == (vocab, hidden) and v.is_zero("model.embed_tokens.weight")


DOWN = "model.layers.0.mlp.down_proj.weight"  # (32, 64)


def misfit(factors: dict, kind: str) -> None:
    """Spoil ``factors`` the way a caller could: an unknown name, swapped factors, a wrong width."""
    if kind == "unknown name":
        factors["model.layers.0.mlp.nope.weight"] = factors[DOWN]
    elif kind == "transposed":
        factors[DOWN] = tuple(x.T for x in factors[DOWN])
    else:
        factors[DOWN] = (np.ones((2, 5), np.float32), np.ones((32, 2), np.float32))


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("unknown name", "model.layers.0.mlp.nope.weight: not a floating-point tensor of"),
        ("transposed", f"{DOWN}: factors A (64, 2) and B (2, 32) do not multiply to a matrix"),
        ("wrong width", f"{DOWN}: shape (32, 5) but"),
    ],
)
def test_factors_that_do_not_fit_the_base_are_one_line_errors(
    qwen_untied: Family, tmp_path: Path, kind: str, fragment: str
) -> None:
    factors = lora_like_factors(qwen_untied.sft, RANK)
    misfit(factors, kind)
    with pytest.raises(InvalidArgumentError) as err:
        write_factored_vector(tmp_path / "v", factors=factors, base=qwen_untied.sft)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "v").exists()


def test_without_a_base_config_and_sources_are_required(qwen_untied: Family, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"pass base= .* or both config= and sources="):
        write_factored_vector(tmp_path / "v", factors=lora_like_factors(qwen_untied.sft, RANK), config={})


def test_compress_keeps_zero_tensors_zero_at_no_cost(pair_vector: Path, tmp_path: Path) -> None:
    v = read_vector(pair_vector)
    zero = [n for n in v.shapes if v.is_zero(n)]
    for kwargs in ({"rank": 1}, {"density": 0.5}):
        result = compress(v, tmp_path / str(kwargs), **kwargs)
        assert result.zero == zero == result.vector.manifest["compression"]["zero"]
        for name in zero:
            rec = result.vector.manifest["tensors"][name]
            assert rec["encoding"] == "sparse" and rec["kept"] == 0 and rec["relative_error"] == 0.0


def test_adapter_of_a_lora_pair_vector_reproduces_it_exactly(
    pair_vector: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    """Rank ≥ the factors' rank: the adapter holds the factors themselves, nothing is unexported, and
    PEFT's merge equals ``rvec apply`` of the vector (within float32 GEMM rounding)."""
    export = export_lora(pair_vector, tmp_path / "adapter", rank=4)
    v = read_vector(pair_vector)
    trained = sorted(lora_like_factors(qwen_untied.sft, RANK))
    assert sorted(m + ".weight" for m in export.modules) == trained
    assert export.unexported == [] and export.relative_error == 0.0
    assert sorted(export.zero) == sorted(set(v.shapes) - set(trained))
    recorded = json.loads((tmp_path / "adapter" / UNEXPORTED_FILE).read_text())
    assert recorded["unexported"] == [] and sorted(recorded["zero"]) == sorted(export.zero)

    apply([pair_vector], qwen_untied.target, tmp_path / "applied", alphas=[1.0])
    model = AutoModelForCausalLM.from_pretrained(qwen_untied.target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        merged = peft.PeftModel.from_pretrained(model, tmp_path / "adapter").merge_and_unload().state_dict()
    applied, original = load_folder(tmp_path / "applied"), load_folder(qwen_untied.target)
    for name, want in applied.items():
        if name in trained:
            torch.testing.assert_close(merged[name], want, rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(merged[name], original[name]) and torch.equal(want, original[name]), name
    assert math.isclose(sum(v.manifest["tensors"][n]["norm"] ** 2 for n in export.zero), 0.0)


def peft_lora(base: Path, *, r: int, alpha: int) -> peft.PeftModel:
    """A PEFT LoRA on ``base`` with random A and B (as after training), scaling ``alpha / r``."""
    torch.manual_seed(0)
    config = peft.LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=["q_proj", "v_proj", "down_proj", "embed_tokens"],
        init_lora_weights=False,  # B nonzero: the adapter changes the model
    )
    return peft.get_peft_model(AutoModelForCausalLM.from_pretrained(base), config)


@pytest.mark.parametrize(("r", "alpha"), [(4, 12), (4, 16)])  # scaling 3, and 4 (a power of two)
def test_peft_factors_apply_as_peft_merges_them(
    qwen_untied: Family, tmp_path: Path, r: int, alpha: int
) -> None:
    """α = 1 of the factored vector lands within the docstring's bound of PEFT's merged weights
    ``W + (B @ A)·scaling``; the dense vector of PEFT's own deltas lands on them bit for bit."""
    model = peft_lora(qwen_untied.sft, r=r, alpha=alpha)
    factors = lora_factors(model)
    layers = {n.removeprefix("base_model.model.") + ".weight": m for n, m in model.named_modules()}
    deltas = {name: layers[name].get_delta_weight("default").detach().numpy() for name in factors}
    blocks = model.config.num_hidden_layers
    assert len(factors) == 3 * blocks + 1 and {s for _, _, s in factors.values()} == {alpha / r}
    write_factored_vector(tmp_path / "factored", factors=factors, base=qwen_untied.sft)
    write_factored_vector(tmp_path / "dense", factors={}, dense=deltas, base=qwen_untied.sft)
    merged = {k: t.detach().clone() for k, t in model.merge_and_unload().state_dict().items()}
    for vec in ("factored", "dense"):
        apply([tmp_path / vec], qwen_untied.sft, tmp_path / f"applied-{vec}", alphas=[1.0])
    via_factors, via_dense = (
        load_folder(tmp_path / "applied-factored"),
        load_folder(tmp_path / "applied-dense"),
    )
    original = load_folder(qwen_untied.sft)
    assert via_factors.keys() == via_dense.keys() == original.keys()
    for name, want in original.items():
        if name not in factors:
            assert torch.equal(via_factors[name], want) and torch.equal(via_dense[name], want), name
            continue
        assert torch.equal(via_dense[name], merged[name]), name
        a, b, scaling = factors[name]
        bound = (
            (2 * r + 3) * 2.0**-24 * scaling * (np.abs(b.astype(np.float64)) @ np.abs(a.astype(np.float64)))
        )
        spacing = np.spacing(np.abs(merged[name].numpy()))  # the final rounding of θ + v
        gap = np.abs(via_factors[name].numpy().astype(np.float64) - merged[name].numpy())
        assert np.all(gap <= bound + spacing), (name, float(np.max(gap - bound - spacing)))
        assert not torch.equal(via_factors[name], want), name  # the adapter did change it


@pytest.mark.parametrize("scaling", [float("nan"), float("inf"), "2"])
def test_a_scaling_that_is_not_a_finite_number_is_a_one_line_error(
    qwen_untied: Family, tmp_path: Path, scaling: object
) -> None:
    factors: dict = {n: (a, b, scaling) for n, (a, b) in lora_like_factors(qwen_untied.sft, RANK).items()}
    with pytest.raises(
        InvalidArgumentError, match=r"scaling .* is not a finite number; pass lora_alpha / r$"
    ):
        write_factored_vector(tmp_path / "v", factors=factors, base=qwen_untied.sft)
    assert not (tmp_path / "v").exists()


def test_lora_factors_refuses_dora(qwen_untied: Family) -> None:
    model = AutoModelForCausalLM.from_pretrained(qwen_untied.sft)
    dora = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"], use_dora=True))
    with pytest.raises(InvalidArgumentError, match=r"q_proj.weight: a DoRA or fan_in_fan_out LoRA layer"):
        lora_factors(dora)
