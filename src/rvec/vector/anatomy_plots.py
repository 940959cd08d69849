"""The figures of ``rvec anatomy`` (and the per-layer norms plot a study report shows): layer ×
module-class heat maps and per-layer norm lines, drawn with :mod:`rvec.plotting`. The numbers come
from :mod:`rvec.vector.anatomy`; these functions only draw."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rvec.plotting import new_figure, save_png

__all__ = ["HeatMap", "plot_heatmaps", "plot_norms"]

_ANNOTATE_MAX_CELLS = 400  # beyond this many cells, numbers in the cells are unreadable


@dataclass(frozen=True)
class HeatMap:
    """One panel: ``values[i, j]`` for layer ``layers[i]`` and module class ``classes[j]`` (NaN: no
    such tensor, or the figure is undefined for it)."""

    title: str
    layers: Sequence[int]
    classes: Sequence[str]
    values: np.ndarray
    cmap: str = "viridis"
    vmin: float | None = None
    vmax: float | None = None
    fmt: str = ".2g"


def plot_heatmaps(panels: Sequence[HeatMap], path: str | Path, *, title: str) -> Path:
    """PNG: the panels side by side, layers down, module classes across, one colour bar each.

    Args:
        panels (Sequence[HeatMap]): one or more heat maps of the same layers.
        path (str | Path): the PNG to write (atomically).
        title (str): the figure's title.

    Returns:
        Path: ``path``.
    """
    from matplotlib import colormaps

    rows = max(len(p.layers) for p in panels)
    width = sum(1.6 + 0.55 * len(p.classes) for p in panels)
    fig, axes = new_figure(max(width, 4.0), 1.4 + 0.22 * rows, cols=len(panels))
    for ax, panel in zip(axes, panels, strict=True):
        masked = np.ma.masked_invalid(np.asarray(panel.values, dtype=np.float64))
        cmap = colormaps[panel.cmap].with_extremes(bad="#dddddd")  # grey: no such tensor in that layer
        image = ax.imshow(
            masked, aspect="auto", cmap=cmap, vmin=panel.vmin, vmax=panel.vmax, interpolation="nearest"
        )
        image.autoscale_None()  # fix the colour range now: the cell labels' ink depends on it
        ax.set_xticks(range(len(panel.classes)), panel.classes, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(panel.layers)), [str(layer) for layer in panel.layers], fontsize=6)
        ax.set_ylabel("layer")
        ax.set_title(panel.title, fontsize=8)
        if masked.size <= _ANNOTATE_MAX_CELLS:
            for (i, j), value in np.ndenumerate(masked.filled(np.nan)):
                if not math.isnan(value):
                    ink = _ink(image, value)
                    ax.text(j, i, format(value, panel.fmt), ha="center", va="center", fontsize=5, color=ink)
        fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    fig.suptitle(title, fontsize=9)
    return save_png(fig, path)


def _ink(image: Any, value: float) -> str:
    """Black on light cells, white on dark ones (by the cell colour's luminance)."""
    r, g, b, _ = image.cmap(image.norm(value))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def plot_norms(panels: Sequence[tuple[str, Mapping[str, Any]]], path: str | Path) -> Path:
    """PNG: per-layer ‖v‖, the layer total and one line per module class, one panel per vector.

    Args:
        panels (Sequence[tuple[str, Mapping]]): ``(label, Anatomy.norms_panel())`` per vector: uses
            ``per_layer`` ``{layer: norm}``, ``per_layer_module`` ``{layer: {module: norm}}`` and
            ``total_norm``; layer keys may be strings of integers.
        path (str | Path): the PNG to write (atomically).

    Returns:
        Path: ``path``.
    """
    from matplotlib.ticker import MaxNLocator

    fig, axes = new_figure(7.2, 3.6 * len(panels), rows=len(panels))
    for ax, (label, stats) in zip(axes, panels, strict=True):
        per_layer = {int(k): float(v) for k, v in stats.get("per_layer", {}).items()}
        per_module = {int(k): dict(v) for k, v in stats.get("per_layer_module", {}).items()}
        layers = sorted(per_layer)
        ax.plot(layers, [per_layer[k] for k in layers], color="black", linewidth=2, label="layer total")
        for module in sorted({m for v in per_module.values() for m in v}):
            # NaN leaves a gap where a layer has no such module, instead of a false zero.
            values = [float(per_module.get(k, {}).get(module, math.nan)) for k in layers]
            ax.plot(layers, values, marker="o", markersize=3, label=module)
        total = stats.get("total_norm")
        title = f"{label}: per-layer ‖v‖" if label else "per-layer ‖v‖"
        ax.set_title(title + (f" (total ‖v‖ = {float(total):.4g})" if total is not None else ""), fontsize=9)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("‖v‖ (Frobenius)")
        ax.legend(fontsize=7)
    return save_png(fig, path)
