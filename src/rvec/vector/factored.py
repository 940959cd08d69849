"""A vector folder from low-rank factors: ``rvec pair`` with a LoRA phase, whose delta is exactly
``scaling · B @ A`` for every adapted matrix and exactly zero everywhere else.

Given the base checkpoint (θ_SFT), the caller passes only the factors: every other float tensor is
stored as an exact zero with no entries, so a SmolLM2-135M vector with rank-16 factors on the seven
projections of its 30 blocks is ≈ 19.5 MB (the factors) instead of 540 MB dense. Norms come from the
factors exactly (:func:`rvec.vector.encodings.factored_norm`); nothing is multiplied out.
:func:`lora_factors` reads the factors and scalings out of a live PEFT LoRA model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rvec.checkpoint.reader import DEFAULT_BLOCK_ELEMENTS
from rvec.checkpoint.source import Checkpoint, resolve
from rvec.checkpoint.writer import DEFAULT_MAX_SHARD_BYTES
from rvec.errors import InvalidArgumentError
from rvec.outputs import input_paths
from rvec.vector.artifact import ReasoningVector
from rvec.vector.writing import Dense, Encoded, Factored, Sparse, plan_of, sum_squares, write_vector

__all__ = ["lora_factors", "write_factored_vector"]

_ZERO = Sparse(np.empty(0, np.int64), np.empty(0, np.float32))
_PEFT_PREFIX = "base_model.model."  # PeftModel → LoraModel → the wrapped model's own module names

LoraFactors = tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, float]


def write_factored_vector(
    out: str | Path,
    *,
    factors: Mapping[str, LoraFactors],
    dense: Mapping[str, np.ndarray] | None = None,
    base: Checkpoint | str | Path | None = None,
    zeros: Mapping[str, Sequence[int]] | None = None,
    config: Mapping[str, Any] | None = None,
    sources: Mapping[str, Any] | None = None,
    formula: str = "v = θ_RL − θ_SFT (float32)",
    extra: Mapping[str, Any] | None = None,
    base_norms: Mapping[str, float] | None = None,
    overwrite: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> ReasoningVector:
    """Write an ordinary vector folder from low-rank factors (``rvec pair`` with a LoRA GRPO phase).

    Args:
        out: folder to create; it appears only when complete.
        factors: ``name → (A, B, scaling)`` (or ``(A, B)`` for scaling 1), one per adapted matrix.
            ``name`` is the base's parameter name (``model.layers.0.self_attn.q_proj.weight``), A is
            PEFT's ``lora_A.weight`` (r, in), B its ``lora_B.weight`` (out, r), and ``scaling`` PEFT's
            ``scaling[adapter]`` (``lora_alpha / r``, or ``lora_alpha / √r`` with rsLoRA), so
            ``v[name] = scaling · B @ A`` — what PEFT's merge adds. The scaling is folded into B
            (``B·scaling`` rounded once to float32) and A, B are stored as float32 (r·(in + out)
            numbers). An ``nn.Embedding`` LoRA (``lora_embedding_A`` (r, vocab), ``lora_embedding_B``
            (dim, r), merged transposed) is passed as ``(lora_embedding_B.T, lora_embedding_A.T,
            scaling)``; :func:`lora_factors` does all of this from a live PEFT model. Applied with
            α = 1, the vector adds PEFT's ``(B @ A) · scaling`` within float32 rounding of the
            r-term products: elementwise ≤ ``(2r + 3)·2⁻²⁴·scaling·(|B| @ |A|)`` apart, plus the final
            rounding of θ + v (the dense vector of PEFT's own float32 deltas lands on PEFT's merge
            bit for bit).
        dense: ``name → v[name]`` for tensors stored as they are, in the base's shape (norms,
            biases, full-rank deltas of modules trained without LoRA).
        base: θ_SFT (a :class:`Checkpoint`, folder or hub id). Fills in what is not given: every other
            floating-point tensor of it becomes an exact zero, ``config``, ``sources`` (``{"sft": …}``),
            ``‖θ_SFT‖`` per tensor for ``rel_norm`` (one streamed read) and the lineage probe that
            ``apply`` checks targets against; names and shapes are checked against it.
        zeros: ``name → shape`` of tensors whose delta is exactly zero, without ``base``. Zeros are
            stored sparse with no entries: no bytes, but ``check``/``apply`` see the full tensor set.
        config: the SFT's ``config.json`` (gives ``family``); required without ``base``.
        sources: provenance the card shows, e.g. ``{"sft": …, "rl": …}``; required without ``base``.
        formula: how v was made.
        extra: more top-level ``rvec.json`` fields (for example ``{"recipe": {...}, "check": ...}``).
        base_norms: ``‖θ_SFT[name]‖`` per tensor, for ``rel_norm`` (null without them or ``base``).
        overwrite: replace ``out`` if it exists.
        max_shard_bytes: shard size limit.

    Returns:
        The written :class:`ReasoningVector` (verified: its hashes are remembered, not re-read).

    Raises:
        InvalidArgumentError: a name in two mappings, factors that do not multiply to a matrix, a
            scaling that is not a finite number, a name or shape ``base`` does not have, or neither
            ``base`` nor ``config``/``sources``.
        NonFiniteError: NaN or Inf in any array (nothing is written).
        OutputExistsError: ``out`` exists and ``overwrite`` is false.

    Example:
        >>> write_factored_vector("pair/vector", factors=lora_factors, base="pair/sft",
        ...     sources={"sft": ..., "rl": ...}, extra={"recipe": recipe})  # doctest: +SKIP
    """
    dense, zeros = dict(dense or {}), dict(zeros or {})
    groups = [set(factors), set(dense), set(zeros)]
    twice = sorted((groups[0] & groups[1]) | (groups[0] & groups[2]) | (groups[1] & groups[2]))
    if twice:
        raise InvalidArgumentError(
            f"{twice[0]}: given in more than one of factors/dense/zeros; give each tensor once"
        )
    ckpt = base if isinstance(base, Checkpoint) or base is None else resolve(base)
    encoded: dict[str, tuple[tuple[int, ...], Encoded]] = {}
    for name, given in factors.items():
        a32, b32 = _scaled_factors(name, given)
        encoded[name] = ((b32.shape[0], a32.shape[1]), Factored(a32, b32))
    for name, values in dense.items():
        arr = np.asarray(values, np.float32)
        encoded[name] = (arr.shape, Dense(arr))
    for name, shape in zeros.items():
        encoded[name] = (tuple(shape), _ZERO)
    manifest: dict[str, Any] = {"formula": formula}
    if ckpt is not None:
        names = _fill_from_base(ckpt, encoded)
        base_norms = base_norms if base_norms is not None else _tensor_norms(ckpt, names)
        sources = sources if sources is not None else {"sft": ckpt.describe()}
        config = config if config is not None else ckpt.config
        manifest["skipped_non_float"] = [t.name for t in ckpt.index if not t.dtype.is_floating_point]
    else:
        names = sorted(encoded)
    if config is None or sources is None:
        raise InvalidArgumentError(
            "write_factored_vector: pass base= (the SFT checkpoint), or both config= and sources="
        )
    manifest.update(sources=dict(sources), config=dict(config))
    plan = [plan_of(n, encoded[n][0], encoded[n][1]) for n in names]

    def produce() -> Iterable[tuple[str, Encoded, Mapping[str, Any]]]:
        for n in names:
            yield n, encoded[n][1], ({"base_norm": base_norms[n]} if base_norms and n in base_norms else {})

    return write_vector(
        out,
        plan,
        produce(),
        manifest={**manifest, **dict(extra or {})},
        lineage=ckpt,
        overwrite=overwrite,
        inputs=input_paths(ckpt) if ckpt is not None else (),
        max_shard_bytes=max_shard_bytes,
    )


def lora_factors(model: Any, adapter: str = "default") -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """The LoRA factors of a live PEFT model, keyed for :func:`write_factored_vector`.

    Args:
        model: a ``peft.PeftModel`` (or its ``LoraModel``) with LoRA layers, before merging.
        adapter: the adapter's name.

    Returns:
        ``base parameter name → (A (r, in), B (out, r), scaling)`` as float32 numpy copies, for
        every ``nn.Linear`` and ``nn.Embedding`` that carries ``adapter`` (embeddings already
        transposed as the writer expects).

    Raises:
        InvalidArgumentError: a layer the factored form cannot express exactly (DoRA, which rescales
            columns by a norm; ``fan_in_fan_out`` Conv1D layers), or no LoRA layer with ``adapter``.
    """
    found: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for path, module in model.named_modules():
        a_dict, b_dict = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
        emb_a, emb_b = getattr(module, "lora_embedding_A", {}), getattr(module, "lora_embedding_B", {})
        in_linear = a_dict is not None and adapter in a_dict
        if not in_linear and adapter not in emb_a:
            continue
        name = path.removeprefix(_PEFT_PREFIX) + ".weight"
        if getattr(module, "use_dora", {}).get(adapter) or getattr(module, "fan_in_fan_out", False):
            raise InvalidArgumentError(
                f"{name}: a DoRA or fan_in_fan_out LoRA layer is not B @ A of the weight; "
                "train with plain LoRA (use_dora=False) on nn.Linear modules"
            )
        scaling = float(module.scaling[adapter])
        if in_linear:
            a, b = a_dict[adapter].weight, b_dict[adapter].weight
        else:  # PEFT merges an embedding's delta as (B @ A)ᵀ: the writer's A is Bᵀ, its B is Aᵀ
            a, b = emb_b[adapter].T, emb_a[adapter].T
        found[name] = (_numpy32(a), _numpy32(b), scaling)
    if not found:
        raise InvalidArgumentError(
            f"no LoRA layer with adapter {adapter!r} in the model; pass the PeftModel before merge_and_unload()"
        )
    return found


def _numpy32(tensor: Any) -> np.ndarray:
    return tensor.detach().to("cpu").float().numpy().copy()


def _scaled_factors(name: str, given: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """A and ``scaling·B`` as float32 (the scale rounded once, in float64), shapes checked."""
    if len(given) not in (2, 3):
        raise InvalidArgumentError(
            f"{name}: give factors as (A, B) or (A, B, scaling), got {len(given)} items"
        )
    a, b = np.asarray(given[0]), np.asarray(given[1])
    scaling = given[2] if len(given) == 3 else 1.0
    if not isinstance(scaling, (int, float, np.floating, np.integer)) or not math.isfinite(scaling):
        raise InvalidArgumentError(f"{name}: scaling {scaling!r} is not a finite number; pass lora_alpha / r")
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
        raise InvalidArgumentError(
            f"{name}: factors A {a.shape} and B {b.shape} do not multiply to a matrix; "
            "pass A (r, in) and B (out, r), PEFT's lora_A.weight and lora_B.weight"
        )
    if scaling == 1:
        return np.asarray(a, np.float32), np.asarray(b, np.float32)
    return np.asarray(a, np.float32), (np.asarray(b, np.float64) * float(scaling)).astype(np.float32)


def _fill_from_base(base: Checkpoint, encoded: dict[str, tuple[tuple[int, ...], Encoded]]) -> list[str]:
    """Check ``encoded`` against ``base``'s float tensors and add every missing one as an exact zero.

    Returns:
        The tensor names in ``base``'s order.
    """
    floats = {t.name: t.shape for t in base.index if t.dtype.is_floating_point}
    for name, (shape, _) in encoded.items():
        if name not in floats:
            raise InvalidArgumentError(
                f"{name}: not a floating-point tensor of {base.display}; key factors by the base's parameter names"
            )
        if tuple(shape) != floats[name]:
            raise InvalidArgumentError(
                f"{name}: shape {tuple(shape)} but {base.display} has {floats[name]}; pass (A (r, in), B (out, r))"
            )
    for name, shape in floats.items():
        encoded.setdefault(name, (shape, _ZERO))
    return list(floats)


def _tensor_norms(ckpt: Checkpoint, names: Sequence[str]) -> dict[str, float]:
    """``‖θ[name]‖`` of each tensor in float32 blocks summed in float64, as extract computes them."""
    return {
        name: math.sqrt(
            sum(
                sum_squares(
                    ckpt.read_float32(name, i, min(i + DEFAULT_BLOCK_ELEMENTS, ckpt.index[name].numel))
                )
                for i in range(0, ckpt.index[name].numel, DEFAULT_BLOCK_ELEMENTS)
            )
        )
        for name in names
    }
