"""``rvec export-lora``: PEFT loads the adapter, and merged it reproduces apply of the rank-r vector."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import peft  # the dev extra's (issue 9: trl and peft); a missing peft fails here rather than skipping
import pytest
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from fixtures import Family
from helpers import assert_user_error, load_folder
from rvec.cli import app
from rvec.vector.apply import apply
from rvec.vector.artifact import read_vector
from rvec.vector.compress import compress
from rvec.vector.extract import extract
from rvec.vector.factored import write_factored_vector
from rvec.vector.lora import UNEXPORTED_FILE, export_lora

runner = CliRunner()
RANK = 4


def merged_state(target: Path, adapter: Path) -> dict[str, torch.Tensor]:
    model = AutoModelForCausalLM.from_pretrained(target)
    with warnings.catch_warnings():
        # PEFT warns that a tied embedding is part of the adapter: merging it updates both roles,
        # which is what rvec apply does for a tied target (checked below).
        warnings.simplefilter("ignore", UserWarning)
        merged = peft.PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return {k: v.detach() for k, v in merged.state_dict().items()}


@pytest.mark.parametrize("family_name", ["qwen_untied", "llama_tied"])
def test_merged_adapter_reproduces_apply_of_the_rank_r_vector(
    family_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    fam: Family = request.getfixturevalue(family_name)
    vec = extract(fam.sft, fam.rl, tmp_path / "vec")
    result = runner.invoke(
        app,
        ["export-lora", str(vec.path), "--rank", str(RANK), "-o", str(tmp_path / "adapter"), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    compress(vec, tmp_path / "r", rank=RANK)
    apply([tmp_path / "r"], fam.target, tmp_path / "applied", alphas=[1.0])
    applied, original = load_folder(tmp_path / "applied"), load_folder(fam.target)
    merged = merged_state(fam.target, tmp_path / "adapter")

    one_d = sorted(n for n, s in vec.shapes.items() if len(s) == 1)
    listed = json.loads((tmp_path / "adapter" / UNEXPORTED_FILE).read_text())["unexported"]
    assert sorted(u["tensor"] for u in listed) == one_d  # norms (and Qwen2's q/k/v biases), nothing else
    assert all(f"not exported: {n}" in result.stdout for n in one_d)
    for name, want in applied.items():
        if name in one_d:
            assert torch.equal(merged[name], original[name]), name  # LoRA leaves them as they were
        else:
            # PEFT merges W + B@A with torch's GEMM; rvec's product sums the rank terms in another
            # order and apply rounds once: float32 agreement to a few ulps of the weights.
            torch.testing.assert_close(merged[name], want, rtol=1e-6, atol=1e-6)
            assert not torch.equal(merged[name], original[name]), name
    if family_name == "llama_tied":
        assert torch.equal(merged["lm_head.weight"], merged["model.embed_tokens.weight"])


def test_adapter_files_follow_peft_naming(qwen_untied: Family, tmp_path: Path) -> None:
    vec = extract(qwen_untied.sft, qwen_untied.rl, tmp_path / "vec")
    export_lora(vec, tmp_path / "adapter", rank=RANK)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == config["lora_alpha"] == RANK
    assert config["base_model_name_or_path"] == str(qwen_untied.sft)
    assert "model.embed_tokens" in config["target_modules"] and "lm_head" in config["target_modules"]
    tensors = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    assert tensors[f"{prefix}.lora_A.weight"].shape == (RANK, 32)
    assert tensors[f"{prefix}.lora_B.weight"].shape == (32, RANK)
    assert tensors["base_model.model.model.embed_tokens.lora_embedding_A"].shape == (RANK, 160)
    assert tensors["base_model.model.model.embed_tokens.lora_embedding_B"].shape == (32, RANK)


def test_factored_vector_exports_exactly(qwen_untied: Family, tmp_path: Path) -> None:
    """A vector already factored at rank ≤ R is written as its own factors (zero-padded to R)."""
    v = read_vector(extract(qwen_untied.sft, qwen_untied.rl, tmp_path / "vec").path)
    g = np.random.default_rng(1)
    name = "model.layers.3.mlp.gate_proj.weight"  # (64, 32)
    a = g.standard_normal((2, 32), dtype=np.float32)
    b = g.standard_normal((64, 2), dtype=np.float32)
    factors = {name: (a, b)}
    dense = {n: v.read(n) for n in v.shapes if n != name}
    write_factored_vector(
        tmp_path / "f", factors=factors, dense=dense, config=v.config, sources=v.manifest["sources"]
    )
    export = export_lora(tmp_path / "f", tmp_path / "adapter", rank=RANK)
    assert export.per_tensor[name] == 0.0
    tensors = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    module = f"base_model.model.{name.removesuffix('.weight')}"
    assert (
        np.array_equal(tensors[f"{module}.lora_A.weight"][:2], a)
        and not tensors[f"{module}.lora_A.weight"][2:].any()
    )
    assert (
        np.array_equal(tensors[f"{module}.lora_B.weight"][:, :2], b)
        and not tensors[f"{module}.lora_B.weight"][:, 2:].any()
    )


def test_rank_larger_than_every_matrix_is_one_line(qwen_untied: Family, tmp_path: Path) -> None:
    vec = extract(qwen_untied.sft, qwen_untied.rl, tmp_path / "vec")
    result = runner.invoke(
        app, ["export-lora", str(vec.path), "--rank", "64", "-o", str(tmp_path / "a"), "--no-progress"]
    )
    assert_user_error(result, "--rank 64: larger than every matrix")
    assert not (tmp_path / "a").exists()
