"""The study report's figures: α sweeps, accuracy by variant and condition, and accuracy against
generated length (the vector's per-layer norms are :func:`rvec.vector.anatomy_plots.plot_norms`).

Drawing only: :mod:`rvec.study.report` computes every number (accuracies, intervals) and passes
plain series here, drawn in rvec's one idiom (:mod:`rvec.plotting`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rvec.plotting import new_figure, save_png

__all__ = [
    "Bars",
    "LengthCurve",
    "LengthPoint",
    "SweepSeries",
    "plot_accuracy_length",
    "plot_alpha_sweep",
    "plot_conditions",
]


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


@dataclass(frozen=True)
class LengthPoint:
    """One (variant, condition) of the accuracy-vs-length plot: mean generated tokens, accuracy (0–1)."""

    label: str
    tokens: float
    accuracy: float


@dataclass(frozen=True)
class LengthCurve:
    """An α sweep through the accuracy-vs-length plane: one point per α, α ascending."""

    label: str
    alphas: list[float]
    tokens: list[float]
    accuracy: list[float]


def plot_accuracy_length(
    points: Sequence[LengthPoint], curves: Sequence[LengthCurve], path: Path, *, task: str
) -> Path:
    """Accuracy against mean generated tokens: a marker per variant, a line through each α sweep.

    Args:
        points (Sequence[LengthPoint]): every (variant, condition) with a length on ``task``.
        curves (Sequence[LengthCurve]): the α sweeps, each point annotated with its α.
        path (Path): the PNG to write.
        task (str): the task, for the title.

    Returns:
        Path: ``path``.
    """
    fig, (ax,) = new_figure(6.4, 4.4)
    for curve in curves:
        (line,) = ax.plot(curve.tokens, [100 * v for v in curve.accuracy], linestyle="--", label=curve.label)
        for alpha, x, y in zip(curve.alphas, curve.tokens, curve.accuracy, strict=True):
            ax.annotate(
                f"α={alpha:g}",
                (x, 100 * y),
                fontsize=6,
                color=line.get_color(),
                xytext=(3, 3),
                textcoords="offset points",
            )
    for point in points:
        ax.scatter([point.tokens], [100 * point.accuracy], label=point.label, s=24, zorder=3)
    ax.set_xlabel("mean generated tokens per response")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{task}: accuracy vs generation length")
    # Outside the axes, so the legend never hides a point.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return save_png(fig, path)


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
    fig, (ax,) = new_figure(6.4, 4.0)
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
    return save_png(fig, path)


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
    fig, (ax,) = new_figure(min(16.0, max(6.4, 0.3 * len(groups) * max(1, len(bars)) + 2.0)), 4.8)
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
    return save_png(fig, path)
