"""The report's Markdown tables: main results, BBH subtasks, adversarial and perturbed tasks, controls.

Each cell shows an accuracy and, except on the baseline row, its Δ vs the baseline row [CI] and
McNemar p; † and ‡ mark differences on fewer items or subtasks than the cells hold.
"""

from __future__ import annotations

from collections.abc import Sequence

from rvec.eval.stats import format_delta, format_p, format_pct
from rvec.study.report_index import (
    BBH_MEAN,
    BBH_PREFIX,
    Comparer,
    ReportIndex,
    Row,
    compare_rows,
    has_cell,
    row_accuracy,
    row_tokens,
)

__all__ = [
    "adversarial_section",
    "bbh_section",
    "controls_section",
    "donors_section",
    "escape_md",
    "format_tokens",
    "main_section",
    "markdown_table",
]

_CONTROL_KINDS = ("subtraction", "random-control")

# Table headers, written as they appear in report.md.
_ADVERSARIAL_HEADER = [
    "task",
    "clean task",
    "variant",
    "condition",
    "n",
    "clean",
    "perturbed",
    "perturbed − clean [CI]",
    "p",
    "Δ vs baseline [CI]",
    "p (vs baseline)",
]
_CONTROLS_HEADER = [
    "variant",
    "kind",
    "α",
    "condition",
    "task",
    "accuracy",
    "mean tokens",
    "Δ vs baseline [CI]",
    "p",
    "flips ↑",
    "flips ↓",
]

_FOOTNOTES = {
    "†": "† Δ on the items both cells share, fewer than one of them holds.",
    "‡": "‡ BBH mean over only the subtasks this row has (and, for Δ, over those both rows have).",
}


def main_section(index: ReportIndex, comparer: Comparer) -> list[str]:
    marks: set[str] = set()
    header = ["variant", "condition", *index.columns]
    body = [
        [
            escape_md(row[0]),
            row[1],
            *(_task_cell(index, comparer, row, column, marks) for column in index.columns),
        ]
        for row in index.rows
    ]
    lines = ["## Main results", "", *_table(header, body), ""]
    if BBH_MEAN in index.columns:
        lines.append(
            f"`bbh` = unweighted mean over the {len(index.subtasks)} BBH subtasks (table below); its Δ is "
            "the mean of the per-subtask differences, its CI a bootstrap that resamples items within "
            "each subtask, and its McNemar p pools the discordant pairs of all subtasks."
        )
        lines.append("")
    lines += _footnotes(marks)
    return lines


def bbh_section(index: ReportIndex, comparer: Comparer) -> list[str]:
    if not index.subtasks:
        return []
    marks: set[str] = set()
    header = ["subtask", *(f"{escape_md(name)} / {cond}" for name, cond in index.rows)]
    body = [
        [sub.removeprefix(BBH_PREFIX), *(_task_cell(index, comparer, row, sub, marks) for row in index.rows)]
        for sub in index.subtasks
    ]
    return ["## BIG-Bench Hard subtasks", "", *_table(header, body), "", *_footnotes(marks)]


def _task_cell(index: ReportIndex, comparer: Comparer, row: Row, task: str, marks: set[str]) -> str:
    """Accuracy, and for every row but the baseline's its Δ vs the baseline row [CI] and p."""
    if task == BBH_MEAN:
        cells = index.bbh(row)
        if not cells:
            return "—"
        text = format_pct(sum(c.accuracy for c in cells.values()) / len(cells))
        base_cells = index.bbh(index.base)
        if len(cells) < len(index.subtasks) or (row != index.base and set(cells) != set(base_cells)):
            text += "‡"
            marks.add("‡")
        if row == index.base:
            return text
        comparison = comparer.bbh_mean("vs-baseline", base_cells, cells)
        # † is about items within the shared subtasks; missing subtasks are ‡'s business.
        shared = set(cells) & set(base_cells)
        n_b, n_a = sum(cells[s].n for s in shared), sum(base_cells[s].n for s in shared)
    else:
        cell = index.get(row, task)
        if cell is None:
            return "—"
        text = format_pct(cell.accuracy)
        if row == index.base:
            return text
        base_cell = index.get(index.base, task)
        comparison = comparer.cells("vs-baseline", base_cell, cell) if base_cell is not None else None
        n_b, n_a = cell.n, base_cell.n if base_cell is not None else 0
    if comparison is None:
        return f"{text} (no paired baseline)"
    if comparison.n < max(n_a, n_b):
        text += "†"
        marks.add("†")
    return f"{text} ({format_delta(comparison)}, {_p_text(comparison.mcnemar_p)})"


def adversarial_section(index: ReportIndex, comparer: Comparer) -> list[str]:
    lines = ["## Adversarial and perturbed tasks", ""]
    if not index.perturbed:
        return [*lines, "No perturbed or adversarial task in this study.", ""]
    header = _ADVERSARIAL_HEADER
    body = []
    for task in index.perturbed:
        for row in index.rows:
            cell = index.get(row, task)
            if cell is None:
                continue
            clean = index.get(row, cell.clean_task)
            drop = comparer.cells("perturbed-vs-clean", clean, cell) if clean is not None else None
            base = index.get(index.base, task)
            vs_base = None
            if row != index.base and base is not None:
                vs_base = comparer.cells("perturbed-vs-baseline", base, cell)
            body.append(
                [
                    task,
                    cell.clean_task,
                    escape_md(row[0]),
                    row[1],
                    str(drop.n if drop else cell.n),
                    format_pct(drop.acc_a) if drop else "—",
                    format_pct(drop.acc_b if drop else cell.accuracy),
                    format_delta(drop) if drop else ("no clean cell" if clean is None else "not paired"),
                    format_p(drop.mcnemar_p) if drop else "—",
                    format_delta(vs_base) if vs_base else ("baseline" if row == index.base else "—"),
                    format_p(vs_base.mcnemar_p) if vs_base else "—",
                ]
            )
    return [
        *lines,
        *_table(header, body),
        "",
        "clean and perturbed accuracies are on the same items (paired on doc_id with the clean cell of "
        "the same variant and condition); Δ vs baseline compares the perturbed task with the baseline "
        "row's perturbed task.",
        "",
    ]


def _control_rows(index: ReportIndex) -> list[Row]:
    vectors = [r for r in index.rows if index.variants[r[0]].kind == "vector"]
    alphas = {index.variants[r[0]].alpha for r in vectors} - {None}
    sweep = sorted(vectors, key=lambda r: index.variants[r[0]].alpha or 0.0) if len(alphas) >= 2 else []
    others = [r for kind in _CONTROL_KINDS for r in index.rows if index.variants[r[0]].kind == kind]
    return sweep + others


def controls_section(index: ReportIndex, comparer: Comparer) -> list[str]:
    lines = ["## Controls: subtraction, random vector, α sweep", ""]
    rows = _control_rows(index)
    if not rows:
        return [*lines, "No control variant in this study.", ""]
    header = _CONTROLS_HEADER
    body = []
    for row in rows:
        variant = index.variants[row[0]]
        for column in index.columns:
            if not has_cell(index, row, column):
                continue
            acc = row_accuracy(index, row, column)
            c = compare_rows(index, comparer, "vs-baseline", index.base, row, column)
            alpha = "" if variant.alpha is None else f"{variant.alpha:g}"
            stats = (
                [format_delta(c), format_p(c.mcnemar_p), str(c.flips_up), str(c.flips_down)]
                if c
                else ["no paired baseline", "—", "—", "—"]
            )
            tokens = format_tokens(row_tokens(index, row, column))
            body.append(
                [escape_md(row[0]), variant.kind, alpha, row[1], column, format_pct(acc), tokens, *stats]
            )
    base = f"{escape_md(index.base[0])} / {index.base[1]}"
    return [*lines, f"Every row is compared with the baseline row ({base}).", "", *_table(header, body), ""]


def donors_section(index: ReportIndex, comparer: Comparer) -> list[str]:
    """RL donor vs SFT donor under each condition both were evaluated in: is the pair a reasoning
    pair on these tasks? Empty when the study has no ``SFT donor`` row."""
    conditions = [
        cond for name, cond in index.rows if name == "SFT donor" and ("RL donor", cond) in index.rows
    ]
    if not conditions:
        return []
    header = ["condition", "task", "n", "SFT donor", "RL donor", "RL − SFT [CI]", "p", "flips ↑", "flips ↓"]
    body = []
    for cond in conditions:
        sft, rl = ("SFT donor", cond), ("RL donor", cond)
        for column in index.columns:
            if not (has_cell(index, sft, column) and has_cell(index, rl, column)):
                continue
            c = compare_rows(index, comparer, "rl-vs-sft", sft, rl, column)
            stats = (
                [
                    str(c.n),
                    format_pct(c.acc_a),
                    format_pct(c.acc_b),
                    format_delta(c),
                    format_p(c.mcnemar_p),
                    str(c.flips_up),
                    str(c.flips_down),
                ]
                if c
                else [
                    "—",
                    format_pct(row_accuracy(index, sft, column)),
                    format_pct(row_accuracy(index, rl, column)),
                    "not paired",
                    "—",
                    "—",
                    "—",
                ]
            )
            body.append([cond, column, *stats])
    return [
        "## Donors: RL vs SFT",
        "",
        "The pair is a reasoning pair on a task where RL beats SFT with a CI above 0 (paired on items).",
        "",
        *_table(header, body),
        "",
    ]


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table."""
    return _table(header, body)


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines


def _footnotes(marks: set[str]) -> list[str]:
    return [*(_FOOTNOTES[m] for m in sorted(marks)), *([""] if marks else [])]


def _p_text(p: float) -> str:
    """``p=0.039``, or ``p<0.001`` below the printed precision."""
    text = format_p(p)
    return f"p{text}" if text.startswith("<") else f"p={text}"


def format_tokens(value: float | None) -> str:
    """A token count for tables: one decimal, ``"—"`` when none was recorded."""
    return "—" if value is None else f"{value:.1f}"


def escape_md(text: str) -> str:
    """Escape the pipe so a variant name cannot break a Markdown table."""
    return text.replace("|", r"\|")
