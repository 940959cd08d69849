"""``rvec compress --method dare|magnitude|breadcrumbs``: sparsify one vector the way a merge method
sparsifies each of its inputs (:mod:`rvec.vector.methods.sparsify`), stored sparse, with its error.

The same counts, ties, seeded DARE mask and L1 rescale as ``rvec merge``, so ``compress --method
dare --density D --seed S`` of a vector equals ``merge --method dare_linear`` of that vector alone
(weight 1). Each tensor's statistics take streamed passes; its kept entries are gathered in memory
(12 bytes each) because a sparse tensor's indices precede its values on disk. The recorded error of
a tensor is ``‖v − v̂‖/‖v‖`` (with rescale, v̂ holds the rescaled values), overall
``sqrt(Σ‖v_t − v̂_t‖²/Σ‖v_t‖²)``, both in float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rvec.checkpoint.reader import Workspace, blocks
from rvec.defaults import DEFAULT_SEED
from rvec.errors import InvalidArgumentError
from rvec.progress import ProgressCallback
from rvec.vector.artifact import ReasoningVector, read_vector
from rvec.vector.compress import CompressResult, compress
from rvec.vector.methods.sparsify import Pruning, Sparsification, TensorBlocks, dare_key, prepare_pruning
from rvec.vector.writing import Encoded, Sparse, TensorPlan, write_vector

# --method name -> (mergekit's sparsification, mergekit's default rescale for the methods using it)
PRUNE_METHODS: dict[str, tuple[Sparsification, bool]] = {
    "magnitude": ("magnitude", False),  # ties
    "dare": ("random", True),  # dare_linear, dare_ties
    "breadcrumbs": ("magnitude_outliers", False),
}
_BLOCK = 1 << 18  # as merge.STAT_BLOCK_ELEMENTS: a small tensor still spreads over the threads


def prune(
    vector: ReasoningVector | str | Path,
    out: str | Path,
    *,
    method: str,
    density: float,
    gamma: float | None = None,
    seed: int = DEFAULT_SEED,
    rescale: bool | None = None,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
    verify: bool = True,
    on_progress: ProgressCallback | None = None,
) -> CompressResult:
    """Write ``out``: ``vector`` with each tensor sparsified by ``method`` (mergekit's definitions).

    Args:
        vector: the vector folder (or an opened :class:`ReasoningVector`).
        out: the sparse vector folder to create (atomically).
        method: ``magnitude`` (largest |v|), ``dare`` (random, seeded) or ``breadcrumbs``
            (drop outliers and smallest).
        density: fraction of each tensor's entries kept, in [0, 1] (counts: :mod:`~rvec.vector.methods.sparsify`).
        gamma: breadcrumbs' outlier fraction (default 0.01); an error for the other methods.
        seed: DARE's mask seed (vector index 0 of a merge).
        rescale: scale the kept entries to the tensor's L1 norm (default: mergekit's, true for dare).
        overwrite: replace ``out`` if it exists and rvec wrote it.
        overwrite_foreign: replace ``out`` even if rvec did not write it.
        verify: check ``vector``'s shards first.
        on_progress: ``(elements done, elements total)``.

    Returns:
        :class:`~rvec.vector.compress.CompressResult` (``method`` is the name given).

    Raises:
        InvalidArgumentError: an unknown method, a density outside [0, 1], gamma where it means nothing.
        VectorIntegrityError: the input fails verification.
    """
    if method not in PRUNE_METHODS:
        raise InvalidArgumentError(f"--method {method!r}: expected one of {', '.join(PRUNE_METHODS)}")
    kind, default_rescale = PRUNE_METHODS[method]
    if gamma is not None and kind != "magnitude_outliers":
        raise InvalidArgumentError(f"--gamma applies to --method breadcrumbs only, not {method}")
    for name, value in (("--density", density), ("--gamma", gamma)):
        if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
            raise InvalidArgumentError(f"{name} {value:g}: outside [0, 1]; pass a fraction, e.g. 0.1")
    v = read_vector(vector, verify=verify) if isinstance(vector, (str, Path)) else vector
    rescale = default_rescale if rescale is None else rescale
    gamma = 0.01 if gamma is None and kind == "magnitude_outliers" else gamma
    ws = Workspace(_BLOCK)
    prunings = {
        name: prepare_pruning(
            kind,
            _passes(v, name, math.prod(shape), ws),
            math.prod(shape),
            density=density,
            gamma=gamma or 0.0,
            rescale=rescale,
            key=dare_key(seed, 0, name),
            ws=ws,
        )
        for name, shape in v.shapes.items()
    }
    plan = [
        TensorPlan(n, s, "sparse", kept=math.prod(s) if prunings[n] is None else prunings[n].kept)
        for n, s in v.shapes.items()
    ]
    settings: dict[str, Any] = {"density": density, "gamma": gamma, "rescale": rescale}
    settings = {k: x for k, x in settings.items() if x is not None} | (
        {"seed": seed} if kind == "random" else {}
    )
    return _write_pruned(
        v,
        out,
        plan,
        prunings,
        method=method,
        settings=settings,
        ws=ws,
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        on_progress=on_progress,
    )


def shrink(
    vector: ReasoningVector | str | Path,
    out: str | Path,
    *,
    rank: int | None = None,
    density: float | None = None,
    method: str | None = None,
    gamma: float | None = None,
    seed: int = DEFAULT_SEED,
    rescale: bool | None = None,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
    verify: bool = True,
    on_progress: ProgressCallback | None = None,
) -> CompressResult:
    """``rvec compress``: :func:`rvec.vector.compress.compress` by ``rank`` or ``density``, or, with
    ``method``, :func:`prune` at ``density``.

    Raises:
        InvalidArgumentError: ``gamma``/``rescale`` without ``method``; ``method`` with ``rank`` or
            without ``density``; and every error of the function called.
    """
    common = {
        "overwrite": overwrite,
        "overwrite_foreign": overwrite_foreign,
        "verify": verify,
        "on_progress": on_progress,
    }
    if method is None:
        if gamma is not None or rescale is not None:
            raise InvalidArgumentError("--gamma and --rescale go with --method")
        return compress(vector, out, rank=rank, density=density, **common)
    if rank is not None or density is None:
        raise InvalidArgumentError(
            "--method takes --density D (not --rank); e.g. --method dare --density 0.1"
        )
    return prune(
        vector, out, method=method, density=density, gamma=gamma, seed=seed, rescale=rescale, **common
    )


def _write_pruned(
    v: ReasoningVector,
    out: str | Path,
    plan: list[TensorPlan],
    prunings: Mapping[str, Pruning | None],
    *,
    method: str,
    settings: Mapping[str, Any],
    ws: Workspace,
    overwrite: bool,
    overwrite_foreign: bool,
    on_progress: ProgressCallback | None,
) -> CompressResult:
    """Write the sparsified tensors of ``plan``, recording each one's error and the overall one."""
    density = float(settings["density"])
    per_tensor: dict[str, dict[str, Any]] = {}
    total = sum(math.prod(s) for s in v.shapes.values())

    def produce() -> Iterator[tuple[str, Encoded, Mapping[str, Any]]]:
        done = 0
        for p in plan:
            encoded, norm, dropped = _sparsify(v, p, prunings[p.name], ws)
            error = dropped / norm if norm > 0 else 0.0
            per_tensor[p.name] = {"relative_error": error, "source_norm": norm, "dropped_norm": dropped}
            done += math.prod(p.shape)
            if on_progress:
                on_progress(4 * done, 4 * total)  # float32 bytes, as every vector command counts
            yield p.name, encoded, {"relative_error": error, "source_norm": norm}

    def summarise(records: Mapping[str, Any]) -> dict[str, Any]:
        src = sum(t["source_norm"] ** 2 for t in per_tensor.values())
        drop = sum(t["dropped_norm"] ** 2 for t in per_tensor.values())
        kept = sum(p.kept or 0 for p in plan)
        return {
            "compression": {
                "method": method,
                **settings,
                "kept_fraction": kept / total if total else 1.0,
                "relative_error": math.sqrt(drop / src) if src > 0 else 0.0,
                "from": v.describe(),
            }
        }

    written = write_vector(
        out,
        plan,
        produce(),
        manifest={
            "formula": f"{v.manifest.get('formula', 'v')}; compressed: {method} density {density:g} per tensor",
            "sources": v.manifest.get("sources"),
            "config": v.config,
            "check": v.manifest.get("check"),
            "skipped_non_float": v.manifest.get("skipped_non_float", []),
        },
        summarise=summarise,
        lineage=v,
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        inputs=[v.path],
    )
    summary = written.manifest["compression"]
    return CompressResult(
        vector=written,
        method=method,
        setting=density,
        relative_error=summary["relative_error"],
        per_tensor={n: {**written.manifest["tensors"][n], **t} for n, t in per_tensor.items()},
        bytes_before=sum(i.nbytes for i in v.index),
        bytes_after=sum(i.nbytes for i in written.index),
        kept_fraction=summary["kept_fraction"],
        settings=settings,
    )


def _passes(v: ReasoningVector, name: str, numel: int, ws: Workspace) -> TensorBlocks:
    def read(start: int, stop: int, workspace: Workspace) -> np.ndarray:
        return v.read_delta_into(
            name, start, workspace.get("prune:stat", np.float32, stop - start), workspace
        )

    return TensorBlocks(numel, _BLOCK, read, ws)


def _sparsify(
    v: ReasoningVector, plan: TensorPlan, pruning: Pruning | None, ws: Workspace
) -> tuple[Sparse, float, float]:
    """(the kept entries, ‖v_t‖, ‖v_t − v̂_t‖) of one tensor, streamed block by block."""
    numel = math.prod(plan.shape)
    indices, values = [], []
    norm_sq = dropped_sq = 0.0
    for start, stop in blocks(numel, _BLOCK):
        if stop == start:
            continue
        block = v.read_delta_into(plan.name, start, ws.get("prune:block", np.float32, stop - start), ws)
        wide = block.astype(np.float64)
        norm_sq += float(np.dot(wide, wide))
        if pruning is None:
            kept_idx = np.arange(block.size, dtype=np.int64)
            new = block.copy()
        else:
            mask = pruning.keep_mask(block, start, ws)
            kept_idx = np.flatnonzero(mask)
            new = pruning.apply(block, start, ws, mask)  # in place: dropped → 0, kept × scale
        diff = wide - new.astype(np.float64)
        dropped_sq += float(np.dot(diff, diff))
        indices.append(kept_idx + start)
        values.append(new[kept_idx].copy())
    idx = np.concatenate(indices) if indices else np.empty(0, np.int64)
    val = np.concatenate(values) if values else np.empty(0, np.float32)
    return Sparse(idx.astype(np.int64), val), math.sqrt(norm_sq), math.sqrt(dropped_sq)
