"""``θ' = θ_target + Σ αᵢ·vᵢ`` streamed to a new Hugging Face model folder.

Arithmetic is float32: each output block is ``target.float()``, then ``+ (αᵢ·fᵢ)·vᵢ`` for each vector
in order (``fᵢ`` the mask/schedule factor), then one cast to the output dtype. Blocks of at most
``block_elements`` elements flow from the readers to the writer, so peak memory is a few blocks,
not a model and not an embedding matrix.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from rvec import __version__
from rvec.atomic import atomic_dir
from rvec.checkpoint.dtypes import (
    F32,
    FLOAT_NAMES,
    DType,
    all_finite,
    coerce,
    from_float32,
    same_width_uint,
    to_float32,
)
from rvec.checkpoint.files import copy_metadata, metadata_files
from rvec.checkpoint.pipeline import BufferPool, ThreadWorkspaces, default_workers, ordered_map
from rvec.checkpoint.reader import Workspace, blocks
from rvec.checkpoint.source import Checkpoint
from rvec.checkpoint.writer import (
    DEFAULT_MAX_SHARD_BYTES,
    WRITE_QUEUE_DEPTH,
    PlannedTensor,
    ShardedWriter,
    metadata_allowance,
)
from rvec.errors import NonFiniteError
from rvec.outputs import input_paths
from rvec.progress import ProgressCallback
from rvec.vector.apply_plan import ApplyPlan, OutputTensor, plan_apply
from rvec.vector.artifact import DeltaSource
from rvec.vector.cards import model_card
from rvec.vector.compat import CheckReport
from rvec.vector.embeddings import EmbeddingPolicy
from rvec.vector.masks import Selection

logger = logging.getLogger(__name__)

# Elements per block handed to a worker thread. Measured on the 0.5B bench (2 cores, 2 workers):
# 64K-element blocks took 2.8 s and 2M-element blocks 2.8 s, against 1.7 s for 256K-512K. Smaller
# blocks pay thread hand-offs and GIL switches per block; larger ones fall out of the CPU cache
# across the dozen passes each block gets.
APPLY_BLOCK_ELEMENTS = 1 << 18

_DTYPE_NAMES = {dtype: name for name, dtype in FLOAT_NAMES.items()}


@dataclass
class Survival:
    """How much of α·v survived the cast to the output dtype."""

    nonzero: int = 0
    erased: int = 0
    per_tensor: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, name: str, nonzero: int, erased: int) -> None:
        nz, er = self.per_tensor.get(name, (0, 0))
        self.per_tensor[name] = (nz + nonzero, er + erased)
        self.nonzero += nonzero
        self.erased += erased

    @property
    def erased_fraction(self) -> float:
        return self.erased / self.nonzero if self.nonzero else 0.0

    def worst(self, n: int = 5) -> list[dict[str, Any]]:
        rows = [
            {"tensor": k, "erased_fraction": er / nz, "nonzero": nz, "erased": er}
            for k, (nz, er) in self.per_tensor.items()
            if nz
        ]
        return sorted(rows, key=lambda r: -r["erased_fraction"])[:n]

    def to_dict(self) -> dict[str, Any]:
        return {
            "nonzero": self.nonzero,
            "erased": self.erased,
            "erased_fraction": self.erased_fraction,
            "worst": self.worst(),
        }


@dataclass
class ApplyResult:
    path: Path
    survival: Survival
    checks: list[CheckReport]
    provenance: dict[str, Any]


def apply(
    vectors: Sequence[DeltaSource | str | Path],
    target: str | Path | Checkpoint,
    out: str | Path,
    *,
    alphas: Sequence[float],
    dtype: DType | str | Any | None = None,
    selection: Selection | None = None,
    embeddings: EmbeddingPolicy | None = None,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
    lineage: bool = True,
    allow_pickle: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    block_elements: int = APPLY_BLOCK_ELEMENTS,
    workers: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> ApplyResult:
    """Write ``θ_target + Σ αᵢ·vᵢ`` as a Hugging Face model folder at ``out``.

    Args:
        vectors: vector folders, :class:`ReasoningVector` or :class:`DonorPair` objects.
        target: the model to add the vectors to (its config, tokenizer, chat template and generation
            config are copied to the output).
        out: output folder; it appears only once complete.
        alphas: one α per vector (negative subtracts).
        dtype: output dtype: a :class:`~rvec.checkpoint.dtypes.DType`, its name or a ``torch.dtype``
            (default: each tensor keeps the target's dtype).
        selection: include/exclude/layers/schedule mask (default: everything, factor 1).
        embeddings: ``apply``/``skip``/``overlap`` (required when vocabularies differ).
        overwrite: replace ``out`` if it exists and rvec wrote it (it has an ``rvec.json``).
        overwrite_foreign: replace ``out`` even if rvec did not write it. Neither flag allows an
            ``out`` that is the working folder, an ancestor of it, home, a filesystem root, or a
            folder holding an input.
        lineage: refuse a target that looks unrelated to the donors (False: apply anyway).
        allow_pickle: accept a pickled ``.bin`` target.
        max_shard_bytes: shard size limit.
        block_elements: elements per streamed block (bounds peak memory).
        workers: threads computing blocks (default: the usable cores, at most 4); the writer
            thread comes on top.
        on_progress: progress callback ``(bytes done, bytes total)``.

    Returns:
        :class:`ApplyResult` with the delta-survival figures and the provenance written to ``rvec.json``.

    Raises:
        IncompatibleError: architecture, tensors, shapes, vocabulary or lineage do not allow it.
        NonFiniteError: the result of some tensor is NaN/Inf (nothing is written).
        OutputExistsError: ``out`` exists and ``overwrite`` is false (``ForeignOutputError``: rvec
            did not write it and ``overwrite_foreign`` is false).
        UnsafeOutputError: ``out`` is a protected place or holds an input (see above).
        OutputError: the filesystem refused the output (read-only, full, permission…).
        InvalidArgumentError: α count differs from the vector count.

    Example:
        >>> apply(["vec/"], "Qwen/Qwen2.5-1.5B-Instruct", "out/", alphas=[1.0])  # doctest: +SKIP
    """
    job = plan_apply(
        vectors,
        target,
        alphas=alphas,
        dtype=coerce(dtype) if dtype is not None else None,
        selection=selection or Selection(),
        embeddings=embeddings,
        lineage=lineage,
        allow_pickle=allow_pickle,
    )
    planned = [PlannedTensor(o.name, o.dtype, o.shape) for o in job.outputs]
    total = sum(p.nbytes for p in planned)
    copied = sum(f.stat().st_size for f in _target_files(job.target))
    survival = Survival()
    with atomic_dir(
        Path(out),
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        inputs=input_paths(job.target, *job.sources),
        needed_bytes=total + copied + metadata_allowance(len(planned)),
    ) as tmp:
        writer = ShardedWriter(tmp, planned, prefix="model", max_shard_bytes=max_shard_bytes)
        try:
            _stream_outputs(
                job, writer, survival, block_elements, workers or default_workers(), on_progress, total
            )
            files = writer.finish()
        except BaseException:
            writer.abort()
            raise
        provenance = _provenance(job, survival, writer.sha256, files)
        _copy_target_files(job.target, tmp, dtype=job.dtype, untie=job.untie)
        (tmp / "rvec.json").write_text(json.dumps(provenance, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(provenance))
    logger.info(
        "wrote %s; %.4f%% of non-zero α·v entries erased by rounding", out, 100 * survival.erased_fraction
    )
    return ApplyResult(path=Path(out), survival=survival, checks=job.reports, provenance=provenance)


def _stream_outputs(
    job: ApplyPlan,
    writer: ShardedWriter,
    survival: Survival,
    block_elements: int,
    workers: int,
    on_progress: ProgressCallback | None,
    total: int,
) -> None:
    """Compute every block of every output on ``workers`` threads and hand them to ``writer`` in order.

    Each block is computed into a buffer from a pool; the writer thread gives the buffer back once
    the block is on disk, so no block is copied and memory stays at the pool's size. ``total`` is
    the bytes of all outputs, for ``on_progress``.
    """
    plan, target, sources = job.outputs, job.target, job.sources
    jobs = [(o, start, stop) for o in plan for start, stop in blocks(math.prod(o.shape), block_elements)]
    window = 2 * workers  # blocks in flight on the workers
    pool = BufferPool(block_elements * max(o.dtype.itemsize for o in plan), window + WRITE_QUEUE_DEPTH + 2)
    workspaces = ThreadWorkspaces(block_elements)
    done = 0

    def compute(job: tuple[OutputTensor, int, int]) -> tuple[np.ndarray, tuple[int, int] | None, np.ndarray]:
        o, start, stop = job
        buffer = pool.take()
        try:
            block, counts = _combine_block(o, target, sources, start, stop, workspaces.get(), buffer)
        except BaseException:
            pool.give(buffer)
            raise
        return block, counts, buffer

    with closing(ordered_map(compute, jobs, workers=workers, window=window)) as results:
        for (o, _, _), (block, counts, buffer) in zip(jobs, results):
            if counts is not None:
                survival.add(o.name, *counts)
            writer.write(o.name, block, on_written=partial(pool.give, buffer))
            done += block.nbytes
            if on_progress:
                on_progress(done, total)


def _combine_block(
    o: OutputTensor,
    target: Checkpoint,
    sources: Sequence[DeltaSource],
    start: int,
    stop: int,
    ws: Workspace,
    buffer: np.ndarray,
) -> tuple[np.ndarray, tuple[int, int] | None]:
    """One flat block of the output, cast(target + Σ factor·v), and its survival counts.

    Args:
        ws: this thread's scratch buffers, reused from block to block.
        buffer: bytes the result is written into, viewed as ``o.dtype``.

    Returns:
        ``(result, (non-zero deltas, erased by rounding))``; counts are ``None`` when no vector
        touches the block.
    """
    n = stop - start
    out = buffer[: n * o.dtype.itemsize].view(o.dtype.numpy)
    base_dtype = target.index[o.target_name].dtype
    if not o.contributions and base_dtype == o.dtype:
        return target.read_into(o.target_name, start, out), None
    base = target.read_into(o.target_name, start, ws.get("target", base_dtype.numpy, n))
    if not o.contributions:
        return _cast(base, base_dtype, o.dtype, out, ws), None
    # (n,) float32 accumulator: the output buffer itself when the output is float32.
    acc = to_float32(base, out if o.dtype == F32 else ws.get("acc", np.float32, n))
    total: np.ndarray | None = None  # (n,) float32 Σ factor·v, for survival
    for c in o.contributions:
        hi = min(stop, c.limit)
        if hi <= start:
            continue
        # Not checked for NaN/Inf here: a non-finite v makes acc non-finite, which is checked below
        # (one scan per block, not two); _refuse_non_finite then names the culprit.
        delta = sources[c.source].read_delta_into(
            c.delta_name, start, ws.get("delta", np.float32, hi - start), ws, check_finite=False
        )
        if c.factor != 1:  # x·1 is x, bit for bit: α = 1 (a merge's usual) skips a pass
            np.multiply(delta, np.float32(c.factor), out=delta)  # float32 arithmetic, as torch's mul_
        np.add(acc[: hi - start], delta, out=acc[: hi - start])
        if total is None and hi == stop and len(o.contributions) == 1:
            total = delta  # the common case: one vector covering the block; no extra buffer
        else:
            if total is None:
                total = ws.get("total", np.float32, n)
                total.fill(0)
            np.add(total[: hi - start], delta, out=total[: hi - start])
    if not all_finite(acc, ws.get("finite", np.bool_, n)):
        _refuse_non_finite(o, target, sources, start, stop, ws)
    if o.dtype != F32:
        from_float32(acc, out)
    if total is None:
        return out, (0, 0)
    base_cast = (
        base
        if base_dtype == o.dtype
        else _cast(base, base_dtype, o.dtype, ws.get("base_cast", o.dtype.numpy, n), ws)
    )
    # Compared bit for bit (an unsigned view), which is exact for finite values; it differs from
    # == only on ±0, which counts as changed.
    bits = same_width_uint(o.dtype)
    nonzero = ws.get("nonzero", np.bool_, n)
    changed = ws.get("changed", np.bool_, n)
    np.not_equal(total, 0, out=nonzero)
    np.not_equal(out.view(bits), base_cast.view(bits), out=changed)
    nz = int(np.count_nonzero(nonzero))
    # Only entries with a non-zero delta count: a zero delta can still flip −0.0 to +0.0 (a bit
    # change, no value change), and several deltas can cancel yet move θ by rounding.
    np.logical_and(changed, nonzero, out=changed)
    return out, (nz, nz - int(np.count_nonzero(changed)))


def _refuse_non_finite(
    o: OutputTensor, target: Checkpoint, sources: Sequence[DeltaSource], start: int, stop: int, ws: Workspace
) -> NoReturn:
    """Name why ``target + Σ factor·v`` is not finite on ``[start, stop)``: a vector holding NaN or
    Inf (read again, checked: the source raises naming itself and the tensor), the target, or an
    overflow of finite values.

    Raises:
        NonFiniteError: always.
    """
    for c in o.contributions:
        hi = min(stop, c.limit)
        if hi > start:
            sources[c.source].read_delta_into(
                c.delta_name, start, ws.get("delta", np.float32, hi - start), ws
            )
    base = target.read_float32(o.target_name, start, stop)
    if not all_finite(base):
        raise NonFiniteError(
            f"{o.target_name}: the target {target.display} holds NaN or Inf; the checkpoint is damaged",
            tensor=o.target_name,
        )
    raise NonFiniteError(
        f"{o.name}: target + α·v overflows float32; use a smaller α (check the vector with rvec anatomy)",
        tensor=o.name,
    )


def _cast(raw: np.ndarray, src: DType, dst: DType, out: np.ndarray, ws: Workspace) -> np.ndarray:
    """Values of ``src`` → ``out``, of ``dst``, through float32 (NaN stays NaN)."""
    n = raw.size
    if dst == F32:
        return to_float32(raw, out)
    f32 = raw if src == F32 else to_float32(raw, ws.get("cast32", np.float32, n))
    return from_float32(f32, out)


def _target_files(target: Checkpoint) -> list[Path]:
    """The target's tokenizer, chat template and generation config files the output gets copies of."""
    return metadata_files(target.path, with_config=False)


def _copy_target_files(target: Checkpoint, folder: Path, *, dtype: DType | None, untie: bool) -> None:
    """Config, tokenizer, chat template, generation config: always the target's."""
    copy_metadata(target.path, folder)
    config = dict(target.config)
    if untie:
        config["tie_word_embeddings"] = False
        text = config.get("text_config")
        if isinstance(text, dict):
            config["text_config"] = {**text, "tie_word_embeddings": False}
    if dtype is not None:
        config["dtype"] = _DTYPE_NAMES[dtype]
        config.pop("torch_dtype", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def _provenance(
    job: ApplyPlan, survival: Survival, hashes: dict[str, str], files: list[str]
) -> dict[str, Any]:
    return {
        "kind": "rvec-model",
        "formula": "θ = θ_target + Σ αᵢ·vᵢ (float32, one cast to the output dtype)",
        "rvec_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "target": job.target.describe(hash_files=False),
        "vectors": [{**s.describe(), "alpha": a} for s, a in zip(job.sources, job.alphas)],
        "dtype": _DTYPE_NAMES.get(job.dtype, "target") if job.dtype is not None else "target",
        "selection": job.selection.describe(),
        "embeddings": job.embeddings or "apply",
        "untied_lm_head": job.untie,
        "policies": sorted({p for r in job.reports for p in r.policies}),
        "lineage": [vars(p) for r in job.reports for p in r.lineage],
        "delta_survival": survival.to_dict(),
        "files": {f: hashes[f] for f in files},
    }
