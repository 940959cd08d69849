"""``rvec export-lora``: a vector as a PEFT LoRA adapter whose merged effect is v's rank-r approximation.

Layout (PEFT 0.21, read by ``PeftModel.from_pretrained``): ``adapter_config.json`` (``peft_type``
LORA, ``r`` = ``lora_alpha`` = R so PEFT's scale ``lora_alpha / r`` is exactly 1,
``target_modules`` = the full module names, ``base_model_name_or_path`` from the vector's SFT
source) and ``adapter_model.safetensors`` with, per module,

* ``nn.Linear`` (attention and MLP projections, an untied ``lm_head``):
  ``base_model.model.<module>.lora_A.weight`` (R, in) and ``lora_B.weight`` (out, R); PEFT adds
  ``lora_B @ lora_A`` to the weight;
* ``nn.Embedding`` (``embed_tokens``): ``lora_embedding_A`` (R, vocab) and ``lora_embedding_B``
  (hidden, R); PEFT adds ``(lora_embedding_B @ lora_embedding_A)ᵀ``, so they hold ``Bᵀ`` and ``Aᵀ`` of
  ``v ≈ B @ A``. In a tied model the embedding *is* the output projection, so merging updates
  both, as ``rvec apply`` does for a tied target.

A matrix whose min(rows, cols) — or whose stored rank — is below R is padded with zero rows and
columns to rank R (the product is unchanged, and one ``r`` serves every module).

What LoRA cannot express is listed, never dropped silently: tensors that are not matrices (RMSNorm
weights, biases — LoRA adds a low-rank product to a weight matrix and has nothing for a vector;
PEFT's ``modules_to_save`` would store absolute weights of one target, not a delta). They go to
``rvec-unexported.json`` in the adapter folder (with their norms) and are printed. Tensors whose
delta is exactly zero (those a LoRA pair did not train) need no module: they are listed there as
``zero``, and the adapter then reproduces such a vector exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rvec import __version__
from rvec.atomic import atomic_dir
from rvec.checkpoint.writer import PlannedTensor, ShardedWriter
from rvec.errors import IncompatibleError, InvalidArgumentError
from rvec.progress import ProgressCallback
from rvec.vector import family
from rvec.vector.artifact import ReasoningVector, read_vector
from rvec.vector.lowrank import check_rank, factors_at_rank

UNEXPORTED_FILE = "rvec-unexported.json"
_PREFIX = "base_model.model."
# model_types whose matrices are transformers' Conv1D (weight stored (in, out)), not nn.Linear.
_CONV1D_MODEL_TYPES = frozenset({"gpt2", "openai-gpt"})


@dataclass
class LoraExport:
    """What ``export_lora`` wrote."""

    path: Path
    rank: int
    modules: list[str]
    unexported: list[dict[str, Any]]
    zero: list[str]  # tensors whose delta is exactly zero: nothing to add, no module written
    relative_error: float  # over the exported tensors: sqrt(Σ tail²)/sqrt(Σ ‖v_t‖²)
    unexported_fraction: float  # ‖v restricted to unexported tensors‖ / ‖v‖
    per_tensor: dict[str, float] = field(default_factory=dict)  # relative error per exported tensor

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "rank": self.rank,
            "modules": len(self.modules),
            "relative_error": self.relative_error,
            "unexported_norm_fraction": self.unexported_fraction,
            "unexported": self.unexported,
            "zero": self.zero,
            "per_tensor": self.per_tensor,
        }


def lora_kind(name: str, shape: tuple[int, ...]) -> str | None:
    """``"linear"`` or ``"embedding"`` for a tensor a LoRA module can carry, else ``None``."""
    if len(shape) != 2 or not name.endswith(".weight"):
        return None
    return "embedding" if name in family.EMBED_NAMES else "linear"


def _unexported_reason(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return "1-D (norm weight or bias): LoRA adds a low-rank product to a weight matrix only"
    return f"{len(shape)}-D tensor: not a Linear or Embedding weight"


def export_lora(
    vector: ReasoningVector | str | Path,
    out: str | Path,
    *,
    rank: int,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
    verify: bool = True,
    on_progress: ProgressCallback | None = None,
) -> LoraExport:
    """Write a PEFT LoRA adapter folder equal, merged, to ``vector``'s per-matrix rank-``rank`` approximation.

    Exact when ``vector`` is already factored at rank ≤ ``rank``.

    Args:
        vector: the vector folder (or an opened :class:`ReasoningVector`).
        out: the adapter folder to create (atomically).
        rank: the LoRA rank R.
        overwrite: replace ``out`` if it exists and rvec wrote it (it has an ``rvec.json``).
        overwrite_foreign: replace ``out`` even if rvec did not write it (never an input or a
            protected place: the working folder, its ancestors, home, a filesystem root).
        verify: check ``vector``'s shards against its recorded sha256 first (``--no-verify``).
        on_progress: ``(bytes done, bytes total)`` of the exported matrices as float32.

    Returns:
        :class:`LoraExport`: modules written, tensors not exported, relative errors.

    Raises:
        InvalidArgumentError: rank < 1 or larger than every matrix; no nonzero matrix to export.
        IncompatibleError: the family stores its matrices as Conv1D (GPT-2), which this export does not map.
        VectorIntegrityError: the input fails verification.

    Example:
        >>> export_lora("vec/", "adapter/", rank=32).unexported  # doctest: +SKIP
    """
    v = read_vector(vector, verify=verify) if isinstance(vector, (str, Path)) else vector
    check_rank(rank, v.shapes, str(v.path))
    kinds, matrices, zero, unexported = _exportable(v)
    plan = [p for n in matrices for p in _planned(n, v.shapes[n], kinds[n], rank)]
    with atomic_dir(
        Path(out),
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        inputs=[v.path],
        needed_bytes=sum(p.nbytes for p in plan) + (1 << 20),
    ) as tmp:
        errors, norm_sq, tail_sq = _write_factors(tmp, v, plan, matrices, kinds, rank, on_progress)
        config = _adapter_config(v, rank, [n.removesuffix(".weight") for n in matrices])
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
        unexported_sq = sum(u["norm"] ** 2 for u in unexported)
        result = LoraExport(
            path=Path(out),
            rank=rank,
            modules=config["target_modules"],
            unexported=unexported,
            zero=zero,
            relative_error=math.sqrt(tail_sq / norm_sq) if norm_sq > 0 else 0.0,
            unexported_fraction=math.sqrt(unexported_sq / (norm_sq + unexported_sq))
            if unexported_sq
            else 0.0,
            per_tensor=errors,
        )
        record = {"vector": v.describe(), "rvec_version": __version__, **result.to_dict()}
        record.pop("path")
        (tmp / UNEXPORTED_FILE).write_text(json.dumps(record, indent=2) + "\n")
        # rvec.json marks the adapter as rvec's output, so a later --overwrite may replace it.
        (tmp / "rvec.json").write_text(json.dumps({"kind": "lora-adapter", **record}, indent=2) + "\n")
        (tmp / "README.md").write_text(_card(config, result))
    return result


def _exportable(
    v: ReasoningVector,
) -> tuple[dict[str, str | None], list[str], list[str], list[dict[str, Any]]]:
    """``(kind per tensor, the matrices to export, the zero tensors, the tensors LoRA cannot carry)``.

    Raises:
        IncompatibleError: a Conv1D family.
        InvalidArgumentError: no nonzero matrix.
    """
    model_type = family.family_signature(v.config).get("model_type")
    if model_type in _CONV1D_MODEL_TYPES:
        raise IncompatibleError(
            f"{v.path}: model_type {model_type} stores its matrices as Conv1D (in, out); export-lora maps nn.Linear "
            "and nn.Embedding families (llama, qwen2, mistral, gemma…) only — use rvec apply for this vector"
        )
    zero = [n for n in v.shapes if v.is_zero(n)]  # e.g. every tensor a LoRA pair did not train
    kinds = {n: lora_kind(n, s) for n, s in v.shapes.items()}
    matrices = [n for n, k in kinds.items() if k is not None and n not in zero]
    if not matrices:
        raise InvalidArgumentError(
            f"{v.path}: no matrix of the vector is nonzero, so a LoRA adapter would add nothing; "
            "use rvec apply for its 1-D tensors"
        )
    unexported = [
        {
            "tensor": n,
            "shape": list(s),
            "norm": v.manifest["tensors"][n]["norm"],
            "reason": _unexported_reason(s),
        }
        for n, s in v.shapes.items()
        if kinds[n] is None and n not in zero
    ]
    return kinds, matrices, zero, unexported


def _write_factors(
    folder: Path,
    v: ReasoningVector,
    plan: list[PlannedTensor],
    matrices: list[str],
    kinds: dict[str, str | None],
    rank: int,
    on_progress: ProgressCallback | None,
) -> tuple[dict[str, float], float, float]:
    """Write every matrix's rank-``rank`` factors; returns (relative error per tensor, Σ‖v‖², Σ tail²)."""
    errors: dict[str, float] = {}
    norm_sq = tail_sq = 0.0
    done, total = 0, sum(math.prod(v.shapes[n]) for n in matrices)
    writer = ShardedWriter(folder, plan, prefix="adapter_model", max_shard_bytes=1 << 62)
    try:
        for name in matrices:
            f = factors_at_rank(v, name, rank)
            a, b = _pad(f.a, f.b, rank)
            first, second = (b.T, a.T) if kinds[name] == "embedding" else (a, b)
            for planned, array in zip(_planned(name, v.shapes[name], kinds[name], rank), (first, second)):
                writer.write(planned.name, np.ascontiguousarray(array, dtype=np.float32))
            errors[name] = f.relative_error
            norm_sq += f.norm**2
            tail_sq += f.tail**2
            done += math.prod(v.shapes[name])
            if on_progress:
                on_progress(4 * done, 4 * total)  # float32 bytes, as every vector command counts
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return errors, norm_sq, tail_sq


def _planned(name: str, shape: tuple[int, ...], kind: str | None, rank: int) -> list[PlannedTensor]:
    module = _PREFIX + name.removesuffix(".weight")
    out_dim, in_dim = shape
    if kind == "embedding":  # PEFT: A (r, num_embeddings), B (embedding_dim, r)
        return [
            PlannedTensor(f"{module}.lora_embedding_A", "F32", (rank, out_dim)),
            PlannedTensor(f"{module}.lora_embedding_B", "F32", (in_dim, rank)),
        ]
    return [
        PlannedTensor(f"{module}.lora_A.weight", "F32", (rank, in_dim)),
        PlannedTensor(f"{module}.lora_B.weight", "F32", (out_dim, rank)),
    ]


def _pad(a: np.ndarray, b: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad ``a`` (k, in) and ``b`` (out, k) to rank ``rank``: ``b @ a`` is unchanged."""
    k = a.shape[0]
    if k == rank:
        return a, b
    a_pad = np.zeros((rank, a.shape[1]), dtype=np.float32)
    b_pad = np.zeros((b.shape[0], rank), dtype=np.float32)
    a_pad[:k], b_pad[:, :k] = a, b
    return a_pad, b_pad


def _base_model(sources: Any) -> str | None:
    """The SFT donor's hub id or path, where the vector's sources say it (``None`` if unknown)."""
    if not isinstance(sources, dict):
        return None
    for key in ("sft", "relative_to"):
        d = sources.get(key)
        if isinstance(d, dict):
            return d.get("repo_id") or d.get("source")
    matched = sources.get("matched_to")
    return _base_model(matched.get("sources")) if isinstance(matched, dict) else None


def _adapter_config(v: ReasoningVector, rank: int, modules: list[str]) -> dict[str, Any]:
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": _base_model(v.manifest.get("sources")),
        "r": rank,
        "lora_alpha": rank,  # scale lora_alpha / r = 1: the factors carry v as they are
        "lora_dropout": 0.0,
        "target_modules": modules,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "modules_to_save": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }


def _card(config: dict[str, Any], result: LoraExport) -> str:
    base = config["base_model_name_or_path"]
    listed = (
        "\n".join(f"- `{u['tensor']}` {tuple(u['shape'])}: {u['reason']}" for u in result.unexported)
        or "- none"
    )
    return f"""---
{f"base_model: {base}" + chr(10) if base else ""}library_name: peft
tags:
- rvec
- reasoning-vector
- lora
---

# Reasoning vector as a rank-{result.rank} LoRA adapter

Written by `rvec export-lora` {__version__}. Merged (`merge_and_unload`), it adds the rank-{result.rank}
truncated SVD of each matrix of the vector: relative Frobenius error {result.relative_error:.4g} over the
{len(result.modules)} exported matrices.

Not exported ({100 * result.unexported_fraction:.3g}% of ‖v‖; also in `{UNEXPORTED_FILE}`) — apply the vector with
`rvec apply` to include them:

{listed}

{len(result.zero)} tensors of the vector are exactly zero and need no module (listed as `zero` in
`{UNEXPORTED_FILE}`).
"""
