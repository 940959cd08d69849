"""Load a checkpoint source as a live ``transformers`` causal LM (for evaluation and in-memory α).

The HF backend's :class:`~rvec.model.hf.HFModelState` loads through here; so do tests and benchmarks
that want a bare ``(model, tokenizer, fingerprint)``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from rvec.checkpoint.dtypes import FLOAT_NAMES
from rvec.errors import InvalidArgumentError

__all__ = ["FLOAT_DTYPES", "default_dtype", "load_causal_lm", "pick_device", "pick_dtype"]

logger = logging.getLogger(__name__)


def default_dtype(device: str) -> torch.dtype:
    """float32 on CPU (bf16 matmuls are slow there and change results), bfloat16 on GPU.

    bfloat16 halves the memory of a model and its in-memory vectors' originals, which is what lets
    a 7B study fit one 80 GB GPU; the price is that greedy texts depend on the batch (see
    :class:`~rvec.eval.backends.HFBackend`). Pass float32 where that matters and memory allows.
    """
    return torch.float32 if device == "cpu" else torch.bfloat16


FLOAT_DTYPES: dict[str, torch.dtype] = {name: dtype.torch for name, dtype in FLOAT_NAMES.items()}
"""The float dtypes a live model may use, by canonical name (the same names ``apply --dtype`` takes)."""


def pick_dtype(requested: str, device: str) -> torch.dtype:
    """``auto`` → :func:`default_dtype` for ``device``; else the named dtype.

    Raises:
        InvalidArgumentError: an unknown name.
    """
    if requested == "auto":
        return default_dtype(device)
    if requested not in FLOAT_DTYPES:
        raise InvalidArgumentError(f"unknown dtype '{requested}'; use auto, {', '.join(FLOAT_DTYPES)}")
    return FLOAT_DTYPES[requested]


def pick_device(requested: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; anything else as given."""
    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_causal_lm(
    source: str | Path,
    *,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
    device: str = "cpu",
):
    """Load ``source`` (folder, hub id[@rev], or ``.gguf`` file) as ``(model, tokenizer, fingerprint)``.

    Args:
        source: anything :func:`rvec.checkpoint.resolve` accepts.
        revision: hub revision; overrides an ``@rev`` suffix.
        dtype: parameter dtype (default: float32 on CPU, bfloat16 elsewhere).
        device: torch device string.

    Returns:
        The model in eval mode, its tokenizer (chat template included), and a content fingerprint of
        the weights (stable across machines; used in caches and results).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rvec.checkpoint.source import resolve

    ckpt = resolve(str(source), revision=revision)
    dtype = dtype or default_dtype(device)
    if ckpt.gguf_file is not None:
        folder, name = str(ckpt.gguf_file.parent), ckpt.gguf_file.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(ckpt.path))
        model = AutoModelForCausalLM.from_pretrained(str(ckpt.path), dtype=dtype)
    model.to(device)
    model.eval()
    return model, tokenizer, ckpt.fingerprint()
