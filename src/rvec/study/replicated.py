"""A study's cells on persistent vLLM replicas (``backend: {name: vllm, replicas: N}``).

Every (variant, condition) part of the plan becomes one job for
:func:`rvec.model.vllm_replicas.run_cells`; each replica is one engine for the whole run, with every
vector of the study attached, and α changes only between its own jobs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rvec.study.plan import PlannedCell, by_model_state
from rvec.study.progress import timed

if TYPE_CHECKING:
    from rvec.study.execute import StudyExecutor
    from rvec.vector.artifact import ReasoningVector

__all__ = ["run_replicated"]


def run_replicated(
    executor: StudyExecutor,
    model_source: str,
    todo: list[tuple[PlannedCell, str]],
    vectors: dict[str, ReasoningVector],
) -> None:
    """Evaluate ``todo`` (cells and their cache keys) of one model on the configured replicas and
    record every cell through the executor, as its in-process path does.

    Args:
        executor (StudyExecutor): The running study (config, parts, cell recording).
        model_source (str): The model every replica loads.
        todo (list): ``(cell, cache key)`` pairs still to compute.
        vectors (dict[str, ReasoningVector]): The study's vectors by name, attached on every replica.
    """
    from rvec.model.vllm_replicas import CellJob, ReplicaSpec, run_cells

    names = list(vectors)
    jobs, parts = [], {}
    for vector, alpha, condition, group in by_model_state(todo):
        alphas = tuple(float(alpha) if n == vector and alpha else 0.0 for n in names)
        for part, perturbations in executor.parts_of(group):
            key = str(len(jobs))
            jobs.append(CellJob(key, alphas, executor.evaluate_args(condition, part, perturbations)))
            parts[key] = part
    settings = executor.config.backend
    paths = tuple(str(v.path) for v in vectors.values())
    spec = ReplicaSpec(source=executor.local(model_source), vectors=paths, settings=settings)  # type: ignore[arg-type]
    executor.progress.describe(f"{len(jobs)} jobs on {settings.replicas} replicas")  # type: ignore[attr-defined]
    with timed(executor.run_state.timings, "evaluate"):
        outcomes = run_cells(spec, jobs)
    for key, outcome in outcomes.items():
        executor.finish_part(parts[key], outcome.result, outcome.seconds)
