"""Evaluate one model, as one library call: load it once on the chosen backend, set vectors in
memory, run the evaluation protocol (:func:`rvec.eval.runner.evaluate`).

``rvec eval`` parses its options (backend settings included,
:func:`rvec.model.registry.parse_backend_settings`) and calls :func:`evaluate_model`; ``rvec pair``'s
held-out check calls it too. Everything else happens here and in the model-state seam
(:mod:`rvec.model.state`), which ``rvec run`` shares, so the command and a notebook behave the same.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from rvec.atomic import check_writable
from rvec.defaults import DEFAULT_SEED
from rvec.errors import InvalidArgumentError
from rvec.eval.overrides import RunOverrides, apply_overrides
from rvec.eval.plan import check_sampling_tasks, check_thinking_tasks
from rvec.eval.presets import get_preset
from rvec.eval.runner import check_code_execution, evaluate
from rvec.eval.types import EvalResult
from rvec.model.hf.settings import HFSettings
from rvec.model.registry import open_model_state
from rvec.model.settings import BackendSettings
from rvec.outputs import check_results_folder

__all__ = ["evaluate_model"]

logger = logging.getLogger(__name__)


def evaluate_model(
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
    seed: int = DEFAULT_SEED,
    progress: bool = True,
    verify: bool = True,
    overrides: RunOverrides | None = None,
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
        seed (int, default 1234): Seed of the perturbations and of the samples.
        progress (bool, default True): Show a progress bar.
        verify (bool, default True): Check each vector's shards against the sha256 in its
            ``rvec.json`` before using it (``--no-verify``: the cache key then includes the
            shards' file versions, so an edited shard still gets fresh responses).
        overrides (RunOverrides | None, default None): The run's changes to the preset: token
            budget, samples, temperature, top-p, thinking, chat-template switches
            (:mod:`rvec.eval.overrides`); recorded in the preset's name and fields.

    Returns:
        EvalResult: As :func:`~rvec.eval.runner.evaluate`.

    Raises:
        InvalidArgumentError: ``vectors`` and ``alphas`` differ in length, a bad override (samples
            < 1, temperature 0 with several samples, top-p outside (0, 1]…), thinking or several
            samples on a log-likelihood task (all before loading); a think tag the tokenizer cannot
            round-trip (after loading, before generating).
        OutputExistsError: ``out_dir`` holds files but no earlier evaluation (no ``cache/``).
        OutputError: ``out_dir`` cannot be written (read-only, permission, a file in the path).
        CodeExecutionNotAllowedError: HumanEval without ``allow_code_execution`` (before loading).
        UnknownNameError: ``backend.name`` is not a registered backend.
        VectorIntegrityError: a vector's shards or family differ from its ``rvec.json`` (before loading).
        and every error of the backend's load (:func:`rvec.model.registry.open_model_state`),
        of :meth:`~rvec.model.state.ModelState.set_vectors` and of ``evaluate``.

    Example:
        >>> evaluate_model("Qwen/Qwen2.5-1.5B-Instruct", vectors=["vec/"], alphas=[1.0],
        ...                tasks=["gsm8k"], preset="paper", limit=50, out_dir=Path("runs/v1"),
        ...                backend=HFSettings(dtype="float32"))
    """
    if len(vectors) != len(alphas):
        raise InvalidArgumentError(
            f"{len(vectors)} vector(s) but {len(alphas)} alpha(s); pass one --alpha per --vector"
        )
    # Everything about the request is checked before the (slow) model load.
    resolved = apply_overrides(get_preset(preset), overrides or RunOverrides())
    check_thinking_tasks(tasks, resolved)
    check_sampling_tasks(tasks, resolved)
    check_code_execution(tasks, allowed=allow_code_execution)
    if out_dir is not None:  # a read-only or foreign -o fails now, not after the model load
        check_results_folder(out_dir, markers=("cache",))
        check_writable(out_dir)
    from rvec.vector.artifact import read_vector

    # Verified before the (slow) model load; verified, a vector's content_hash (in the cache key) is
    # its recorded shard hashes, now proven.
    opened = [(read_vector(Path(v), verify=verify), float(a)) for v, a in zip(vectors, alphas, strict=True)]
    with open_model_state(model_source, backend or HFSettings()) as state:
        if opened:
            state.set_vectors(opened)
        return evaluate(
            state.language_model(),
            tasks=tasks,
            preset=resolved,
            condition=condition,
            perturbations=perturb,
            limit=limit,
            data_dir=data_dir,
            allow_code_execution=allow_code_execution,
            seed=seed,
            out_dir=out_dir,
            progress=progress,
        )
