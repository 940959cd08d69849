"""rvec's one plotting idiom: a matplotlib ``Figure`` on the Agg canvas, written atomically as PNG.

No pyplot: no global backend is switched, nothing needs a display, and no figure outlives its
function (pyplot keeps every figure until ``close``). Each module draws its own figures (a study's
sweeps, a vector's norms, a pair's training curves) with :func:`new_figure` and :func:`save_png`;
the numbers come from elsewhere, plots only draw.

Example:
    >>> fig, (ax,) = new_figure(6.4, 4.0)
    >>> _ = ax.plot([0, 1], [0, 1])
    >>> save_png(fig, Path("line.png"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rvec.atomic import atomic_file

__all__ = ["DPI", "new_figure", "save_png"]

logger = logging.getLogger(__name__)

DPI = 120
"""Resolution of every PNG rvec writes."""


def new_figure(width: float, height: float, *, rows: int = 1, cols: int = 1) -> tuple[Any, list[Any]]:
    """A figure of ``width`` × ``height`` inches on the Agg canvas and its ``rows × cols`` axes
    (row-major, always a list)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save_png(fig: Any, path: str | Path) -> Path:
    """Lay ``fig`` out and write it to ``path`` as PNG; the file appears only when complete.

    Raises:
        OutputError: the filesystem refused the file.
    """
    path = Path(path)
    fig.tight_layout()
    with atomic_file(path) as fh:
        fig.savefig(fh, dpi=DPI, format="png")
    logger.debug("wrote %s", path)
    return path
