"""Model-family fingerprints and tensor-name conventions (layers, module types, embeddings)."""

from __future__ import annotations

import re
from typing import Any

EMBED_NAMES = ("model.embed_tokens.weight", "transformer.wte.weight", "model.embed_in.weight")
LM_HEAD_NAMES = ("lm_head.weight", "embed_out.weight")

# Config keys that must agree for two checkpoints to be one family, with the fallback spellings
# older configs use. rope settings moved from ``rope_theta``/``rope_scaling`` to
# ``rope_parameters`` in transformers 5; both are compared as given.
FINGERPRINT_KEYS: dict[str, tuple[str, ...]] = {
    "architecture": ("architectures",),
    "model_type": ("model_type",),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_hidden_layers": ("num_hidden_layers", "n_layer"),
    "num_attention_heads": ("num_attention_heads", "n_head"),
    "num_key_value_heads": ("num_key_value_heads",),
    "intermediate_size": ("intermediate_size", "n_inner"),
    "vocab_size": ("vocab_size",),
    "rope_theta": ("rope_theta",),
    "rope_scaling": ("rope_scaling",),
    "rope_parameters": ("rope_parameters",),
    "tie_word_embeddings": ("tie_word_embeddings",),
}

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")


def family_signature(config: dict[str, Any]) -> dict[str, Any]:
    """The architecture-defining fields of a ``config.json`` (``None`` where a config lacks one)."""
    out: dict[str, Any] = {}
    for key, spellings in FINGERPRINT_KEYS.items():
        value = next((config[s] for s in spellings if s in config), None)
        if key == "architecture" and isinstance(value, list):
            value = value[0] if value else None
        if key == "tie_word_embeddings" and value is None:
            value = True  # transformers' PretrainedConfig default
        out[key] = value
    text = config.get("text_config")
    if isinstance(text, dict) and out["hidden_size"] is None:  # multimodal wrappers nest the LM config
        nested = family_signature(text)
        out.update({k: v for k, v in nested.items() if v is not None and out.get(k) is None})
    return out


def layer_of(name: str) -> int | None:
    """Transformer block index in a tensor name (``model.layers.7.mlp…`` → 7), else ``None``."""
    m = _LAYER.search(name)
    return int(m.group(1)) if m else None


def module_type(name: str) -> str:
    """Coarse module class for stats: embeddings, attention, mlp, norm, or other."""
    if name in EMBED_NAMES or name in LM_HEAD_NAMES or "embed" in name or "wte" in name or "wpe" in name:
        return "embeddings"
    if "norm" in name or ".ln_" in name or name.startswith("ln_"):
        return "norm"
    if any(k in name for k in ("self_attn", ".attn.", "attention", "q_proj", "k_proj", "v_proj", "o_proj")):
        return "attention"
    if any(k in name for k in ("mlp", "gate_proj", "up_proj", "down_proj", "feed_forward", "experts")):
        return "mlp"
    return "other"


def is_embedding(name: str) -> bool:
    """Token-embedding or output-projection matrix (rows = vocabulary)."""
    return name in EMBED_NAMES or name in LM_HEAD_NAMES


def embed_name(names: list[str] | set[str]) -> str | None:
    return next((n for n in EMBED_NAMES if n in names), None)


def lm_head_name(names: list[str] | set[str]) -> str | None:
    return next((n for n in LM_HEAD_NAMES if n in names), None)
