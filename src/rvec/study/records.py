"""A finished cell's record, built from one evaluation: its samples (with each item's KL and
response length), its per-item results (an adversarial cell keyed by the clean item it came from)
and its scores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rvec.errors import RvecError
from rvec.eval.data import DataSource
from rvec.eval.presets import Preset
from rvec.eval.tasks.registry import get_task
from rvec.study.lengths import response_lengths
from rvec.study.plan import PlannedCell
from rvec.study.types import CellResult

__all__ = ["cell_samples", "make_cell"]


def cell_samples(
    task: str,
    records: Sequence[Any] | None,
    divergences: tuple[dict[str, Any], dict[str, float]] | None,
    count: Callable[[str], int] | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The cell's samples as stored, and its ``extra`` (``kl``, ``tokens``) where measured.

    Args:
        task (str): The cell's task key.
        records (Sequence[SampleRecord] | None): The evaluation's records of ``task``.
        divergences (tuple | None): The key's KL summary and per-item values
            (:meth:`rvec.study.kl.KLMeter.measure`), or ``None``.
        count (Callable | None): The backend's token counter (:func:`rvec.study.lengths.response_lengths`).

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
    lengths = response_lengths(samples, count)
    extra = {
        **({"kl": summary} if summary is not None else {}),
        **({"tokens": lengths} if lengths is not None else {}),
    }
    return samples, extra


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
    per_item = {str(s["doc_id"]): bool(s["correct"]) for s in samples}
    if cell.clean_task != cell.base_task:
        per_item = _paired(cell.base_task, per_item, source, limit)
    metrics = list(dict.fromkeys(k for s in samples for k in s["metrics"]))
    scores = {k: sum(float(s["metrics"].get(k, 0.0)) for s in samples) / len(samples) for k in metrics}
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
        extra=extra,
    )


def _paired(
    task_name: str, per_item: dict[str, bool], source: DataSource, limit: int | None
) -> dict[str, bool]:
    """Key an adversarial cell by the id of the clean item it came from (GSM-Symbolic rows name
    their template instance; the pairing is by the GSM8K original), when that is one-to-one."""
    task = get_task(task_name)
    mapping = {d.doc_id: task.paired_doc_id(d) or d.doc_id for d in task.docs(source, limit=limit)}
    paired = [mapping.get(k, k) for k in per_item]
    if len(set(paired)) != len(paired):
        return per_item
    return {mapping.get(k, k): v for k, v in per_item.items()}
