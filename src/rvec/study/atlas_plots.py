"""The figures of the atlas and the α search (drawing only; :mod:`rvec.study.report_atlas` and
:mod:`rvec.study.report_search` compute every number), in rvec's one idiom (:mod:`rvec.plotting`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rvec.plotting import new_figure, save_png

__all__ = ["HeatPanel", "SearchFigure", "plot_atlas", "plot_search"]


@dataclass(frozen=True)
class HeatPanel:
    """One heat map: ``values[g][b]`` (percentage points) for group ``g`` and block ``b``, with the
    CI ends and whether Holm's adjusted p is below 0.05; NaN marks a part without a cell."""

    title: str
    values: list[list[float]]
    low: list[list[float]]
    high: list[list[float]]
    significant: list[list[bool]]


def plot_atlas(
    groups: Sequence[str], blocks: Sequence[str], panels: Sequence[HeatPanel], path: Path, *, title: str
) -> Path:
    """Heat maps side by side, rows = module groups, columns = depth blocks, on one diverging
    scale centred at 0; each square shows its value and CI, ``*`` where Holm's p < 0.05.

    Args:
        groups (Sequence[str]): Row labels.
        blocks (Sequence[str]): Column labels (``L0–9``).
        panels (Sequence[HeatPanel]): The maps.
        path (Path): The PNG to write.
        title (str): The figure's title.

    Returns:
        Path: ``path``.
    """
    finite = [abs(v) for p in panels for row in p.values for v in row if not math.isnan(v)]
    limit = max([1.0, *finite])
    width = max(4.0, 1.5 + 1.3 * len(blocks)) * len(panels)
    fig, axes = new_figure(min(16.0, width), 1.2 + 0.75 * len(groups), cols=len(panels))
    image = None
    for ax, panel in zip(axes, panels):
        image = ax.imshow(panel.values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        for g in range(len(groups)):
            for b in range(len(blocks)):
                value = panel.values[g][b]
                if math.isnan(value):
                    continue
                mark = "*" if panel.significant[g][b] else ""
                text = f"{value:+.1f}{mark}\n[{panel.low[g][b]:+.1f}, {panel.high[g][b]:+.1f}]"
                ax.text(b, g, text, ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(blocks)), list(blocks), fontsize=8)
        ax.set_yticks(range(len(groups)), list(groups), fontsize=8)
        ax.set_title(panel.title, fontsize=9)
    if image is not None:  # one scale for every panel: one bar, beside the last
        fig.colorbar(image, ax=axes[-1], shrink=0.9, label="percentage points")
    fig.suptitle(title, fontsize=9)
    return save_png(fig, path)


@dataclass(frozen=True)
class SearchFigure:
    """The numbers of the search's figure (accuracies 0–1)."""

    trials: list[int]
    values: list[float]
    alpha1_dev: float | None
    target_dev: float
    params: list[str]
    best_params: list[float]
    bounds: tuple[float, float]
    rows: list[str]
    dev: list[float]
    test: list[float]


def plot_search(fig_data: SearchFigure, path: Path, *, task: str) -> Path:
    """Three panels: dev accuracy by trial with the best so far; the chosen α per parameter
    (blocks shallow to deep) against α = 1; dev and test accuracy of the target, α = 1 and the best.

    Returns:
        Path: ``path``.
    """
    d = fig_data
    fig, (history, chosen, gap) = new_figure(12.0, 3.6, cols=3)
    best, running = [], -1.0
    for v in d.values:
        running = max(running, v)
        best.append(100 * running)
    history.plot(d.trials, [100 * v for v in d.values], "o", color="tab:blue", label="trial (dev)")
    history.step(d.trials, best, where="post", color="tab:blue", label="best so far")
    history.axhline(100 * d.target_dev, color="grey", linestyle=":", label="target (α = 0)")
    if d.alpha1_dev is not None:
        history.axhline(100 * d.alpha1_dev, color="tab:orange", linestyle="--", label="α = 1")
    history.xaxis.get_major_locator().set_params(integer=True)
    history.set_ylim(bottom=0)
    history.set_xlabel("trial")
    history.set_ylabel(f"{task} dev accuracy (%)")
    history.legend(fontsize=7)
    history.set_title("trial history", fontsize=9)
    chosen.bar(range(len(d.params)), d.best_params, color="tab:green")
    chosen.axhline(1.0, color="tab:orange", linestyle="--", label="α = 1")
    chosen.set_xticks(range(len(d.params)), d.params, fontsize=8)
    chosen.set_ylim(min(0.0, d.bounds[0]), d.bounds[1])
    chosen.set_ylabel("α")
    chosen.set_title("chosen configuration", fontsize=9)
    chosen.legend(fontsize=7)
    width = 0.38
    xs = list(range(len(d.rows)))
    gap.bar([x - width / 2 for x in xs], [100 * v for v in d.dev], width, label="dev")
    gap.bar([x + width / 2 for x in xs], [100 * v for v in d.test], width, label="test")
    gap.set_xticks(xs, d.rows, fontsize=8)
    gap.set_ylabel("accuracy (%)")
    gap.set_title("dev vs test", fontsize=9)
    gap.legend(fontsize=7)
    return save_png(fig, path)
