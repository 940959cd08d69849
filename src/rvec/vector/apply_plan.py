"""What ``rvec apply`` (and ``rvec check``) decide before a byte is written: the vector sources,
their pre-flight checks against the target (shapes, vocabulary, lineage), and the plan of every
output tensor with the vector contributions it receives."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rvec.checkpoint.dtypes import DType
from rvec.checkpoint.source import Checkpoint, resolve
from rvec.errors import IncompatibleError, InvalidArgumentError
from rvec.vector import family
from rvec.vector.artifact import DeltaSource, DonorPair, ReasoningVector, read_vector
from rvec.vector.compat import CheckReport, check_donors, check_target, is_tied, probe_names, probe_values
from rvec.vector.embeddings import EmbeddingPolicy, overlap_elements
from rvec.vector.masks import Selection

__all__ = [
    "ApplyPlan",
    "Contribution",
    "OutputTensor",
    "check_compatibility",
    "check_sources",
    "open_vector_source",
    "plan_apply",
    "plan_outputs",
    "vector_sources",
]

logger = logging.getLogger(__name__)


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


def open_vector_source(item: DeltaSource | str | Path) -> DeltaSource:
    """A vector folder path → :class:`ReasoningVector`; sources pass through."""
    return read_vector(item) if isinstance(item, (str, Path)) else item


def vector_sources(
    folders: Sequence[str | Path],
    *,
    sft: str | None = None,
    rl: str | None = None,
    verify: bool = True,
    allow_pickle: bool = False,
) -> list[DeltaSource]:
    """What ``rvec apply`` adds: vector folders (verified), then ``rl − sft`` computed on the fly.

    Raises:
        InvalidArgumentError: only one of ``sft`` and ``rl``.
        VectorIntegrityError: a vector fails verification.
    """
    sources: list[DeltaSource] = [read_vector(v, verify=verify) for v in folders]
    if sft or rl:
        if not (sft and rl):
            raise InvalidArgumentError("--sft and --rl go together")
        sources.append(
            DonorPair(sft=resolve(sft, allow_pickle=allow_pickle), rl=resolve(rl, allow_pickle=allow_pickle))
        )
    return sources


def _probe_of(source: DeltaSource) -> dict[str, np.ndarray]:
    if isinstance(source, ReasoningVector):
        return source.lineage_probe()
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
    lineage: bool = True,
) -> list[CheckReport]:
    """Run every pre-flight check and raise on the first incompatible source (listing all its problems)."""
    reports = []
    for source in sources:
        for pair in [p for p in (source, *getattr(source, "inputs", ())) if isinstance(p, DonorPair)]:
            donors = check_donors(pair.sft, pair.rl, lineage=True, lineage_required=lineage)
            if donors.problems:
                raise IncompatibleError(
                    f"donors are incompatible: {donors.problems[0]}", problems=donors.problems
                )
        fam = family.family_signature(source.config)
        report = check_target(
            vector_shapes=source.shapes,
            vector_family=fam,
            target=target,
            policy=embeddings,
            probe=_probe_of(source),
            lineage_required=lineage,
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
    num_layers = int(family.family_signature(target.config).get("num_hidden_layers") or 0)
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


@dataclass(frozen=True)
class ApplyPlan:
    """Everything ``apply`` decided before writing: the checked sources, the target, every output
    tensor with its contributions, and the policies in force."""

    sources: list[DeltaSource]
    target: Checkpoint
    alphas: list[float]
    dtype: DType | None
    selection: Selection
    embeddings: EmbeddingPolicy | None
    reports: list[CheckReport]
    outputs: list[OutputTensor]
    untie: bool


def plan_apply(
    vectors: Sequence[DeltaSource | str | Path],
    target: str | Path | Checkpoint,
    *,
    alphas: Sequence[float],
    dtype: DType | None,
    selection: Selection,
    embeddings: EmbeddingPolicy | None,
    lineage: bool,
    allow_pickle: bool,
) -> ApplyPlan:
    """Open and check every source against ``target`` and plan every output tensor (reads headers,
    configs and the lineage probe; no tensor data).

    Raises:
        InvalidArgumentError: no vector, no α or not one per vector, or a selection that matches nothing.
        IncompatibleError: as :func:`check_sources`.
    """
    sources = [open_vector_source(v) for v in vectors]
    if not sources:
        raise InvalidArgumentError("no vector given; pass a vector folder (rvec extract) or --sft/--rl")
    if not alphas:
        raise InvalidArgumentError("pass --alpha (one per vector), e.g. --alpha 1.0")
    if len(alphas) != len(sources):
        raise InvalidArgumentError(
            f"{len(sources)} vectors but {len(alphas)} --alpha values; give one α per vector, in order"
        )
    ckpt = target if isinstance(target, Checkpoint) else resolve(target, allow_pickle=allow_pickle)
    reports = check_sources(sources, ckpt, embeddings=embeddings, lineage=lineage)
    outputs, untie = plan_outputs(
        sources, ckpt, alphas=alphas, dtype=dtype, selection=selection, embeddings=embeddings
    )
    if not any(o.contributions for o in outputs):
        raise InvalidArgumentError(
            "the selection (--include/--exclude/--layers) matches no tensor of the vector; nothing would change"
        )
    return ApplyPlan(sources, ckpt, list(alphas), dtype, selection, embeddings, reports, outputs, untie)


def check_compatibility(
    *,
    sft: str | None = None,
    rl: str | None = None,
    vector: str | Path | None = None,
    target: str | None = None,
    embeddings: EmbeddingPolicy | None = None,
    lineage: bool = True,
) -> CheckReport:
    """``rvec check``: a vector against a target, or a donor pair (and optionally a target), from
    configs and headers (weights only for the lineage probe, when local).

    Returns:
        CheckReport: the verdict with every problem, policy, warning and lineage probe (an
        incompatible vector is a report, not an error).

    Raises:
        InvalidArgumentError: neither a vector with a target nor both donors.
    """
    from rvec.vector.compat import check

    if vector is not None:
        if sft or rl or not target:
            raise InvalidArgumentError("--vector needs --to and excludes --sft/--rl")
        try:
            return check_sources(
                [read_vector(vector)], resolve(target), embeddings=embeddings, lineage=lineage
            )[0]
        except IncompatibleError as err:
            return CheckReport(problems=err.problems)
    if not (sft and rl):
        raise InvalidArgumentError("pass --sft and --rl (and usually --to), or --vector VEC --to TARGET")
    to = resolve(target, weights=False) if target else None
    return check(
        resolve(sft, weights=False), resolve(rl, weights=False), to, policy=embeddings, lineage=lineage
    )
