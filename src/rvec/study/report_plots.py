"""The report's plots: α sweeps with their paired CI band, accuracy by variant and condition, and
per-layer vector norms (drawn by :mod:`rvec.study.plots`), with the Markdown that shows them."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rvec.eval.stats import StatisticsError, accuracy_interval
from rvec.study import plots
from rvec.study.report_index import (
    BBH_MEAN,
    Comparer,
    ReportIndex,
    Row,
    compare_rows,
    has_cell,
    row_accuracy,
)
from rvec.vector.anatomy_plots import plot_norms

__all__ = ["plots_section"]

logger = logging.getLogger(__name__)

_PLOT_PATTERNS = ("alpha_sweep_*.png", "conditions.png", "vector_norms.png", "atlas_*.png", "search.png")


def plots_section(
    index: ReportIndex,
    comparer: Comparer,
    plot_dir: Path,
    vector_norms: Mapping[str, Any] | None,
    *,
    keep: list[Path] | None = None,
) -> tuple[list[str], list[Path]]:
    """The plots and their Markdown; PNGs of an earlier render that neither this section nor
    ``keep`` (the atlas's, the search's) wrote are removed."""
    lines = ["## Plots", ""]
    written: list[Path] = []
    skipped: list[str] = []
    for column in index.columns:
        series = _sweep_series(index, comparer, column, skipped)
        if series:
            path = plot_dir / f"alpha_sweep_{_slug(column)}.png"
            plots.plot_alpha_sweep(series, path, task=column, band="band: 95% CI vs α = 0")
            written.append(path)
            lines += [
                f"![α sweep on {column}](plots/{path.name})",
                "",
                f"*α sweep on {column}: accuracy of target + α·v, α = 0 being the baseline under the same "
                "condition. Shaded: the baseline accuracy plus the 95% paired bootstrap CI of each point's "
                "difference vs α = 0 (not a CI of the accuracy itself).*",
                "",
            ]
    lines += [f"- {note}" for note in skipped] + ([""] if skipped else [])

    groups, bars = _condition_bars(index, comparer)
    path = plots.plot_conditions(groups, bars, plot_dir / "conditions.png", interval="95% bootstrap CI")
    written.append(path)
    lines += [
        "![accuracy by variant and condition](plots/conditions.png)",
        "",
        "*Accuracy by task, variant and condition. Error bars: 95% percentile bootstrap CI of each "
        "accuracy (items resampled; within each subtask for the BBH mean); unpaired, so overlapping bars "
        "do not imply an insignificant Δ — the tables give the paired tests.*",
        "",
    ]
    if vector_norms is not None:
        written.append(plot_norms([("", vector_norms)], plot_dir / "vector_norms.png"))
        lines += [
            "![per-layer vector norms](plots/vector_norms.png)",
            "",
            "*Per-layer ‖v‖, total and by module class.*",
            "",
        ]
    _remove_stale_plots(plot_dir, [*written, *(keep or [])])
    return lines, written


def _sweep_series(
    index: ReportIndex, comparer: Comparer, column: str, skipped: list[str]
) -> list[plots.SweepSeries]:
    """One series per (model, vector, condition) with ≥ 2 α values on ``column``, α = 0 from the baseline."""
    groups: dict[tuple[str, str | None, str], list[Row]] = {}
    for row in index.rows:
        variant = index.variants[row[0]]
        if variant.kind == "vector" and variant.alpha is not None and has_cell(index, row, column):
            groups.setdefault((variant.model, variant.vector, row[1]), []).append(row)
    series = []
    for (_, vector, condition), rows in groups.items():
        if len({index.variants[r[0]].alpha for r in rows}) < 2:
            continue
        base_row = (index.base[0], condition)
        if not has_cell(index, base_row, column):
            skipped.append(
                f"α sweep on {column} under `{condition}` not plotted: no baseline cell under that condition."
            )
            continue
        base_acc = row_accuracy(index, base_row, column)
        points = [(0.0, base_acc, base_acc, base_acc)]
        for row in sorted(rows, key=lambda r: index.variants[r[0]].alpha or 0.0):
            c = compare_rows(index, comparer, "alpha-sweep-vs-alpha0", base_row, row, column)
            if c is not None:
                points.append(
                    (
                        index.variants[row[0]].alpha or 0.0,
                        c.acc_a + c.diff,
                        c.acc_a + c.ci_low,
                        c.acc_a + c.ci_high,
                    )
                )
        points.sort(key=lambda p: p[0])
        label = condition if len({g[1] for g in groups}) < 2 else f"{vector} · {condition}"
        series.append(
            plots.SweepSeries(
                label=label,
                alphas=[p[0] for p in points],
                accuracy=[p[1] for p in points],
                low=[p[2] for p in points],
                high=[p[3] for p in points],
            )
        )
    return series


def _condition_bars(index: ReportIndex, comparer: Comparer) -> tuple[list[str], list[plots.Bars]]:
    bars = []
    for row in index.rows:
        acc, low, high = [], [], []
        for column in index.columns:
            per_item: list[Mapping[str, bool]] = (
                [c.per_item for c in index.bbh(row).values()]
                if column == BBH_MEAN
                else ([cell.per_item] if (cell := index.get(row, column)) else [])
            )
            try:
                a, lo, hi = accuracy_interval(per_item, resamples=comparer.resamples, seed=comparer.seed)
            except StatisticsError:
                a = lo = hi = math.nan  # a missing or empty cell draws no bar
            acc.append(a)
            low.append(lo)
            high.append(hi)
        bars.append(plots.Bars(label=f"{row[0]} / {row[1]}", accuracy=acc, low=low, high=high))
    return list(index.columns), bars


def _remove_stale_plots(plot_dir: Path, written: list[Path]) -> None:
    """Drop PNGs of an earlier render that this one did not redraw, so report and folder agree."""
    keep = {p.resolve() for p in written}
    for pattern in _PLOT_PATTERNS:
        for path in plot_dir.glob(pattern):
            if path.resolve() not in keep:
                logger.info("removing stale plot %s", path)
                path.unlink(missing_ok=True)


def _slug(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", task)
