"""``rvec compress``: store a vector smaller, by rank (truncated SVD per matrix, kept factored) or by
density (the largest-magnitude entries of each tensor, kept sparse), and record what it cost.

The error of each tensor is the relative Frobenius norm of what was dropped,
``‖v − v̂‖/‖v‖`` — for ``--rank r`` exactly the SVD tail ``sqrt(Σ_{i>r} σᵢ²)/‖v‖`` — and the
overall error is ``sqrt(Σ_t ‖v_t − v̂_t‖²)/sqrt(Σ_t ‖v_t‖²)``. Both go into the output's ``rvec.json``.
Tensors are read, compressed and written one at a time.

Density is **per tensor**: each tensor keeps exactly ``k = ⌊D·n + ½⌋`` of its ``n`` entries (round
half up), the ``k`` largest in magnitude (ties at the cut broken as ``numpy.argpartition`` breaks
them, deterministically). Per tensor rather than one global threshold so that every tensor keeps the
same share — a global cut would empty the small-delta tensors (norms, early layers) entirely — and
so that one pass over one tensor at a time suffices.

A tensor that is exactly zero (the untrained tensors of a LoRA pair) is stored with no entries under
either method: keeping zeros, or factors of zeros, would add bytes and change nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rvec.checkpoint.dtypes import dot
from rvec.errors import InvalidArgumentError
from rvec.progress import ProgressCallback
from rvec.vector.artifact import ReasoningVector, read_vector
from rvec.vector.lowrank import check_rank, factors_at_rank, planned_rank
from rvec.vector.writing import Dense, Encoded, Factored, Sparse, TensorPlan, write_vector


@dataclass
class CompressResult:
    """What ``compress`` wrote and what it cost."""

    vector: ReasoningVector
    method: str  # "rank" or "density"; or a --method name (prune.py)
    setting: int | float  # the rank or the density
    relative_error: float
    per_tensor: dict[str, dict[str, Any]] = field(default_factory=dict)
    dense: list[str] = field(default_factory=list)  # tensors --rank keeps dense (not 2-D)
    zero: list[str] = field(default_factory=list)  # tensors exactly zero: stored with no entries
    bytes_before: int = 0
    bytes_after: int = 0
    kept_fraction: float | None = None  # compress --method: entries kept over all tensors
    settings: dict[str, Any] = field(default_factory=dict)  # compress --method: density, gamma, rescale, seed

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.vector.path),
            "method": self.method,
            **({self.method: self.setting} if not self.settings else self.settings),
            **({"kept_fraction": self.kept_fraction} if self.kept_fraction is not None else {}),
            "relative_error": self.relative_error,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "kept_dense": self.dense,
            "zero": self.zero,
            "per_tensor": self.per_tensor,
        }


def kept_count(density: float, numel: int) -> int:
    """Entries ``--density`` keeps of a tensor of ``numel``: ``⌊density·numel + ½⌋``."""
    return min(numel, math.floor(density * numel + 0.5))


def check_density(density: float) -> None:
    """Raises InvalidArgumentError unless ``0 < density ≤ 1``."""
    if not (math.isfinite(density) and 0 < density <= 1):
        raise InvalidArgumentError(
            f"--density {density:g}: outside (0, 1]; pass the fraction of entries to keep, e.g. 0.05"
        )


def compress(
    vector: ReasoningVector | str | Path,
    out: str | Path,
    *,
    rank: int | None = None,
    density: float | None = None,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
    verify: bool = True,
    on_progress: ProgressCallback | None = None,
) -> CompressResult:
    """Write ``out``: ``vector`` at rank ``rank`` (factored) or keeping the fraction ``density`` (sparse).

    Args:
        vector: the vector folder (or an opened :class:`ReasoningVector`).
        out: the compressed vector folder to create (atomically).
        rank: per-matrix truncated SVD rank; a matrix smaller than it is kept at full rank
            (error 0); tensors that are not 2-D (norms, biases) stay dense and are listed.
        density: fraction of each tensor's entries to keep, in (0, 1].
        overwrite: replace ``out`` if it exists and rvec wrote it (it has an ``rvec.json``).
        overwrite_foreign: replace ``out`` even if rvec did not write it (never an input or a
            protected place: the working folder, its ancestors, home, a filesystem root).
        verify: check ``vector``'s shards against its recorded sha256 first (``--no-verify``).
        on_progress: ``(bytes done, bytes total)`` of the vector as float32.

    Returns:
        :class:`CompressResult` with the per-tensor and overall relative errors.

    Raises:
        InvalidArgumentError: neither or both of rank and density; rank < 1 or larger than every
            matrix; density outside (0, 1].
        VectorIntegrityError: the input fails verification.

    Example:
        >>> compress("vec/", "vec-r32/", rank=32).relative_error  # doctest: +SKIP
    """
    if (rank is None) == (density is None):
        raise InvalidArgumentError("pass exactly one of --rank R or --density D")
    v = read_vector(vector, verify=verify) if isinstance(vector, (str, Path)) else vector
    if rank is not None:
        check_rank(rank, v.shapes, str(v.path))
    else:
        check_density(float(density or 0.0))
    job = _Compression(v, rank=rank, density=density, on_progress=on_progress)
    written = write_vector(
        out,
        job.plan,
        job.tensors(),
        manifest={
            "formula": f"{v.manifest.get('formula', 'v')}; compressed: {_describe(job.method, job.shown)}",
            "sources": v.manifest.get("sources"),
            "config": v.config,
            "check": v.manifest.get("check"),
            "skipped_non_float": v.manifest.get("skipped_non_float", []),
            **({"control": v.manifest["control"]} if "control" in v.manifest else {}),
        },
        summarise=job.summary,
        lineage=v,
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        inputs=[v.path],
    )
    summary = written.manifest["compression"]
    return CompressResult(
        vector=written,
        method=job.method,
        setting=job.shown,
        relative_error=summary["relative_error"],
        per_tensor={n: {**written.manifest["tensors"][n], **t} for n, t in job.per_tensor.items()},
        dense=summary["kept_dense"],
        zero=job.zero,
        bytes_before=sum(i.nbytes for i in v.index),
        bytes_after=sum(i.nbytes for i in written.index),
    )


class _Compression:
    """One ``compress`` run: the plan, the tensors compressed one at a time, and the summary."""

    def __init__(
        self,
        v: ReasoningVector,
        *,
        rank: int | None,
        density: float | None,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.v = v
        self.on_progress = on_progress
        # A zero delta (every tensor a LoRA pair did not train) stays zero at no cost in either
        # method: factors or kept entries of zeros would only add bytes.
        self.zero = [n for n in v.shapes if v.is_zero(n)]
        self.plan = [_plan_one(v, n, rank=rank, density=density, zero=n in self.zero) for n in v.shapes]
        self.method = "rank" if rank is not None else "density"
        self.shown: int | float = int(rank) if rank is not None else float(density or 0.0)
        self.per_tensor: dict[str, dict[str, Any]] = {}

    def tensors(self) -> Iterator[tuple[str, Encoded, Mapping[str, Any]]]:
        done, total = 0, sum(math.prod(s) for s in self.v.shapes.values())
        for p in self.plan:
            tensor, source_norm, dropped = _compress_one(self.v, p, p.name in self.zero)
            rec = self.v.manifest["tensors"][p.name]
            base = source_norm / rec["rel_norm"] if rec.get("rel_norm") else None
            error = dropped / source_norm if source_norm > 0 else 0.0
            self.per_tensor[p.name] = {
                "relative_error": error,
                "source_norm": source_norm,
                "dropped_norm": dropped,
            }
            done += math.prod(p.shape)
            if self.on_progress:
                self.on_progress(4 * done, 4 * total)  # float32 bytes, as every vector command counts
            extra = {
                "relative_error": error,
                "source_norm": source_norm,
                **({"base_norm": base} if base else {}),
            }
            yield p.name, tensor, extra

    def summary(self, records: Mapping[str, Any]) -> dict[str, Any]:
        src_sq = sum(t["source_norm"] ** 2 for t in self.per_tensor.values())
        drop_sq = sum(t["dropped_norm"] ** 2 for t in self.per_tensor.values())
        return {
            "compression": {
                "method": self.method,
                self.method: self.shown,
                "relative_error": math.sqrt(drop_sq / src_sq) if src_sq > 0 else 0.0,
                "kept_dense": [p.name for p in self.plan if p.encoding == "dense"],
                "zero": self.zero,
                "from": self.v.describe(),
            }
        }


def _describe(method: str, setting: int | float) -> str:
    return (
        f"rank {setting} per matrix (truncated SVD)"
        if method == "rank"
        else f"density {setting:g} per tensor (largest |v|)"
    )


def _plan_one(
    v: ReasoningVector, name: str, *, rank: int | None, density: float | None, zero: bool
) -> TensorPlan:
    shape = v.shapes[name]
    if zero:
        return TensorPlan(name, shape, "sparse", kept=0)
    if rank is None:
        return TensorPlan(name, shape, "sparse", kept=kept_count(float(density or 0.0), math.prod(shape)))
    if len(shape) != 2:
        return TensorPlan(name, shape, "dense")
    return TensorPlan(name, shape, "factored", rank=planned_rank(v, name, rank))


def _compress_one(v: ReasoningVector, plan: TensorPlan, zero: bool) -> tuple[Encoded, float, float]:
    """(the compressed tensor, ‖v_t‖, ‖v_t − compressed‖) for one tensor of the plan."""
    if zero:
        return Sparse(np.empty(0, np.int64), np.empty(0, np.float32)), 0.0, 0.0
    if plan.encoding == "factored":
        f = factors_at_rank(v, plan.name, int(plan.rank or 0))
        return Factored(f.a, f.b), f.norm, f.tail
    flat = v.read(plan.name).reshape(-1)  # (numel,) float32
    wide = flat.astype(np.float64)
    norm = math.sqrt(dot(wide, wide))
    del wide
    if plan.encoding == "dense":
        return Dense(flat.reshape(plan.shape)), norm, 0.0
    k = int(plan.kept or 0)
    if k == flat.size:
        keep = np.arange(flat.size, dtype=np.int64)
    else:
        keep = np.sort(np.argpartition(np.abs(flat), flat.size - k)[flat.size - k :]).astype(np.int64)
    dropped = np.ones(flat.size, dtype=bool)
    dropped[keep] = False
    rest = flat[dropped].astype(np.float64)
    return Sparse(keep, flat[keep]), norm, math.sqrt(dot(rest, rest))
