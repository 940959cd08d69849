"""``rvec anatomy``: the structure of a reasoning vector, tensor by tensor.

How far v moves each tensor (‖v‖/‖θ‖), how many entries it moves at all (beyond float32 rounding
of the target), how many directions it uses (effective rank, 90%-energy rank) and whether those are
the target's own principal directions (overlap of the top-k singular subspaces, beside the value a
random subspace would have) — the questions follow-up work asks of every RL update: RL updates are
sparse yet nearly full-rank (Mukherjee et al. 2025, arXiv:2505.11711) and move off the weights'
principal directions where SFT moves along them (Zhu et al. 2025, "The Path Not Taken",
arXiv:2511.08567). With ``compare`` (say, the SFT delta) the cosine of the two vectors too. Every
figure is given per tensor and aggregated per layer, per module class (:func:`family.module_class`),
per layer and class, and overall (rules: :mod:`rvec.vector.anatomy_metrics`).

Streamed and torch-free like the rest of the vector engine: one tensor at a time, read in row
chunks of about a million elements; the SVD metrics come from Gram matrices of one matrix at a time
or from a factored tensor's own factors (:mod:`rvec.vector.subspace`). Without a target, SVD or
compare vector nothing but ``rvec.json`` is read.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from rvec.checkpoint.source import Checkpoint, resolve
from rvec.errors import IncompatibleError, InvalidArgumentError
from rvec.outputs import check_output_target, input_paths
from rvec.progress import ProgressCallback
from rvec.vector import family
from rvec.vector.anatomy_metrics import Anatomy
from rvec.vector.anatomy_report import write_anatomy
from rvec.vector.anatomy_tensor import Sources, TensorMeasurer
from rvec.vector.artifact import ReasoningVector, read_vector
from rvec.vector.compat import check_target, float_shapes
from rvec.vector.subspace import ENERGY_SHARE

__all__ = ["DEFAULT_TOP_K", "Anatomy", "anatomy", "measure_anatomy"]

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 16
SVD_METHOD = (
    "exact: eigendecomposition of float64 Gram matrices streamed over row chunks (dense, sparse); "
    "QR of both factors and an r×r SVD (factored)"
)


def anatomy(
    vector: str | Path,
    *,
    like: str | Path | None = None,
    compare: str | Path | None = None,
    top_k: int = DEFAULT_TOP_K,
    svd: bool = True,
    out: str | Path | None = None,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
    verify: bool = True,
    on_progress: ProgressCallback | None = None,
) -> Anatomy:
    """Measure a vector and, with ``out``, write the anatomy folder (``rvec anatomy``).

    Args:
        vector: the vector folder.
        like: a checkpoint of the vector's family (folder or hub id): θ for relative norms, moved
            fractions and subspace overlaps.
        compare: a second vector folder (e.g. the SFT delta): cosines.
        top_k: dimension of the compared principal subspaces.
        svd: compute the SVD metrics (effective ranks, overlaps); ``False`` is ``--no-svd``.
        out: folder to write (``anatomy.json``, ``anatomy.md``, heat maps; atomically). Checked
            before any tensor is read.
        overwrite: replace ``out`` if rvec wrote it.
        overwrite_foreign: replace ``out`` even if rvec did not write it.
        verify: check the vectors' shards against their recorded sha256 first.
        on_progress: ``(elements done, elements total)``.

    Returns:
        The :class:`Anatomy`.

    Raises:
        InvalidArgumentError: ``top_k`` < 1.
        IncompatibleError: ``like`` is not of the vector's family and shapes; ``compare`` shares no
            tensor of equal shape with the vector.
        VectorFormatError, VectorIntegrityError, SourceNotFoundError: an input is missing or damaged.
        OutputExistsError, ForeignOutputError, UnsafeOutputError: ``out`` may not be written.

    Example:
        >>> anatomy("vec/", like="Qwen/Qwen2.5-0.5B-Instruct", out="anatomy/")  # doctest: +SKIP
    """
    if out is not None:  # before any tensor is read: a refused -o must not cost the whole measurement
        named = [Path(p) for p in (vector, like, compare) if p is not None]
        check_output_target(Path(out), inputs=named, overwrite=overwrite, overwrite_foreign=overwrite_foreign)
    v = read_vector(vector, verify=verify)
    other = read_vector(compare, verify=verify) if compare is not None else None
    target = resolve(like) if like is not None else None
    result = measure_anatomy(v, like=target, compare=other, top_k=top_k, svd=svd, on_progress=on_progress)
    if out is not None:  # checked again against the resolved inputs (a hub id's snapshot folder)
        inputs = input_paths(*(x for x in (v, target, other) if x is not None))
        write_anatomy(
            result, Path(out), inputs=inputs, overwrite=overwrite, overwrite_foreign=overwrite_foreign
        )
    return result


def measure_anatomy(
    vector: ReasoningVector,
    *,
    like: Checkpoint | None = None,
    compare: ReasoningVector | None = None,
    top_k: int = DEFAULT_TOP_K,
    svd: bool = True,
    on_progress: ProgressCallback | None = None,
) -> Anatomy:
    """The figures of an opened vector; reads nothing but ``rvec.json`` when ``like`` and
    ``compare`` are ``None`` and ``svd`` is false.

    Args:
        vector (ReasoningVector): the vector (verified or not, as opened).
        like (Checkpoint | None): θ, a checkpoint of the vector's family.
        compare (ReasoningVector | None): a second vector for cosines.
        top_k (int, default 16): dimension of the compared singular subspaces.
        svd (bool, default True): compute effective ranks and overlaps.
        on_progress (ProgressCallback | None): ``(elements done, elements total)``.

    Returns:
        Anatomy: every tensor's figures; aggregates are computed from them on access.

    Raises:
        InvalidArgumentError: ``top_k`` < 1.
        IncompatibleError: ``like`` or ``compare`` does not fit the vector.
    """
    if top_k < 1:
        raise InvalidArgumentError(f"--top-k {top_k}: must be at least 1 (the subspace dimension compared)")
    names, warnings = _target_names(vector, like) if like is not None else ({}, [])
    shared = _shared(vector, compare) if compare is not None else frozenset()
    measurer = TensorMeasurer(
        Sources(vector, top_k, svd, target=like, target_names=names, compare=compare, shared=shared)
    )
    total, done, records = sum(math.prod(s) for s in vector.shapes.values()), 0, []
    for name in vector.shapes:

        def tick(n: int, base: int = done) -> None:
            if on_progress is not None:
                on_progress(base + n, total)

        records.append(measurer.measure(name, tick))
        done += math.prod(vector.shapes[name])
    for w in warnings:
        logger.warning(w)
    return Anatomy(
        vector=vector.describe(),
        settings={
            "top_k": top_k,
            "svd": svd,
            "energy_share": ENERGY_SHARE,
            "rel_norm_reference": "like" if like is not None else "sft (rvec.json)",
            "svd_method": SVD_METHOD,
        },
        tensors=records,
        like=like.describe(hash_files=False) if like is not None else None,
        compare=compare.describe() if compare is not None else None,
        warnings=warnings,
        not_compared=_not_compared(vector, compare, shared) if compare is not None else {},
    )


def _target_names(vector: ReasoningVector, target: Checkpoint) -> tuple[dict[str, str], list[str]]:
    """Per vector tensor, the target tensor holding its θ; and the warnings of the target check.

    Raises:
        IncompatibleError: another architecture, a vector tensor the target lacks, another shape.
    """
    report = check_target(
        vector_shapes=vector.shapes,
        vector_family=vector.family,
        target=target,
        policy=None,
        probe=vector.lineage_probe(),
        lineage_required=False,  # an unrelated θ is still a θ: measured, with a warning
    )
    if report.problems:
        raise IncompatibleError(
            f"--like {target.display} does not fit {vector.path}: {report.problems[0]}; "
            "pass a checkpoint of the vector's family",
            problems=report.problems,
        )
    held = set(float_shapes(target))
    embed = family.embed_name(held)
    names, warnings = {}, list(report.warnings)
    for name in vector.shapes:
        # An untied vector against a tied target: the target's lm_head is its embedding.
        names[name] = name if name in held else (embed or name)
        if names[name] != name:
            warnings.append(f"{name}: the target ties it to {embed}; θ for it is {embed}")
    return names, warnings


def _shared(vector: ReasoningVector, compare: ReasoningVector) -> frozenset[str]:
    shared = frozenset(n for n, s in vector.shapes.items() if compare.shapes.get(n) == s)
    if not shared:
        raise IncompatibleError(
            f"--compare {compare.path}: shares no tensor of equal shape with {vector.path}; "
            "pass a vector of the same family"
        )
    return shared


def _not_compared(
    vector: ReasoningVector, compare: ReasoningVector, shared: frozenset[str]
) -> dict[str, list[str]]:
    return {
        "only_in_vector": sorted(set(vector.shapes) - shared),
        "only_in_compare": sorted(set(compare.shapes) - shared),
    }
