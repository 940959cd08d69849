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
import shutil
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

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
    parse_float_dtype,
    same_width_uint,
    to_float32,
)
from rvec.checkpoint.pipeline import BufferPool, ThreadWorkspaces, default_workers, ordered_map
from rvec.checkpoint.reader import Workspace, blocks
from rvec.checkpoint.source import METADATA_FILES, Checkpoint, resolve
from rvec.checkpoint.writer import (
    DEFAULT_MAX_SHARD_BYTES,
    WRITE_QUEUE_DEPTH,
    PlannedTensor,
    ShardedWriter,
    metadata_allowance,
)
from rvec.errors import IncompatibleError, InvalidArgumentError, NonFiniteError
from rvec.outputs import input_paths
from rvec.progress import ProgressCallback
from rvec.vector import family
from rvec.vector.artifact import LINEAGE_FILE, DeltaSource, DonorPair, ReasoningVector, read_vector
from rvec.vector.cards import model_card
from rvec.vector.compat import CheckReport, check_donors, check_target, is_tied, probe_names, probe_values
from rvec.vector.embeddings import EmbeddingPolicy, overlap_elements
from rvec.vector.masks import Selection

logger = logging.getLogger(__name__)

# Elements per block handed to a worker thread. Measured on the 0.5B bench (2 cores, 2 workers):
# 64K-element blocks took 2.8 s and 2M-element blocks 2.8 s, against 1.7 s for 256K-512K. Smaller
# blocks pay thread hand-offs and GIL switches per block; larger ones fall out of the CPU cache
# across the dozen passes each block gets.
APPLY_BLOCK_ELEMENTS = 1 << 18

_DTYPE_NAMES = {dtype: name for name, dtype in FLOAT_NAMES.items()}


def parse_dtype(text: str | None) -> DType | None:
    """``--dtype``: ``None`` keeps the target's dtypes; else :func:`~rvec.checkpoint.dtypes.parse_float_dtype`."""
    return None if text is None else parse_float_dtype(text)


@dataclass(frozen=True)
class Contribution:
    """One vector's share of one output tensor: ``factor·v[delta_name][:limit]``."""

    source: int
    delta_name: str
    factor: float
    limit: int  # flat elements of the output it covers (shared rows under the overlap policy)


@dataclass(frozen=True)
class OutputTensor:
    name: str
    target_name: str  # tensor of the target it starts from (the embedding, for an untied lm_head)
    dtype: DType
    shape: tuple[int, ...]
    contributions: tuple[Contribution, ...]


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


def open_vector_source(item: DeltaSource | str | Path) -> DeltaSource:
    """A vector folder path → :class:`ReasoningVector`; sources pass through."""
    return read_vector(item) if isinstance(item, (str, Path)) else item


def _probe_of(source: DeltaSource) -> dict[str, np.ndarray]:
    if isinstance(source, ReasoningVector):
        file = source.path / LINEAGE_FILE
        if not file.is_file():
            return {}
        from safetensors.numpy import load_file

        return load_file(str(file))
    if isinstance(source, DonorPair):
        return probe_values(source.sft, probe_names(source.shapes))
    for part in getattr(source, "inputs", ()):  # a merge: the probe of its first input that has one
        probe = _probe_of(part)
        if probe:
            return probe
    return {}


def check_sources(
    sources: Sequence[DeltaSource],
    target: Checkpoint,
    *,
    embeddings: EmbeddingPolicy | None,
    skip_lineage: bool = False,
) -> list[CheckReport]:
    """Run every pre-flight check and raise on the first incompatible source (listing all its problems)."""
    reports = []
    for source in sources:
        for pair in [p for p in (source, *getattr(source, "inputs", ())) if isinstance(p, DonorPair)]:
            donors = check_donors(pair.sft, pair.rl, lineage=True, lineage_required=not skip_lineage)
            if donors.problems:
                raise IncompatibleError(
                    f"donors are incompatible: {donors.problems[0]}", problems=donors.problems
                )
        fam = family.family_fingerprint(source.config)
        report = check_target(
            vector_shapes=source.shapes,
            vector_family=fam,
            target=target,
            policy=embeddings,
            probe=_probe_of(source),
            lineage_required=not skip_lineage,
        )
        if report.problems:
            raise IncompatibleError(
                f"{source.label} cannot be applied to {target.display}: {report.problems[0]}",
                problems=report.problems,
            )
        for w in report.warnings:
            logger.warning(w)
        reports.append(report)
    return reports


def plan_outputs(
    sources: Sequence[DeltaSource],
    target: Checkpoint,
    *,
    alphas: Sequence[float],
    dtype: DType | None,
    selection: Selection,
    embeddings: EmbeddingPolicy | None,
) -> tuple[list[OutputTensor], bool]:
    """Every output tensor with the vector contributions it receives; and whether the output unties lm_head."""
    target_tied = is_tied(target.config)
    num_layers = int(family.family_fingerprint(target.config).get("num_hidden_layers") or 0)
    names = [t.name for t in target.index]
    embed = family.embed_name(names)
    untie = target_tied and any(family.lm_head_name(set(s.shapes)) and not is_tied(s.config) for s in sources)
    outputs: list[tuple[str, str]] = [(n, n) for n in names]
    if untie and embed:
        outputs.append(("lm_head.weight", embed))
    plan = []
    for out_name, src_name in outputs:
        info = target.index[src_name]
        contributions: list[Contribution] = []
        if info.dtype.is_floating_point:
            for i, (source, alpha) in enumerate(zip(sources, alphas)):
                c = _contribution(i, source, alpha, out_name, info.shape, selection, num_layers, embeddings)
                if c is not None:
                    contributions.append(c)
        out_dtype = (dtype or info.dtype) if info.dtype.is_floating_point else info.dtype
        plan.append(OutputTensor(out_name, src_name, out_dtype, info.shape, tuple(contributions)))
    return plan, bool(untie)


def _contribution(
    index: int,
    source: DeltaSource,
    alpha: float,
    name: str,
    shape: tuple[int, ...],
    selection: Selection,
    num_layers: int,
    embeddings: EmbeddingPolicy | None,
) -> Contribution | None:
    shapes = source.shapes
    delta_name = name
    if name not in shapes and family.is_embedding(name) and is_tied(source.config):
        delta_name = family.embed_name(set(shapes)) or name  # tied donors: lm_head's delta is embed's
    if delta_name not in shapes:
        return None
    factor = alpha * selection.factor(name, num_layers)
    if factor == 0.0:
        return None
    numel = 1
    for d in shape:
        numel *= d
    if family.is_embedding(name):
        if embeddings == "skip":
            return None
        if shapes[delta_name] != shape:
            return Contribution(index, delta_name, factor, overlap_elements(shapes[delta_name], shape))
    return Contribution(index, delta_name, factor, numel)


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
    skip_lineage: bool = False,
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
        skip_lineage: apply even if the target looks unrelated to the donors.
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
    sources = [open_vector_source(v) for v in vectors]
    if not sources:
        raise InvalidArgumentError("no vector given; pass a vector folder (rvec extract) or --sft/--rl")
    if len(alphas) != len(sources):
        raise InvalidArgumentError(
            f"{len(sources)} vectors but {len(alphas)} --alpha values; give one α per vector, in order"
        )
    selection = selection or Selection()
    dtype = coerce(dtype) if dtype is not None else None
    ckpt = target if isinstance(target, Checkpoint) else resolve(target, allow_pickle=allow_pickle)
    reports = check_sources(sources, ckpt, embeddings=embeddings, skip_lineage=skip_lineage)
    plan, untie = plan_outputs(
        sources, ckpt, alphas=alphas, dtype=dtype, selection=selection, embeddings=embeddings
    )
    if not any(o.contributions for o in plan):
        raise InvalidArgumentError(
            "the selection (--include/--exclude/--layers) matches no tensor of the vector; nothing would change"
        )
    planned = [PlannedTensor(o.name, o.dtype, o.shape) for o in plan]
    total = sum(p.nbytes for p in planned)
    copied = sum(f.stat().st_size for f in _target_files(ckpt))
    survival = Survival()
    with atomic_dir(
        Path(out),
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        inputs=input_paths(ckpt, *sources),
        needed_bytes=total + copied + metadata_allowance(len(planned)),
    ) as tmp:
        writer = ShardedWriter(tmp, planned, prefix="model", max_shard_bytes=max_shard_bytes)
        try:
            _stream_outputs(
                plan,
                ckpt,
                sources,
                writer,
                survival,
                block_elements,
                workers or default_workers(),
                on_progress,
                total,
            )
            files = writer.finish()
        except BaseException:
            writer.abort()
            raise
        provenance = _provenance(
            ckpt,
            sources,
            alphas,
            dtype,
            selection,
            embeddings,
            untie,
            survival,
            reports,
            writer.sha256,
            files,
        )
        _copy_target_files(ckpt, tmp, dtype=dtype, untie=untie)
        (tmp / "rvec.json").write_text(json.dumps(provenance, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(provenance))
    logger.info(
        "wrote %s; %.4f%% of non-zero α·v entries erased by rounding", out, 100 * survival.erased_fraction
    )
    return ApplyResult(path=Path(out), survival=survival, checks=reports, provenance=provenance)


def _stream_outputs(
    plan: Sequence[OutputTensor],
    target: Checkpoint,
    sources: Sequence[DeltaSource],
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
    jobs = [(o, start, stop) for o in plan for start, stop in blocks(_numel(o.shape), block_elements)]
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


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


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
        delta = sources[c.source].read_delta_into(
            c.delta_name, start, ws.get("delta", np.float32, hi - start), ws
        )
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
        raise NonFiniteError(
            f"{o.name}: target + α·v is NaN or Inf; check the target and vector with rvec inspect/stats",
            tensor=o.name,
        )
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


def _cast(raw: np.ndarray, src: DType, dst: DType, out: np.ndarray, ws: Workspace) -> np.ndarray:
    """Values of ``src`` → ``out``, of ``dst``, through float32 (NaN stays NaN)."""
    n = raw.size
    if dst == F32:
        return to_float32(raw, out)
    f32 = raw if src == F32 else to_float32(raw, ws.get("cast32", np.float32, n))
    return from_float32(f32, out)


def _target_files(target: Checkpoint) -> list[Path]:
    """The target's tokenizer, chat template and generation config files the output gets copies of."""
    return [target.path / n for n in METADATA_FILES if n != "config.json" and (target.path / n).is_file()]


def _copy_target_files(target: Checkpoint, folder: Path, *, dtype: DType | None, untie: bool) -> None:
    """Config, tokenizer, chat template, generation config: always the target's."""
    for src in _target_files(target):
        shutil.copyfile(src, folder / src.name)
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
    target: Checkpoint,
    sources: Sequence[DeltaSource],
    alphas: Sequence[float],
    dtype: DType | None,
    selection: Selection,
    embeddings: EmbeddingPolicy | None,
    untie: bool,
    survival: Survival,
    reports: list[CheckReport],
    hashes: dict[str, str],
    files: list[str],
) -> dict[str, Any]:
    return {
        "kind": "rvec-model",
        "formula": "θ = θ_target + Σ αᵢ·vᵢ (float32, one cast to the output dtype)",
        "rvec_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "target": target.describe(hash_files=False),
        "vectors": [{**s.describe(), "alpha": a} for s, a in zip(sources, alphas)],
        "dtype": _DTYPE_NAMES.get(dtype, "target") if dtype is not None else "target",
        "selection": selection.describe(),
        "embeddings": embeddings or "apply",
        "untied_lm_head": untie,
        "policies": sorted({p for r in reports for p in r.policies}),
        "lineage": [vars(p) for r in reports for p in r.lineage],
        "delta_survival": survival.to_dict(),
        "files": {f: hashes[f] for f in files},
    }
