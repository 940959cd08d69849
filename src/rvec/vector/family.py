"""Model-family fingerprints and tensor-name conventions (layers, module types, embeddings)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from rvec.errors import IncompatibleError

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


# The module classes ``rvec anatomy`` reports, refining :func:`module_type`: per coarse type, the
# classes with the name fragments that identify them, tried in order (first match wins). Order
# matters where one fragment holds another: ``qkv_proj`` holds ``v_proj``, ``gate_up_proj`` holds
# ``up_proj``. Fragments cover Llama/Qwen/Mistral (q_proj … down_proj), GPT-2 (c_attn, c_proj,
# c_fc) and GPT-NeoX (query_key_value, dense_h_to_4h); a tensor of the type that none matches is
# ``attn.other`` / ``mlp.other``.
MODULE_CLASSES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "attention": (
        ("attn.qkv", ("qkv_proj", "c_attn", "query_key_value")),
        ("attn.q", ("q_proj",)),
        ("attn.k", ("k_proj",)),
        ("attn.v", ("v_proj",)),
        ("attn.o", ("o_proj", "out_proj", "c_proj", "attention.dense")),
    ),
    "mlp": (
        ("mlp.gate_up", ("gate_up_proj",)),
        ("mlp.gate", ("gate_proj",)),
        ("mlp.up", ("up_proj", "c_fc", "dense_h_to_4h")),
        ("mlp.down", ("down_proj", "c_proj", "dense_4h_to_h")),
    ),
}
CLASS_ORDER = (
    "embed",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.qkv",
    "attn.o",
    "attn.other",
    "mlp.gate",
    "mlp.up",
    "mlp.gate_up",
    "mlp.down",
    "mlp.other",
    "norm",
    "lm_head",
    "other",
)
"""Every class :func:`module_class` returns, in the order tables and heat maps show them."""


def module_class(name: str) -> str:
    """Fine module class for anatomy: ``attn.q`` … ``mlp.down``, ``norm``, ``embed``, ``lm_head``, ``other``.

    Refines :func:`module_type` (so both agree on the coarse type): embeddings split into the token
    embedding and the output projection; attention and MLP tensors into their projections by
    :data:`MODULE_CLASSES`; a projection's bias is in its weight's class.

    Example:
        >>> module_class("model.layers.3.mlp.gate_proj.weight")
        'mlp.gate'
    """
    coarse = module_type(name)
    if coarse == "embeddings":
        return "lm_head" if name in LM_HEAD_NAMES else "embed"
    if coarse in ("norm", "other"):
        return coarse
    for cls, fragments in MODULE_CLASSES[coarse]:
        if any(f in name for f in fragments):
            return cls
    return "attn.other" if coarse == "attention" else "mlp.other"


def is_embedding(name: str) -> bool:
    """Token-embedding or output-projection matrix (rows = vocabulary)."""
    return name in EMBED_NAMES or name in LM_HEAD_NAMES


def embed_name(names: list[str] | set[str]) -> str | None:
    return next((n for n in EMBED_NAMES if n in names), None)


def lm_head_name(names: list[str] | set[str]) -> str | None:
    return next((n for n in LM_HEAD_NAMES if n in names), None)


class Alike(Protocol):
    """What :func:`check_alike` compares: a vector's or merge input's label, config and tensor shapes."""

    @property
    def label(self) -> str: ...
    @property
    def config(self) -> Mapping[str, Any]: ...
    @property
    def shapes(self) -> Mapping[str, tuple[int, ...]]: ...


def check_alike(inputs: Sequence[Alike]) -> None:
    """Every input has the same tensors, shapes and model family as the first.

    Raises:
        IncompatibleError: a tensor missing or extra, a shape or the family different (named).
    """
    first = inputs[0]
    fam = family_signature(first.config)
    for other in inputs[1:]:
        if family_signature(other.config) != fam:
            raise IncompatibleError(
                f"{other.label} is of another model family than {first.label}; merge vectors of one family"
            )
        a, b = first.shapes, other.shapes
        if set(a) != set(b):
            missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            raise IncompatibleError(
                f"{other.label} and {first.label} hold different tensors ({len(missing)} missing, e.g. "
                f"{missing[:1]}; {len(extra)} extra, e.g. {extra[:1]}); merge vectors of one model"
            )
        for name, shape in a.items():
            if b[name] != shape:
                raise IncompatibleError(
                    f"'{name}': shape {b[name]} in {other.label} ≠ {shape} in {first.label}; merge vectors of one model"
                )
