"""The report's machine-readable files: ``results.json`` (cells, every comparison, settings) and
``results.csv`` (one row per cell and metric)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from rvec.study.report_index import CONFIDENCE, Comparer, ReportIndex
from rvec.study.types import CellResult

__all__ = ["results_csv_text", "results_json_text"]

_CSV_COLUMNS = (
    "variant",
    "kind",
    "alpha",
    "model",
    "condition",
    "task",
    "clean_task",
    "metric",
    "value",
    "n",
    "tokens_mean",
    "tokens_median",
    "tokens_p90",
)


def results_json_text(
    cells: Sequence[CellResult],
    index: ReportIndex,
    comparer: Comparer,
    title: str,
    notes: list[str],
    config_text: str | None,
    *,
    sections: dict[str, Any] | None = None,
) -> str:
    """``results.json``: the cells, every comparison, the settings, and the report's extra
    ``sections`` (``atlas``, ``search``) where they are not ``None``."""
    payload = {
        "title": title,
        "notes": list(notes),
        "baseline": {"variant": index.base[0], "condition": index.base[1]},
        "statistics": {
            "confidence": CONFIDENCE,
            "resamples": comparer.resamples,
            "seed": comparer.seed,
            "interval": "paired bootstrap, percentile",
            "test": "exact McNemar (two-sided binomial on discordant pairs); on per-item means of "
            "several samples, the paired sign-flip permutation test (each comparison's test field)",
            "bbh_mean": "unweighted mean over subtasks; bootstrap within subtasks; McNemar pooled",
        },
        "cells": [_cell_json(c) for c in cells],
        "comparisons": comparer.records,
        **{k: v for k, v in (sections or {}).items() if v is not None},
        "config": config_text,
    }
    return json.dumps(_finite(payload), indent=2, ensure_ascii=False, allow_nan=False)


def _cell_json(cell: CellResult) -> dict[str, Any]:
    return {
        "variant": cell.variant.to_dict(),
        "condition": cell.condition,
        "task": cell.task,
        "clean_task": cell.clean_task,
        "primary": cell.primary,
        "scores": dict(cell.scores),
        "n": cell.n,
        "accuracy": cell.accuracy,
        "seconds": cell.seconds,
        "generated_tokens": cell.generated_tokens,
        "tokens_mean": cell.tokens_mean,
        "tokens_median": cell.tokens_median,
        "tokens_p90": cell.tokens_p90,
        "think": cell.think,
        "cache_key": cell.cache_key,
        **({"kl": cell.extra["kl"]} if "kl" in cell.extra else {}),
    }


def _finite(value: Any) -> Any:
    """NaN/inf (an empty cell's accuracy) become ``null``: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def results_csv_text(cells: Sequence[CellResult]) -> str:
    """One row per cell and metric; the primary metric is added from per_item when scores lacks it.
    The cell's generated-token lengths repeat on each of its rows (empty where none was recorded)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for cell in cells:
        v = cell.variant
        metrics = dict(cell.scores)
        metrics.setdefault(cell.primary, cell.accuracy)
        for metric, value in metrics.items():
            alpha = "" if v.alpha is None else repr(v.alpha)
            row = [v.name, v.kind, alpha, v.model, cell.condition, cell.task, cell.clean_task, metric]
            lengths = [
                "" if x is None else repr(float(x))
                for x in (cell.tokens_mean, cell.tokens_median, cell.tokens_p90)
            ]
            writer.writerow([*row, repr(float(value)), cell.n, *lengths])
    return buffer.getvalue()
