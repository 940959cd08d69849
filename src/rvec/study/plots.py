"""The study report's figures: α sweeps, accuracy by condition, per-layer vector norms.

Drawing only: :mod:`rvec.study.report` computes every number (accuracies, intervals) and passes
plain series here. Figures are drawn on matplotlib's Agg canvas without pyplot, so no global
backend is switched and nothing needs a display. Each PNG is written to a temporary sibling and
renamed, so a crash never leaves a truncated image.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rvec.atomic import atomic_file

__all__ = ["Bars", "SweepSeries", "plot_alpha_sweep", "plot_conditions", "plot_vector_norms"]

logger = logging.getLogger(__name__)

_DPI = 120


@dataclass(frozen=True)
class SweepSeries:
    """One line of an α sweep: accuracy (0–1) at each α with the band's lower and upper ends."""

    label: str
    alphas: list[float]
    accuracy: list[float]
    low: list[float]
    high: list[float]


@dataclass(frozen=True)
class Bars:
    """One bar series of the conditions plot: accuracy (0–1) per group, with its CI ends."""

    label: str
    accuracy: list[float]
    low: list[float]
    high: list[float]


def plot_alpha_sweep(series: Sequence[SweepSeries], path: Path, *, task: str, band: str) -> Path:
    """Accuracy against α, one line per series, with a shaded interval band.

    Args:
        series (Sequence[SweepSeries]): the lines, α sorted ascending within each.
        path (Path): the PNG to write.
        task (str): the task, for the title.
        band (str): what the shaded band is, for the legend title.

    Returns:
        Path: ``path``.
    """
    fig = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for s in series:
        (line,) = ax.plot(s.alphas, [100 * v for v in s.accuracy], marker="o", label=s.label)
        ax.fill_between(
            s.alphas, [100 * v for v in s.low], [100 * v for v in s.high], color=line.get_color(), alpha=0.2
        )
    ax.axvline(0.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("α")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{task}: accuracy vs α")
    ax.legend(fontsize=8, title=band, title_fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_conditions(groups: Sequence[str], bars: Sequence[Bars], path: Path, *, interval: str) -> Path:
    """Grouped bars: one group per task, one bar per (variant, condition), with CI error bars.

    Args:
        groups (Sequence[str]): task names, one per group.
        bars (Sequence[Bars]): one series per (variant, condition); NaN marks a missing cell.
        path (Path): the PNG to write.
        interval (str): what the error bars are, for the title.

    Returns:
        Path: ``path``.
    """
    width = 0.8 / max(1, len(bars))
    fig = Figure(figsize=(min(16.0, max(6.4, 0.3 * len(groups) * max(1, len(bars)) + 2.0)), 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, b in enumerate(bars):
        xs = [g - 0.4 + width * (i + 0.5) for g in range(len(groups))]
        heights = [100 * v for v in b.accuracy]
        # yerr must be non-negative distances from the bar top; NaN (a missing cell) draws nothing.
        err = [
            [max(0.0, 100 * (v - lo)) for v, lo in zip(b.accuracy, b.low)],
            [max(0.0, 100 * (hi - v)) for v, hi in zip(b.accuracy, b.high)],
        ]
        ax.bar(xs, heights, width=width, yerr=err, capsize=2, label=b.label)
    ax.set_xticks(list(range(len(groups))), list(groups), rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"accuracy by variant and condition ({interval})", fontsize=9)
    # Outside the axes, so the legend never hides a bar.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return _save(fig, path)


def plot_vector_norms(vector_stats: Mapping[str, Any], path: Path) -> Path:
    """Per-layer norm of the vector, total and by module type.

    Args:
        vector_stats (Mapping[str, Any]): ``rvec.vector.stats.vector_stats(...).to_dict()``: uses
            ``per_layer`` ``{layer: norm}``, ``per_layer_module`` ``{layer: {module: norm}}`` and,
            when present, ``total_norm``; layer keys are strings of integers.
        path (Path): the PNG to write.

    Returns:
        Path: ``path``.
    """
    per_layer = {int(k): float(v) for k, v in vector_stats.get("per_layer", {}).items()}
    per_module = {int(k): dict(v) for k, v in vector_stats.get("per_layer_module", {}).items()}
    layers = sorted(per_layer)
    fig = Figure(figsize=(7.2, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(layers, [per_layer[k] for k in layers], color="black", linewidth=2, label="layer total")
    for module in sorted({m for v in per_module.values() for m in v}):
        ax.plot(
            layers,
            # NaN leaves a gap where a layer has no such module, instead of a false zero.
            [float(per_module.get(k, {}).get(module, math.nan)) for k in layers],
            marker="o",
            markersize=3,
            label=module,
        )
    total = vector_stats.get("total_norm")
    ax.set_title("per-layer ‖v‖" + (f" (total ‖v‖ = {float(total):.4g})" if total is not None else ""))
    ax.set_xlabel("layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("‖v‖ (Frobenius)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    with atomic_file(path) as fh:
        fig.savefig(fh, dpi=_DPI, format="png")
    logger.debug("wrote %s", path)
    return path
