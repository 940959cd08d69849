"""Load a checkpoint source as a live ``transformers`` causal LM (for evaluation and in-memory α).

The HF backend's :class:`~rvec.model.hf.state.HFModelState` loads through here; so do tests and benchmarks
that want a bare ``(model, tokenizer, fingerprint)``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from rvec.checkpoint.dtypes import parse_output_dtype

__all__ = ["default_dtype", "load_causal_lm", "pick_device", "pick_dtype"]

logger = logging.getLogger(__name__)


def default_dtype(device: str) -> torch.dtype:
    """float32 on CPU (bf16 matmuls are slow there and change results), bfloat16 on GPU.

    bfloat16 halves the memory of a model and its in-memory vectors' originals, which is what lets
    a 7B study fit one 80 GB GPU; the price is that greedy texts depend on the batch (see
    :class:`~rvec.model.HFBackend`). Pass float32 where that matters and memory allows.
    """
    return torch.float32 if device == "cpu" else torch.bfloat16


def pick_dtype(requested: str, device: str) -> torch.dtype:
    """``auto`` → :func:`default_dtype` for ``device``; else the named dtype (``apply --dtype``'s
    names and aliases: float32/fp32, bfloat16/bf16, float16/fp16).

    Raises:
        InvalidArgumentError: an unknown name.
    """
    dtype = parse_output_dtype(requested)
    return default_dtype(device) if dtype is None else dtype.torch


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

    Raises:
        MissingTokenizerError: a folder without tokenizer files (checked before the weights load).
    """
    from transformers import AutoModelForCausalLM

    from rvec.checkpoint.local import local_folder
    from rvec.checkpoint.source import resolve

    folder = local_folder(resolve(str(source), revision=revision))  # a GGUF: its float32 conversion
    tokenizer = _load_tokenizer(folder)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype or default_dtype(device))
    model.to(device)
    model.eval()
    return model, tokenizer, resolve(folder).fingerprint()


def _load_tokenizer(folder: Path):
    """The folder's tokenizer, or one line saying which files are missing and where to get them."""
    from transformers import AutoTokenizer

    from rvec.checkpoint.files import TOKENIZER_VOCAB_FILES
    from rvec.errors import MissingTokenizerError

    fix = "copy them from the model it was made from (rvec apply and rvec convert write them)"
    if not any((folder / name).is_file() for name in TOKENIZER_VOCAB_FILES):
        raise MissingTokenizerError(
            f"{folder}: no tokenizer files (none of {', '.join(TOKENIZER_VOCAB_FILES)}); {fix}",
            path=str(folder),
        )
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as err:  # transformers' messages run over several lines
        reason = " ".join(str(err).split())[:200]
        raise MissingTokenizerError(
            f"{folder}: the tokenizer files do not load ({reason}); {fix}", path=str(folder)
        ) from err
