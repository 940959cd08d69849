"""``rvec eval`` as one library call: load the model once, add vectors in memory, evaluate.

The CLI parses arguments and calls :func:`eval_command`; everything else happens here, so the
command and a notebook behave the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rvec.errors import InvalidArgumentError
from rvec.eval.backends import HFBackend
from rvec.eval.runner import check_code_execution, evaluate
from rvec.eval.types import EvalResult

__all__ = ["eval_command", "vector_fingerprint"]

logger = logging.getLogger(__name__)


def eval_command(
    model_source: str,
    *,
    vectors: Sequence[str] = (),
    alphas: Sequence[float] = (),
    tasks: Sequence[str],
    preset: str,
    condition: str | None = None,
    perturb: Sequence[str] = (),
    limit: int | None = None,
    data_dir: Path | None = None,
    allow_code_execution: bool = False,
    out_dir: Path | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    dtype: str = "auto",
    seed: int = 1234,
    progress: bool = True,
    verify: bool = True,
) -> EvalResult:
    """Evaluate a checkpoint, optionally with ``Σ αᵢ·vᵢ`` added in memory (restored afterwards).

    Vectors are applied through the engine's bit-exact in-memory apply; with α = 0 the weights are
    bit-identical to the base model's, and so are its fingerprint and cached responses.

    Args:
        model_source (str): Folder, hub id[@rev], or ``.gguf`` file.
        vectors (Sequence[str], default ()): Vector folders (``rvec extract`` outputs).
        alphas (Sequence[float], default ()): One α per vector.
        tasks (Sequence[str]): Task names or groups.
        preset (str): Evaluation preset.
        condition (str | None, default None): Prompt condition.
        perturb (Sequence[str], default ()): Perturbations, each evaluated beside the clean task.
        limit (int | None, default None): First N items per task.
        data_dir (Path | None, default None): Local data root.
        allow_code_execution (bool, default False): Allow HumanEval to run model-written code.
        out_dir (Path | None, default None): Where results, samples and the cache go.
        batch_size (int, default 16): Requests per forward batch.
        device (str, default "cpu"): Torch device.
        dtype (str, default "auto"): ``float32``, ``bfloat16``, ``float16``; auto: float32 on CPU,
            bfloat16 on GPU. Half precisions make greedy texts depend on the batch.
        seed (int, default 1234): Seed of the perturbations.
        progress (bool, default True): Show a progress bar.
        verify (bool, default True): Check each vector's shards against the sha256 in its
            ``rvec.json`` before using it (``--no-verify``: the cache key then includes the
            shards' file versions, so an edited shard still gets fresh responses).

    Returns:
        EvalResult: As :func:`~rvec.eval.runner.evaluate`.

    Raises:
        InvalidArgumentError: ``vectors`` and ``alphas`` differ in length.
        CodeExecutionNotAllowedError: HumanEval without ``allow_code_execution`` (before loading).
        VectorIntegrityError: a vector's shards or family differ from its ``rvec.json`` (before loading).
        and every error of :func:`~rvec.checkpoint.model.load_causal_lm` and ``evaluate``.

    Example:
        >>> eval_command("Qwen/Qwen2.5-1.5B-Instruct", vectors=["vec/"], alphas=[1.0],
        ...              tasks=["gsm8k"], preset="paper", limit=50, out_dir=Path("runs/v1"))
    """
    if len(vectors) != len(alphas):
        raise InvalidArgumentError(
            f"{len(vectors)} vector(s) but {len(alphas)} alpha(s); pass one --alpha per --vector"
        )
    check_code_execution(tasks, allowed=allow_code_execution)  # before the (slow) model load
    loaded = _read_vectors([(v, float(a)) for v, a in zip(vectors, alphas, strict=True)], verify=verify)
    from rvec.checkpoint.model import load_causal_lm, pick_dtype

    model, tokenizer, fingerprint = load_causal_lm(
        model_source, device=device, dtype=pick_dtype(dtype, device)
    )
    fingerprint = vector_fingerprint(fingerprint, [(v.content_hash, a) for v, a in loaded])
    with _applied(model, loaded):
        lm = HFBackend(model, tokenizer, fingerprint=fingerprint, batch_size=batch_size, progress=False)
        return evaluate(
            lm,
            tasks=tasks,
            preset=preset,
            condition=condition,
            perturbations=perturb,
            limit=limit,
            data_dir=data_dir,
            allow_code_execution=allow_code_execution,
            seed=seed,
            out_dir=out_dir,
            progress=progress,
        )


def vector_fingerprint(base: str, vectors: Sequence[tuple[str, float]]) -> str:
    """The fingerprint of ``base + Σ αᵢ·vᵢ``: sha256 over the base fingerprint and each (hash, α).

    Example:
        >>> vector_fingerprint("abc", [])
        'abc'
    """
    applied = [(h, a) for h, a in vectors if float(a) != 0.0]  # α = 0 leaves the weights bit-identical
    if not applied:
        return base
    payload = {"base": base, "vectors": [[h, repr(float(a))] for h, a in applied]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read_vectors(pairs: Sequence[tuple[str, float]], *, verify: bool) -> list[tuple[Any, float]]:
    if not pairs:
        return []
    from rvec.vector.artifact import read_vector

    # Verified, a vector's content_hash (in the cache key) is its recorded shard hashes, now proven.
    return [(read_vector(Path(v), verify=verify), a) for v, a in pairs]


def _applied(model: Any, loaded: Sequence[tuple[Any, float]]) -> Any:
    if not loaded:
        return nullcontext(model)
    from rvec.vector.inmemory import applied

    return applied(model, list(loaded))
