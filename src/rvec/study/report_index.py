"""The report's view of a study's cells: rows (variant, condition), columns (clean tasks and the BBH
mean), the baseline row, and the paired comparisons between them, each computed once and recorded
for ``results.json``.

Comparisons always pair items by doc_id (:mod:`rvec.eval.stats`); a pair without shared items is
recorded as not paired, never dropped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rvec.errors import RvecError
from rvec.eval.stats import Comparison, StatisticsError, paired_comparison, stratified_comparison
from rvec.study.types import CellResult, Variant

__all__ = [
    "BBH_MEAN",
    "BBH_PREFIX",
    "CONFIDENCE",
    "Comparer",
    "ReportError",
    "ReportIndex",
    "Row",
    "build_index",
    "cell_tokens",
    "compare_rows",
    "has_cell",
    "row_accuracy",
    "row_tokens",
]

logger = logging.getLogger(__name__)

BBH_PREFIX = "bbh:"
BBH_MEAN = "bbh"
"""Main-table column: the unweighted mean over the ``bbh:<subtask>`` cells of a row."""

CONFIDENCE = 0.95
"""Level of every interval in the report."""

_BASELINE_CONDITION = "plain"

Row = tuple[str, str]
"""A report row: (variant name, condition)."""


class ReportError(RvecError, ValueError):
    """The cells cannot make a report: none, no baseline cell, or clashing cells.

    Example: ``baseline variant 'target' has no cell; variants: RL donor, target + 1·v; pass the baseline's name``
    """


@dataclass
class ReportIndex:
    """The cells arranged for lookup: rows, columns and the baseline row."""

    cells: dict[tuple[str, str, str], CellResult]
    variants: dict[str, Variant]
    rows: list[Row]  # baseline row first, then in order of first appearance
    base: Row
    columns: list[str]  # clean tasks, with BBH_MEAN where the first BBH subtask appeared
    subtasks: list[str]  # clean ``bbh:<sub>`` tasks, sorted
    perturbed: list[str]  # tasks whose clean_task differs, in order of first appearance

    def get(self, row: Row, task: str) -> CellResult | None:
        return self.cells.get((row[0], row[1], task))

    def bbh(self, row: Row) -> dict[str, CellResult]:
        return {s: c for s in self.subtasks if (c := self.get(row, s)) is not None}


class Comparer:
    """Computes each comparison once and records every one for ``results.json``."""

    def __init__(self, *, resamples: int, seed: int) -> None:
        self.resamples = resamples
        self.seed = seed
        self.records: list[dict[str, Any]] = []
        self._cache: dict[tuple[Any, ...], Comparison | None] = {}

    def cells(self, kind: str, a: CellResult, b: CellResult) -> Comparison | None:
        """B vs A paired on doc_id; ``None`` (recorded with the reason) when they share no item."""
        key = (_ref_key(a), _ref_key(b))
        if key not in self._cache:
            self._cache[key] = self._run(
                kind,
                b.task,
                _ref(a),
                _ref(b),
                lambda: paired_comparison(a.per_item, b.per_item, **self._kw()),
            )
        return self._cache[key]

    def bbh_mean(
        self, kind: str, a: Mapping[str, CellResult], b: Mapping[str, CellResult]
    ) -> Comparison | None:
        """Unweighted BBH mean of B vs A over the subtasks both have (items resampled per subtask)."""
        shared = sorted(set(a) & set(b))
        if not shared:
            return None
        first_a, first_b = a[shared[0]], b[shared[0]]
        key = ("bbh", tuple(_ref_key(a[s]) for s in shared), tuple(_ref_key(b[s]) for s in shared))
        if key not in self._cache:
            ref_a = {**_ref(first_a), "task": BBH_MEAN, "subtasks": shared}
            ref_b = {**_ref(first_b), "task": BBH_MEAN, "subtasks": shared}
            strata = {s: (a[s].per_item, b[s].per_item) for s in shared}
            self._cache[key] = self._run(
                kind, BBH_MEAN, ref_a, ref_b, lambda: stratified_comparison(strata, **self._kw())
            )
        return self._cache[key]

    def _kw(self) -> dict[str, Any]:
        return {"resamples": self.resamples, "seed": self.seed, "confidence": CONFIDENCE}

    def _run(
        self, kind: str, task: str, a: dict[str, Any], b: dict[str, Any], compute: Callable[[], Comparison]
    ) -> Comparison | None:
        record: dict[str, Any] = {"kind": kind, "task": task, "a": a, "b": b}
        try:
            result: Comparison | None = compute()
        except StatisticsError as err:
            # A pair without shared items is reported as "not paired", never silently dropped.
            logger.warning("%s: %s vs %s not compared: %s", task, a, b, err)
            result = None
            record["problem"] = str(err)
        record["comparison"] = result.to_dict() if result is not None else None
        self.records.append(record)
        return result


def build_index(cells: Sequence[CellResult], baseline: str) -> ReportIndex:
    if not cells:
        raise ReportError("no cells to report; run the study first (`rvec run study.yaml`)")
    by_key: dict[tuple[str, str, str], CellResult] = {}
    variants: dict[str, Variant] = {}
    problems: list[str] = []
    for cell in cells:
        name = cell.variant.name
        if variants.setdefault(name, cell.variant) != cell.variant:
            problems.append(f"variant name {name!r} names two variants ({variants[name]} and {cell.variant})")
        key = (name, cell.condition, cell.task)
        if key in by_key:
            problems.append(
                f"two cells for variant {name!r}, condition {cell.condition!r}, task {cell.task!r}"
            )
        by_key[key] = cell
    if problems:
        raise ReportError("cannot report these cells: " + "; ".join(sorted(set(problems))))
    if baseline not in variants:
        raise ReportError(
            f"baseline variant {baseline!r} has no cell; variants: {', '.join(sorted(variants))}; "
            "pass the baseline's name"
        )

    rows = list(dict.fromkeys((c.variant.name, c.condition) for c in cells))
    base_conditions = [cond for name, cond in rows if name == baseline]
    base = (baseline, _BASELINE_CONDITION if _BASELINE_CONDITION in base_conditions else base_conditions[0])
    rows = [base] + [r for r in rows if r != base]

    clean = list(dict.fromkeys(c.task for c in cells if c.task == c.clean_task))
    columns = list(dict.fromkeys(BBH_MEAN if t.startswith(BBH_PREFIX) else t for t in clean))
    if BBH_MEAN in clean:
        # A literal "bbh" cell would collide with the computed mean column.
        raise ReportError(
            "a cell has task 'bbh', which the report reserves for the mean of the bbh:<subtask> cells; "
            "evaluate the subtasks (task keys bbh:<subtask>) instead"
        )
    return ReportIndex(
        cells=by_key,
        variants=variants,
        rows=rows,
        base=base,
        columns=columns,
        subtasks=sorted(t for t in clean if t.startswith(BBH_PREFIX)),
        perturbed=list(dict.fromkeys(c.task for c in cells if c.task != c.clean_task)),
    )


def _ref(cell: CellResult) -> dict[str, str]:
    return {"variant": cell.variant.name, "condition": cell.condition, "task": cell.task}


def _ref_key(cell: CellResult) -> tuple[str, str, str]:
    return (cell.variant.name, cell.condition, cell.task)


def has_cell(index: ReportIndex, row: Row, column: str) -> bool:
    return bool(index.bbh(row)) if column == BBH_MEAN else index.get(row, column) is not None


def row_accuracy(index: ReportIndex, row: Row, column: str) -> float:
    if column == BBH_MEAN:
        cells = index.bbh(row)
        return sum(c.accuracy for c in cells.values()) / len(cells)
    cell = index.get(row, column)
    return cell.accuracy if cell is not None else math.nan


def row_tokens(index: ReportIndex, row: Row, column: str) -> float | None:
    """Mean generated tokens of a row's cell (the BBH mean: the mean over its subtasks); ``None`` for
    a log-likelihood task or a cell cached before lengths were kept."""
    cells = list(index.bbh(row).values()) if column == BBH_MEAN else [index.get(row, column)]
    values = [c.tokens_mean for c in cells if c is not None]
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None) / len(values)


def compare_rows(
    index: ReportIndex, comparer: Comparer, kind: str, a: Row, b: Row, column: str
) -> Comparison | None:
    if column == BBH_MEAN:
        return comparer.bbh_mean(kind, index.bbh(a), index.bbh(b))
    cell_a, cell_b = index.get(a, column), index.get(b, column)
    if cell_a is None or cell_b is None:
        return None
    return comparer.cells(kind, cell_a, cell_b)


def cell_tokens(cell: CellResult | None) -> dict[str, float]:
    """A cell's generated-token ``mean`` and ``median`` (``{}`` when it has none: log-likelihood tasks)."""
    if cell is None or cell.tokens_mean is None or cell.tokens_median is None:
        return {}
    return {"mean": cell.tokens_mean, "median": cell.tokens_median}
