"""A finished cell's record, built from one evaluation: its samples (with each item's KL), its
per-item results (an adversarial cell keyed by the clean item it came from; a sampled cell by each
item's mean over its samples), its scores (``avg@n``/``pass@k`` when sampled), its generated-token
lengths (:func:`rvec.eval.lengths.records_length_summary`, the one length statistic), its think
summary and, where a preset compares two verdicts, where they disagree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rvec.errors import RvecError
from rvec.eval.data import DataSource
from rvec.eval.lengths import records_length_summary
from rvec.eval.presets import Preset
from rvec.eval.sampling import per_item as item_values
from rvec.eval.sampling import sampled_metrics
from rvec.eval.tasks.registry import get_task
from rvec.eval.thinking import think_summary
from rvec.eval.verdicts import disagreement
from rvec.study.plan import PlannedCell
from rvec.study.types import CellResult

__all__ = ["cell_samples", "make_cell"]


def cell_samples(
    task: str,
    records: Sequence[Any] | None,
    divergences: tuple[dict[str, Any], dict[str, float]] | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The cell's samples as stored, and its ``extra`` (``kl``) where measured.

    Args:
        task (str): The cell's task key.
        records (Sequence[SampleRecord] | None): The evaluation's records of ``task``.
        divergences (tuple | None): The key's KL summary and per-item values
            (:meth:`rvec.study.kl.KLMeter.measure`), or ``None``.

    Raises:
        RvecError: the evaluation returned no samples for ``task``.
    """
    if records is None:
        raise RvecError(
            f"{task}: the evaluation returned no samples (is the perturbation applicable to this task?)"
        )
    samples = [dict(vars(r)) for r in records]
    summary, per_item = divergences if divergences is not None else (None, {})
    for sample in samples:
        if sample["doc_id"] in per_item:
            sample["kl"] = per_item[sample["doc_id"]]
    return samples, ({"kl": summary} if summary is not None else {})


def make_cell(
    cell: PlannedCell,
    key: str,
    samples: list[dict[str, Any]],
    *,
    seconds: float,
    tokens: int,
    extra: dict[str, Any],
    preset: Preset,
    source: DataSource,
    limit: int | None,
) -> CellResult:
    """The cell's result from its stored samples (``limit``: the study's limit of its base task)."""
    per_item = item_values((str(s["doc_id"]), bool(s["correct"])) for s in samples)
    if cell.clean_task != cell.base_task:
        per_item = _paired(cell.base_task, per_item, source, limit)
    metrics = list(dict.fromkeys(k for s in samples for k in s["metrics"]))
    scores = {k: sum(float(s["metrics"].get(k, 0.0)) for s in samples) / len(samples) for k in metrics}
    lengths, think, compared = _summaries(cell, samples, scores, preset)
    return CellResult(
        variant=cell.variant,
        condition=cell.condition,
        task=cell.task,
        primary=samples[0].get("primary") or get_task(cell.base_task)._primary(preset),
        scores=scores,
        per_item=per_item,
        clean_task=cell.clean_task,
        cache_key=key,
        seconds=seconds,
        generated_tokens=tokens,
        tokens_mean=lengths["mean"] if lengths else None,
        tokens_median=lengths["median"] if lengths else None,
        tokens_p90=lengths["p90"] if lengths else None,
        think=think,
        extra={**extra, **compared},
    )


def _summaries(
    cell: PlannedCell, samples: list[dict[str, Any]], scores: dict[str, float], preset: Preset
) -> tuple[dict[str, float] | None, dict[str, Any] | None, dict[str, Any]]:
    """A cell's decoding results: ``avg@n``/``pass@k`` added to ``scores`` (sampled), its
    generated-token lengths, its think summary (thinking on) and, where the preset compares two
    verdicts (GSM8K under ``reasoning``), where they disagree (``{"disagreement": …}``)."""
    task = get_task(cell.base_task)
    generates = task.output_type(preset) == "generate"
    if preset.sampling is not None and generates:
        drawn = ((str(s["doc_id"]), bool(s["correct"])) for s in samples)
        scores.update(sampled_metrics(drawn, samples=preset.sampling.samples))
    lengths = records_length_summary(samples) if generates else None
    think_lines = [s["think"] for s in samples if s.get("think") is not None]
    think = think_summary(think_lines, preset.think) if think_lines and preset.think else None
    compare = preset.settings(task.family).compare
    compared = {}
    if compare is not None:
        compared["disagreement"] = disagreement(((str(s["doc_id"]), s["metrics"]) for s in samples), compare)
    return lengths, think, compared


def _paired(
    task_name: str, per_item: dict[str, bool | float], source: DataSource, limit: int | None
) -> dict[str, bool | float]:
    """Key an adversarial cell by the id of the clean item it came from (GSM-Symbolic rows name
    their template instance; the pairing is by the GSM8K original), when that is one-to-one."""
    task = get_task(task_name)
    mapping = {d.doc_id: task.paired_doc_id(d) or d.doc_id for d in task.docs(source, limit=limit)}
    paired = [mapping.get(k, k) for k in per_item]
    if len(set(paired)) != len(paired):
        return per_item
    return {mapping.get(k, k): v for k, v in per_item.items()}
