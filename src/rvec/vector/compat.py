"""Pre-flight compatibility and lineage checks: can these checkpoints be combined, and are they one
family? Everything but the lineage probe works from ``config.json`` and safetensors headers.

Lineage thresholds (cosine similarity of the first ``PROBE_ELEMENTS`` elements of up to three
weight matrices, target vs SFT): fine-tunes of one base score above 0.95 (full fine-tunes of 1–7B
models typically > 0.99; GRPO vs its SFT start > 0.999); models trained from different
initialisations score near 0. Between ``LINEAGE_RELATED`` and ``LINEAGE_SAME`` is a distant relative:
allowed with a warning. Below ``LINEAGE_RELATED`` the checkpoints are unrelated and combining them is
refused unless the caller skips the lineage check.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rvec.checkpoint.dtypes import dot
from rvec.checkpoint.source import Checkpoint
from rvec.vector import family
from rvec.vector.embeddings import EmbeddingPolicy

logger = logging.getLogger(__name__)

LINEAGE_SAME = 0.95
LINEAGE_RELATED = 0.5
PROBE_ELEMENTS = 65536
PROBE_TENSORS = 3

Verdict = Literal["compatible", "compatible-with-policy", "incompatible"]
_STRICT_KEYS = [k for k in family.FINGERPRINT_KEYS if k not in ("vocab_size", "tie_word_embeddings")]


@dataclass
class LineageProbe:
    """Similarity of one tensor between two checkpoints."""

    pair: str
    tensor: str
    cosine: float
    rel_distance: float


@dataclass
class CheckReport:
    """The verdict of :func:`check`, with every reason behind it."""

    problems: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lineage: list[LineageProbe] = field(default_factory=list)
    fingerprints: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        if self.problems:
            return "incompatible"
        return "compatible-with-policy" if self.policies else "compatible"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "problems": self.problems,
            "policies": self.policies,
            "warnings": self.warnings,
            "lineage": [vars(p) for p in self.lineage],
            "fingerprints": self.fingerprints,
        }


def compare_configs(
    report: CheckReport, a_name: str, a: dict[str, Any], b_name: str, b: dict[str, Any]
) -> None:
    """Record every architecture field on which two fingerprints differ (vocab and tying excepted)."""
    for key in _STRICT_KEYS:
        if a.get(key) != b.get(key):
            report.problems.append(f"{key}: {a_name} has {a.get(key)!r}, {b_name} has {b.get(key)!r}")


def compare_donor_tensors(
    report: CheckReport, sft: dict[str, tuple[int, ...]], rl: dict[str, tuple[int, ...]]
) -> None:
    """SFT and RL must hold exactly the same tensors with the same shapes."""
    only_sft, only_rl = sorted(set(sft) - set(rl)), sorted(set(rl) - set(sft))
    if only_sft:
        report.problems.append(f"missing in RL donor: {_names(only_sft)}")
    if only_rl:
        report.problems.append(f"missing in SFT donor: {_names(only_rl)}")
    for name in sorted(set(sft) & set(rl)):
        if sft[name] != rl[name]:
            report.problems.append(
                f"{name}: shape {sft[name]} in SFT ≠ {rl[name]} in RL; the donors are not one model"
            )


def compare_target_tensors(
    report: CheckReport,
    vector: dict[str, tuple[int, ...]],
    target: dict[str, tuple[int, ...]],
    *,
    vector_tied: bool,
    target_tied: bool,
    policy: EmbeddingPolicy | None,
) -> None:
    """Vector tensors must exist in the target with equal shapes, except as an embedding policy allows."""
    embed = family.embed_name(set(vector) | set(target))
    head_v, head_t = family.lm_head_name(set(vector)), family.lm_head_name(set(target))
    missing = sorted(n for n in vector if n not in target and not (n == head_v and target_tied))
    extra = sorted(n for n in target if n not in vector and not (n == head_t and vector_tied))
    if missing:
        report.problems.append(f"tensors of the vector missing in the target: {_names(missing)}")
    if extra:
        report.problems.append(f"tensors of the target missing in the vector: {_names(extra)}")
    if head_v and target_tied and not vector_tied:
        report.policies.append(
            f"untie: the donors have a separate {head_v} but the target ties it to {embed}; the output gets its own lm_head "
            "(target embedding + α·v) and tie_word_embeddings=false"
        )
    if vector_tied and head_t and not target_tied:
        report.policies.append(
            f"tied delta: the donors tie lm_head to {embed}; its delta is applied to both {embed} and {head_t} of the target"
        )
    mismatched: list[str] = []
    for name in sorted(set(vector) & set(target)):
        if vector[name] == target[name]:
            continue
        if family.is_embedding(name) and len(vector[name]) == 2 and vector[name][1:] == target[name][1:]:
            mismatched.append(name)
            continue
        report.problems.append(f"{name}: shape {vector[name]} in the vector ≠ {target[name]} in the target")
    if mismatched:
        rows = f"{vector[mismatched[0]][0]} vs {target[mismatched[0]][0]} rows"
        if policy in (None, "apply"):
            report.problems.append(
                f"{mismatched[0]}: vocabulary differs ({rows}); pass --embeddings overlap (apply to the common rows) or --embeddings skip"
            )
        else:
            report.policies.append(
                f"embeddings {policy}: vocabulary differs ({rows}) in {', '.join(mismatched)}"
            )
    elif policy == "skip":
        report.policies.append("embeddings skip: embedding and lm_head deltas are not applied")


def lineage_probe(pair: str, a: Checkpoint, b: Checkpoint, names: list[str]) -> list[LineageProbe]:
    """Cosine and relative distance ``‖b − a‖/‖a‖`` on the first elements of a few tensors."""
    probes = []
    for name in names:
        n = min(PROBE_ELEMENTS, a.index[name].numel, b.index[name].numel)
        x = a.read_float32(name, 0, n).astype(np.float64)
        y = b.read_float32(name, 0, n).astype(np.float64)
        probes.append(_similarity(pair, name, x, y))
    return probes


def _similarity(pair: str, name: str, x: np.ndarray, y: np.ndarray) -> LineageProbe:
    nx, ny = math.sqrt(dot(x, x)), math.sqrt(dot(y, y))
    cosine = dot(x, y) / (nx * ny) if nx > 0 and ny > 0 else (1.0 if nx == ny else 0.0)
    diff = y - x
    rel = math.sqrt(dot(diff, diff)) / nx if nx > 0 else float("inf")
    return LineageProbe(pair=pair, tensor=name, cosine=cosine, rel_distance=rel)


def probe_values(ckpt: Checkpoint, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The first ``PROBE_ELEMENTS`` values of each named tensor, as float32: what lineage checks compare."""
    return {n: ckpt.read_float32(n, 0, min(PROBE_ELEMENTS, ckpt.index[n].numel)) for n in names}


def probe_names(shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Up to three 2-D non-embedding weights spread over depth (first, middle, last block)."""
    matrices = [n for n, s in shapes.items() if len(s) == 2 and not family.is_embedding(n)]
    if len(matrices) <= PROBE_TENSORS:
        return matrices
    picks = [0, len(matrices) // 2, len(matrices) - 1]
    return [matrices[i] for i in picks]


def judge_lineage(report: CheckReport, probes: list[LineageProbe], *, required: bool = True) -> None:
    """Turn probe similarities into warnings or problems by the module thresholds."""
    report.lineage.extend(probes)
    by_pair: dict[str, list[LineageProbe]] = {}
    for p in probes:
        by_pair.setdefault(p.pair, []).append(p)
    for pair, items in by_pair.items():
        worst = min(items, key=lambda p: p.cosine)
        if worst.cosine < LINEAGE_RELATED:
            message = (
                f"lineage: {pair} look unrelated (cosine {worst.cosine:.3f} on {worst.tensor}, threshold {LINEAGE_RELATED}); "
                "they do not share an initialisation — pass --no-lineage to combine them anyway"
            )
            (report.problems if required else report.warnings).append(message)
        elif worst.cosine < LINEAGE_SAME:
            report.warnings.append(
                f"lineage: {pair} are distant relatives (cosine {worst.cosine:.3f} on {worst.tensor} < {LINEAGE_SAME})"
            )


def _names(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def is_tied(config: dict[str, Any]) -> bool:
    return bool(family.family_signature(config)["tie_word_embeddings"])


def float_shapes(ckpt: Checkpoint) -> dict[str, tuple[int, ...]]:
    return {t.name: t.shape for t in ckpt.index if t.dtype.is_floating_point}


def check_donors(
    sft: Checkpoint, rl: Checkpoint, *, lineage: bool = True, lineage_required: bool = True
) -> CheckReport:
    """Can ``v = RL − SFT`` be formed? Same architecture, same tensors and shapes, one lineage."""
    report = CheckReport()
    fp_sft, fp_rl = family.family_signature(sft.config), family.family_signature(rl.config)
    report.fingerprints = {"sft": fp_sft, "rl": fp_rl}
    compare_configs(report, "SFT", fp_sft, "RL", fp_rl)
    for key in ("vocab_size", "tie_word_embeddings"):
        if fp_sft[key] != fp_rl[key]:
            report.problems.append(
                f"{key}: SFT has {fp_sft[key]!r}, RL has {fp_rl[key]!r}; the donors must be one model"
            )
    shapes_sft, shapes_rl = float_shapes(sft), float_shapes(rl)
    compare_donor_tensors(report, shapes_sft, shapes_rl)
    if lineage and not report.problems:
        if sft.has_local_weights and rl.has_local_weights:
            judge_lineage(
                report,
                lineage_probe("RL vs SFT", sft, rl, probe_names(shapes_sft)),
                required=lineage_required,
            )
        else:
            report.warnings.append(
                "lineage: donor weights are not downloaded; the lineage test runs in extract/apply"
            )
    return report


def check_target(
    *,
    vector_shapes: dict[str, tuple[int, ...]],
    vector_family: dict[str, Any],
    target: Checkpoint,
    policy: EmbeddingPolicy | None,
    probe: dict[str, np.ndarray] | None,
    lineage_required: bool = True,
    label: str = "vector",
) -> CheckReport:
    """Can ``v`` be added to ``target``? Architecture, tensor names and shapes, vocabulary, lineage.

    Args:
        probe: first elements of the SFT's probe tensors (the vector's ``lineage.safetensors``, or
            read from the SFT checkpoint); ``None`` skips the lineage test.
    """
    report = CheckReport()
    fp_target = family.family_signature(target.config)
    report.fingerprints = {label: vector_family, "target": fp_target}
    compare_configs(report, label, vector_family, "target", fp_target)
    compare_target_tensors(
        report,
        vector_shapes,
        float_shapes(target),
        vector_tied=bool(vector_family.get("tie_word_embeddings")),
        target_tied=bool(fp_target["tie_word_embeddings"]),
        policy=policy,
    )
    if probe and not report.problems:
        probes = []
        for name, sft_values in probe.items():
            n = min(sft_values.size, target.index[name].numel)
            x = sft_values[:n].astype(np.float64)
            y = target.read_float32(name, 0, n).astype(np.float64)
            probes.append(_similarity("target vs SFT", name, x, y))
        judge_lineage(report, probes, required=lineage_required)
    return report


def check(
    sft: Checkpoint,
    rl: Checkpoint,
    target: Checkpoint | None = None,
    *,
    policy: EmbeddingPolicy | None = None,
    lineage: bool = True,
) -> CheckReport:
    """The full pre-flight of ``rvec check``: donors against each other, then the target against them.

    Lineage probes read the first elements of three tensors per checkpoint, nothing more.
    """
    report = check_donors(sft, rl, lineage=lineage)
    if target is None:
        return report
    shapes = float_shapes(sft)
    probe = None
    if lineage and not report.problems and not (sft.has_local_weights and target.has_local_weights):
        report.warnings.append("lineage: weights are not downloaded; the target lineage test runs in apply")
    elif lineage and not report.problems:
        names = [n for n in probe_names(shapes) if n in target.index]
        probe = probe_values(sft, names)
    target_report = check_target(
        vector_shapes=shapes,
        vector_family=family.family_signature(sft.config),
        target=target,
        policy=policy,
        probe=probe,
        label="SFT",
    )
    report.problems += target_report.problems
    report.policies += target_report.policies
    report.warnings += target_report.warnings
    report.lineage += target_report.lineage
    report.fingerprints.update(target_report.fingerprints)
    return report
