"""Combine vectors with a merge method (TIES, DARE, breadcrumbs, RAM…) into one vector, streamed.

:class:`MergedDelta` is a :class:`~rvec.vector.artifact.DeltaSource`: it yields the merged delta of a
tensor block by block, on demand, so ``apply`` (and in-memory application) take a merge like any
vector and nothing is written in between. :func:`merge` writes it as an ordinary vector folder.

Memory: a block of each input at a time, plus per-tensor statistics that are a few numbers per
vector (a method that needs a whole-tensor statistic computes it by streamed passes over that
tensor the first time one of its blocks is asked for; :mod:`rvec.vector.methods.select`), plus the
packed keep masks such a pass leaves for the merge, within a budget and only until the tensor has
been served whole (:mod:`rvec.vector.methods.kept_bits`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rvec.checkpoint.pipeline import ThreadWorkspaces, default_workers, ordered_map
from rvec.checkpoint.reader import Workspace, blocks
from rvec.checkpoint.source import Checkpoint
from rvec.defaults import DEFAULT_SEED
from rvec.errors import InvalidArgumentError
from rvec.outputs import input_paths
from rvec.progress import ProgressCallback
from rvec.vector import family
from rvec.vector.apply import APPLY_BLOCK_ELEMENTS
from rvec.vector.artifact import DeltaSource, DonorPair, ReasoningVector, read_vector
from rvec.vector.methods.base import MergeMethod, Params, TensorInput, Value
from rvec.vector.methods.kept_bits import MASK_BUDGET_BYTES, MaskBudget
from rvec.vector.methods.params import resolve_params
from rvec.vector.methods.registry import get_method
from rvec.vector.methods.sparsify import TensorBlocks
from rvec.vector.writing import Blocks, Encoded, Sparse, TensorPlan, write_vector

logger = logging.getLogger(__name__)

# Elements per block of the statistics passes (1 MiB of float32). Not 2²⁰: a 0.5B model's attention
# tensors are one such block, so their passes ran on one thread, and DARE's merge took 10-20% longer.
STAT_BLOCK_ELEMENTS = 1 << 18


@dataclass(frozen=True)
class MergeSpec:
    """A merge, fully resolved: the method, every parameter, the seed (DARE's masks)."""

    method: str
    params: Params
    seed: int = DEFAULT_SEED

    def describe(self) -> dict[str, Any]:
        m = get_method(self.method)
        return {
            "method": self.method,
            "reference_url": m.reference_url,
            "parameters": dict(self.params.shared),
            "per_vector": [dict(p) for p in self.params.per_vector],
            "seed": self.seed,
        }


def merge_spec(
    method: str,
    n_vectors: int,
    *,
    weights: Sequence[float] | None = None,
    densities: Sequence[float] | None = None,
    params: Mapping[str, Value] | None = None,
    per_vector: Sequence[Mapping[str, Value]] | None = None,
    seed: int = DEFAULT_SEED,
    mergekit_required: bool = False,
) -> MergeSpec:
    """A checked :class:`MergeSpec`; ``weights``/``densities`` are per-vector lists in vector order.

    Raises:
        UnknownNameError: no such method.
        InvalidArgumentError: a list whose length is not the vector count, an unknown or bad parameter.
    """
    m = get_method(method)
    for name, values in (("weight", weights), ("density", densities)):
        if values is not None and params and name in params:
            raise InvalidArgumentError(
                f"pass --{name} (one for every vector) or --{name}s (one per vector), not both"
            )
    rows = [dict(p) for p in (per_vector or [{} for _ in range(n_vectors)])]
    for name, values in (("weight", weights), ("density", densities)):
        if values is None:
            continue
        if len(values) != n_vectors:
            raise InvalidArgumentError(
                f"{len(values)} {name} values for {n_vectors} vectors; give one per vector, in vector order"
            )
        for row, value in zip(rows, values):
            row[name] = value
    resolved = resolve_params(
        m, n_vectors, shared=params, per_vector=rows, mergekit_required=mergekit_required
    )
    return MergeSpec(method=method, params=resolved, seed=int(seed))


class MergedDelta:
    """The merged delta of several sources, computed block by block on demand (a ``DeltaSource``)."""

    def __init__(
        self,
        inputs: Sequence[DeltaSource],
        spec: MergeSpec,
        *,
        stat_block_elements: int = STAT_BLOCK_ELEMENTS,
        mask_budget: int = MASK_BUDGET_BYTES,
    ) -> None:
        if not inputs:
            raise InvalidArgumentError("no vector to merge; pass at least one vector folder")
        if len(spec.params.per_vector) != len(inputs):
            raise InvalidArgumentError(
                f"the merge is set up for {len(spec.params.per_vector)} vectors but {len(inputs)} were given"
            )
        self.inputs = tuple(inputs)
        self.spec = spec
        self.method: MergeMethod = get_method(spec.method)
        family.check_alike(self.inputs)
        self._stat_block = stat_block_elements  # statistics passes read blocks of this many elements
        self._states: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in self.shapes}
        self._masks = MaskBudget(mask_budget)

    @property
    def label(self) -> str:
        return f"{self.spec.method}({', '.join(s.label for s in self.inputs)})"

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return self.inputs[0].shapes

    @property
    def config(self) -> dict[str, Any]:
        return self.inputs[0].config

    def read_delta(self, name: str, start: int, stop: int) -> np.ndarray:
        n = stop - start
        return self.read_delta_into(name, start, np.empty(n, np.float32), Workspace(max(n, 1)))

    def read_delta_into(
        self, name: str, start: int, out: np.ndarray, workspace: Workspace, *, check_finite: bool = True
    ) -> np.ndarray:
        """Fill ``out`` (float32) with the merged delta of ``name`` from flat element ``start``.

        The first call for a tensor computes its statistics (other threads asking for it wait);
        those passes read every input checked for NaN and Inf. ``check_finite`` is passed to the
        inputs' reads of the block itself.
        """
        state = self.state(name, workspace)
        n = out.size
        deltas = [
            source.read_delta_into(
                name,
                start,
                workspace.get(f"merge:in{i}", np.float32, n),
                workspace,
                check_finite=check_finite,
            )
            for i, source in enumerate(self.inputs)
        ]
        merged = self.method.combine(state, deltas, start, out, self.spec.params, workspace)
        self._masks.served(name, n)
        return merged

    def state(self, name: str, workspace: Workspace) -> Any:
        """The method's per-tensor state of ``name`` (computed once, by streamed passes)."""
        if name in self._states:
            return self._states[name]
        with self._locks[name]:
            if name not in self._states:
                numel = math.prod(self.shapes[name])
                ws = Workspace(self._stat_block)  # its own buffers: the caller's hold a block in use
                inputs = [
                    TensorInput(
                        i, name, numel, _block_reader(s, name, numel, ws, i, self._stat_block), self._masks
                    )
                    for i, s in enumerate(self.inputs)
                ]
                self._states[name] = self.method.prepare(inputs, self.spec.params, seed=self.spec.seed, ws=ws)
        return self._states[name]

    @property
    def held_mask_bytes(self) -> int:
        """Bytes of packed keep masks held now, between a tensor's statistics pass and its last block."""
        return self._masks.held_bytes

    def describe(self) -> dict[str, Any]:
        return {"kind": "merge", **self.spec.describe(), "inputs": [s.describe() for s in self.inputs]}


def _block_reader(
    source: DeltaSource, name: str, numel: int, ws: Workspace, index: int, block_elements: int
) -> TensorBlocks:
    """``source``'s tensor ``name`` as float32 blocks for the statistics passes (one buffer per workspace)."""

    def read(start: int, stop: int, workspace: Workspace) -> np.ndarray:
        buf = workspace.get(f"merge:stat{index}", np.float32, stop - start)
        return source.read_delta_into(name, start, buf, workspace)

    return TensorBlocks(numel, block_elements, read, ws)


@dataclass
class MergeResult:
    """What :func:`merge` wrote."""

    vector: ReasoningVector
    spec: MergeSpec
    kept_fraction: list[float]  # per input: entries its sparsification kept, over all tensors
    sparse: list[str]  # tensors stored sparse (smaller than dense)
    nonzero_fraction: float  # of the merged vector's entries

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.vector.path),
            **self.spec.describe(),
            "kept_fraction": self.kept_fraction,
            "nonzero_fraction": self.nonzero_fraction,
            "sparse_tensors": len(self.sparse),
            "dense_tensors": len(self.vector.shapes) - len(self.sparse),
        }


def merge(
    vectors: Sequence[DeltaSource | str | Path],
    out: str | Path,
    *,
    method: str,
    weights: Sequence[float] | None = None,
    densities: Sequence[float] | None = None,
    params: Mapping[str, Value] | None = None,
    seed: int = DEFAULT_SEED,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
    verify: bool = True,
    workers: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> MergeResult:
    """Merge ``vectors`` with ``method`` and write the result as an ordinary vector folder.

    Args:
        vectors: vector folders (or opened sources), in order; per-vector lists follow this order.
        out: the vector folder to create (atomically).
        method: a name of :data:`rvec.vector.methods.METHODS` (``ties``, ``dare_linear``…).
        weights: one ``weight`` per vector (default 1 each; mergekit requires them).
        densities: one ``density`` per vector.
        params: any other parameter by mergekit's name (``lambda``, ``normalize``, ``rescale``,
            ``gamma``, ``epsilon``, ``int8_mask``); a per-vector one given here applies to every vector.
        seed: DARE's mask seed (recorded; methods without randomness ignore it).
        overwrite: replace ``out`` if rvec wrote it.
        overwrite_foreign: replace ``out`` even if rvec did not write it.
        verify: check each input's shards against its recorded sha256 first.
        workers: threads computing blocks (default: the usable cores, at most 4).
        on_progress: ``(elements done, elements total)`` over the write pass.

    Returns:
        :class:`MergeResult`; the folder's ``rvec.json`` records the method, every parameter, the
        seed and each input's content hash under ``merge``.

    Raises:
        UnknownNameError: no such method.
        InvalidArgumentError: a bad parameter or list length.
        IncompatibleError: the vectors differ in tensors, shapes or family.
        OutputExistsError, UnsafeOutputError, OutputError: as for every writer.

    Example:
        >>> merge(["a/", "b/"], "ab/", method="ties", weights=[1, 0.7], densities=[0.5, 0.3])  # doctest: +SKIP
    """
    sources = [read_vector(v, verify=verify) if isinstance(v, (str, Path)) else v for v in vectors]
    spec = merge_spec(method, len(sources), weights=weights, densities=densities, params=params, seed=seed)
    merged = MergedDelta(sources, spec)
    ws = Workspace(STAT_BLOCK_ELEMENTS)
    kept_total = [0] * len(sources)
    plan: list[TensorPlan] = []
    for name, shape in merged.shapes.items():
        numel = math.prod(shape)
        kept = merged.method.kept(merged.state(name, ws), numel, len(sources))
        kept_total = [a + b for a, b in zip(kept_total, kept)]
        # Sparse costs 12 bytes an entry against dense's 4: only worth it below a third non-zero.
        if 3 * min(numel, sum(kept)) < numel:
            plan.append(TensorPlan(name, shape, "sparse", kept=_count_nonzero(merged, name, numel, workers)))
        else:
            plan.append(TensorPlan(name, shape, "dense"))
    total = sum(math.prod(p.shape) for p in plan)
    progress = _Progress(total, on_progress)
    written = write_vector(
        out,
        plan,
        ((p.name, _encoded(merged, p, workers, progress), {}) for p in plan),
        manifest={
            "formula": f"v = {method}(v₁ … v{len(sources)}) (float32; mergekit's parameters)",
            "sources": {f"input {i + 1}": s.label for i, s in enumerate(sources)},
            "config": merged.config,
            "merge": merged.describe(),
        },
        lineage=_lineage_of(sources[0]),
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        inputs=input_paths(*sources),
    )
    grand = sum(math.prod(s) for s in merged.shapes.values())
    zeros = sum(r["zero_fraction"] * math.prod(r["shape"]) for r in written.manifest["tensors"].values())
    return MergeResult(
        vector=written,
        spec=spec,
        kept_fraction=[k / grand if grand else 1.0 for k in kept_total],
        sparse=[p.name for p in plan if p.encoding == "sparse"],
        nonzero_fraction=1 - zeros / grand if grand else 0.0,
    )


class _Progress:
    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total, self.done, self.callback = total, 0, callback

    def add(self, n: int) -> None:
        self.done += n
        if self.callback:
            self.callback(self.done, self.total)


def _merged_blocks(
    merged: MergedDelta, name: str, numel: int, workers: int | None
) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, block)`` of the merged tensor, computed on worker threads, in order (each a new array)."""
    spaces = ThreadWorkspaces(APPLY_BLOCK_ELEMENTS)
    jobs = [(a, b) for a, b in blocks(numel, APPLY_BLOCK_ELEMENTS) if b > a]
    n_workers = workers or default_workers()

    def compute(job: tuple[int, int]) -> tuple[int, np.ndarray]:
        a, b = job
        return a, merged.read_delta_into(name, a, np.empty(b - a, np.float32), spaces.get())

    with closing(ordered_map(compute, jobs, workers=n_workers, window=2 * n_workers)) as results:
        yield from results


def _count_nonzero(merged: MergedDelta, name: str, numel: int, workers: int | None) -> int:
    return sum(int(np.count_nonzero(b)) for _, b in _merged_blocks(merged, name, numel, workers))


def _encoded(merged: MergedDelta, plan: TensorPlan, workers: int | None, progress: _Progress) -> Encoded:
    """The merged tensor as the writer takes it: dense blocks streamed, or sparse arrays.

    A sparse tensor is gathered in memory (12 bytes per non-zero, under its dense float32 size,
    since sparse is chosen only below a third non-zero) because its indices precede its values on disk.
    """
    numel = math.prod(plan.shape)
    if plan.encoding == "dense":

        def dense() -> Iterator[np.ndarray]:
            for _, block in _merged_blocks(merged, plan.name, numel, workers):
                yield block
                progress.add(block.size)

        return Blocks(dense())
    indices, values = [], []
    for start, block in _merged_blocks(merged, plan.name, numel, workers):
        idx = np.flatnonzero(block)
        indices.append(idx + start)
        values.append(block[idx])
        progress.add(block.size)
    return Sparse(
        np.concatenate(indices).astype(np.int64) if indices else np.empty(0, np.int64),
        np.concatenate(values) if values else np.empty(0, np.float32),
    )


def _lineage_of(source: DeltaSource) -> Checkpoint | ReasoningVector | None:
    """Where the output's lineage probe comes from: the first input's probe or its SFT donor."""
    if isinstance(source, ReasoningVector):
        return source
    if isinstance(source, DonorPair):
        return source.sft
    return None
