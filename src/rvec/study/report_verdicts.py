"""The report's verdict section: where two scorers of the same responses disagree.

Under the ``reasoning`` preset GSM8K is judged twice — lm-eval's regex (``acc,strict``) and
math-verify (``math_verify,answer``) — and every cell records the responses on which the two differ
(:func:`rvec.eval.verdicts.disagreement`, ``CellResult.extra["disagreement"]``). This section lists,
per cell, both accuracies, how many responses they disagree on and which items, so a reader can see
whether a difference between variants is the model's or the scorer's.
"""

from __future__ import annotations

from collections.abc import Sequence

from rvec.eval.stats import format_pct
from rvec.study.report_tables import escape_md, markdown_table
from rvec.study.types import CellResult

__all__ = ["verdicts_section"]

_SHOWN_IDS = 10


def verdicts_section(cells: Sequence[CellResult]) -> list[str]:
    """The ``## Scorers compared`` section; no lines when no cell compares two verdicts.

    Args:
        cells (Sequence[CellResult]): The study's cells.

    Returns:
        list[str]: Markdown lines.
    """
    compared = [c for c in cells if c.extra.get("disagreement")]
    if not compared:
        return []
    body = []
    for cell in compared:
        summary = cell.extra["disagreement"]
        first, second = summary["metrics"]
        ids = [str(i) for i in summary["doc_ids"]]
        shown = ", ".join(ids[:_SHOWN_IDS]) + (
            f" (+{len(ids) - _SHOWN_IDS})" if len(ids) > _SHOWN_IDS else ""
        )
        body.append(
            [
                escape_md(cell.variant.name),
                cell.condition,
                cell.task,
                f"`{first}` {format_pct(cell.scores.get(first, float('nan')))}",
                f"`{second}` {format_pct(cell.scores.get(second, float('nan')))}",
                f"{summary['disagree']} / {summary['n']}",
                str(summary["first_only"]),
                str(summary["second_only"]),
                shown or "—",
            ]
        )
    header = [
        "variant",
        "condition",
        "task",
        "first",
        "second",
        "disagree",
        "first only",
        "second only",
        "items",
    ]
    return [
        "## Scorers compared",
        "",
        "Two verdicts on the same responses (GSM8K under `reasoning`: lm-eval's regex and math-verify); "
        "*first only* / *second only* count responses only that scorer judged right (every sample of a "
        "sampled study).",
        "",
        *markdown_table(header, body),
        "",
    ]
