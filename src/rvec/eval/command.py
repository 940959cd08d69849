"""``rvec eval`` as one library call: load the model once on the chosen backend, set vectors in
memory, evaluate.

The CLI parses arguments (backend settings included, :func:`rvec.model.registry.parse_backend_settings`)
and calls :func:`eval_command`; everything else happens here and in the model-state seam
(:mod:`rvec.model`), which ``rvec run`` shares, so the command and a notebook behave the same.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from rvec.errors import InvalidArgumentError
from rvec.eval.runner import check_code_execution, evaluate
from rvec.eval.types import EvalResult
from rvec.model.fingerprint import vector_fingerprint
from rvec.model.registry import open_model_state
from rvec.model.settings import BackendSettings, HFSettings

__all__ = ["eval_command", "vector_fingerprint"]  # vector_fingerprint: its former home, kept

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
    backend: BackendSettings | None = None,
    seed: int = 1234,
    progress: bool = True,
) -> EvalResult:
    """Evaluate a checkpoint, optionally with ``Σ αᵢ·vᵢ`` added in memory (restored afterwards).

    Vectors are applied through the backend's bit-exact in-memory apply; with α = 0 the weights are
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
        backend (BackendSettings | None, default None): Which backend and its settings (device,
            dtype, batch size, engine options); ``None`` is ``HFSettings()``: the ``transformers``
            backend, cuda when available, float32 on CPU and bfloat16 on GPU, batches of 16. Half
            precisions make greedy texts depend on the batch.
        seed (int, default 1234): Seed of the perturbations.
        progress (bool, default True): Show a progress bar.

    Returns:
        EvalResult: As :func:`~rvec.eval.runner.evaluate`.

    Raises:
        InvalidArgumentError: ``vectors`` and ``alphas`` differ in length.
        CodeExecutionNotAllowedError: HumanEval without ``allow_code_execution`` (before loading).
        UnknownNameError: ``backend.name`` is not a registered backend.
        and every error of the backend's load (:func:`rvec.model.registry.open_model_state`),
        of :meth:`~rvec.model.state.ModelState.set_vectors` and of ``evaluate``.

    Example:
        >>> eval_command("Qwen/Qwen2.5-1.5B-Instruct", vectors=["vec/"], alphas=[1.0],
        ...              tasks=["gsm8k"], preset="paper", limit=50, out_dir=Path("runs/v1"),
        ...              backend=HFSettings(dtype="float32"))
    """
    if len(vectors) != len(alphas):
        raise InvalidArgumentError(
            f"{len(vectors)} vector(s) but {len(alphas)} alpha(s); pass one --alpha per --vector"
        )
    check_code_execution(tasks, allowed=allow_code_execution)  # before the (slow) model load
    with open_model_state(model_source, backend or HFSettings()) as state:
        if vectors:
            state.set_vectors([(Path(v), float(a)) for v, a in zip(vectors, alphas, strict=True)])
        return evaluate(
            state.language_model(),
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
