"""Length is a result: the report's generation-length section.

A vector can buy accuracy with longer answers, so every cell's generated tokens are reported beside
its accuracy: a table (mean, median and 90th percentile of the tokens of its responses, every
sample when sampled) and, per task, a plot of accuracy against mean length with one marker per
(variant, condition) and each α sweep drawn as a curve through the plane (α = 0 is the baseline
under the same condition). Cells of log-likelihood tasks, and cells cached before lengths were
kept, have no length and are left out (the table says so). A study with thinking on adds a table of
the think blocks per cell: the rate that closed, how many never did (and of those, how many ran out
of budget: scored wrong), and the mean tokens inside and after the block.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from rvec.eval.stats import format_pct
from rvec.study import plots
from rvec.study.report_index import BBH_MEAN, ReportIndex, Row, has_cell, row_accuracy, row_tokens
from rvec.study.report_tables import escape_md, format_tokens, markdown_table
from rvec.study.types import CellResult

__all__ = ["length_section"]

logger = logging.getLogger(__name__)

_HEADER = ["variant", "condition", "task", "n", "accuracy", "mean tokens", "median", "p90"]
_PATTERN = "length_*.png"


def length_section(index: ReportIndex, plot_dir: Path) -> tuple[list[str], list[Path]]:
    """The ``## Generation length`` section and the accuracy-vs-length plots it shows.

    Args:
        index (ReportIndex): the study's cells.
        plot_dir (Path): where the PNGs go (stale ``length_*.png`` of an earlier render are removed).

    Returns:
        tuple[list[str], list[Path]]: the Markdown lines and the plots written.
    """
    lines = ["## Generation length", ""]
    body = [_row(index, row, column) for column in index.columns for row in index.rows]
    body = [r for r in body if r is not None]
    written: list[Path] = []
    if not body:
        _remove_stale(plot_dir, written)
        note = "No generated lengths recorded (log-likelihood tasks only, or cells from before lengths were kept)."
        return [*lines, note, ""], written
    lines += [
        "Generated tokens per response (EOS included; every sample of a sampled study). `bbh` is the "
        "mean over its subtasks (median and p90: —).",
        "",
        *markdown_table(_HEADER, body),
        "",
    ]
    for column in index.columns:
        path = _plot(index, column, plot_dir)
        if path is None:
            continue
        written.append(path)
        lines += [
            f"![accuracy vs length on {column}](plots/{path.name})",
            "",
            f"*Accuracy against mean generated tokens on {column}, one marker per variant and condition; "
            "dashed: the α sweep of v (α = 0 is the baseline under the same condition).*",
            "",
        ]
    _remove_stale(plot_dir, written)
    return lines + _think_lines(index), written


_THINK_HEADER = [
    "variant",
    "condition",
    "task",
    "n",
    "closed",
    "never closed (at budget)",
    "tokens inside",
    "tokens after",
]


def _think_lines(index: ReportIndex) -> list[str]:
    """The think-block table (thinking studies only: cells with a think summary)."""
    body = []
    for column in index.columns:
        for row in index.rows:
            tasks = index.bbh(row).items() if column == BBH_MEAN else [(column, index.get(row, column))]
            body += [
                _think_row(row, task, cell.think) for task, cell in tasks if cell is not None and cell.think
            ]
    if not body:
        return []
    return [
        f"Think blocks (closing tag `{_end_tag(index)}`): a response whose block never closed is scored "
        "wrong; tokens are means per response.",
        "",
        *markdown_table(_THINK_HEADER, body),
        "",
    ]


def _think_row(row: Row, task: str, think: dict[str, Any]) -> list[str]:
    rate = think.get("closed_rate")
    return [
        escape_md(row[0]),
        row[1],
        task,
        str(think["n"]),
        "—" if rate is None else f"{100 * rate:.1f}%",
        f"{think['unclosed']} ({think['unclosed_at_budget']})",
        format_tokens(think.get("mean_tokens_inside")),
        format_tokens(think.get("mean_tokens_outside")),
    ]


def _end_tag(index: ReportIndex) -> str:
    tags = {c.think["end_tag"] for c in index.cells.values() if c.think}
    return ", ".join(sorted(tags))


def _row(index: ReportIndex, row: Row, column: str) -> list[str] | None:
    tokens = row_tokens(index, row, column)
    if tokens is None:
        return None
    cell: CellResult | None = None if column == BBH_MEAN else index.get(row, column)
    n = sum(c.n for c in index.bbh(row).values()) if column == BBH_MEAN else (cell.n if cell else 0)
    median = format_tokens(cell.tokens_median) if cell is not None else "—"
    p90 = format_tokens(cell.tokens_p90) if cell is not None else "—"
    acc = format_pct(row_accuracy(index, row, column))
    return [escape_md(row[0]), row[1], column, str(n), acc, format_tokens(tokens), median, p90]


def _plot(index: ReportIndex, column: str, plot_dir: Path) -> Path | None:
    """The accuracy-vs-length plot of one task, or ``None`` when no row has a length there."""
    points, sweeps = [], {}
    for row in index.rows:
        tokens = row_tokens(index, row, column) if has_cell(index, row, column) else None
        if tokens is None:
            continue
        acc = row_accuracy(index, row, column)
        points.append(plots.LengthPoint(f"{row[0]} / {row[1]}", tokens, acc))
        variant = index.variants[row[0]]
        if variant.kind == "vector" and variant.alpha is not None:
            sweeps.setdefault((variant.vector, row[1]), []).append((variant.alpha, tokens, acc))
    if not points:
        return None
    curves = []
    for (vector, condition), steps in sweeps.items():
        base = (index.base[0], condition)
        base_tokens = row_tokens(index, base, column) if has_cell(index, base, column) else None
        if base_tokens is not None:
            steps = [(0.0, base_tokens, row_accuracy(index, base, column)), *steps]
        if len(steps) < 2:
            continue
        steps.sort(key=lambda s: s[0])
        label = f"α sweep of {vector} · {condition}"
        curves.append(
            plots.LengthCurve(label, [s[0] for s in steps], [s[1] for s in steps], [s[2] for s in steps])
        )
    path = plot_dir / f"length_{re.sub(r'[^A-Za-z0-9._-]+', '_', column)}.png"
    return plots.plot_accuracy_length(points, curves, path, task=column)


def _remove_stale(plot_dir: Path, written: list[Path]) -> None:
    """Drop accuracy-vs-length PNGs of an earlier render that this one did not redraw."""
    keep = {p.resolve() for p in written}
    for path in plot_dir.glob(_PATTERN):
        if path.resolve() not in keep:
            logger.info("removing stale plot %s", path)
            path.unlink(missing_ok=True)
