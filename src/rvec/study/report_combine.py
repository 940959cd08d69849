"""The report's combinations section: named vectors, their merges and the study's extra rows, each
compared on the same items with the baseline and with a reference row, plus a forest plot.

The reference of a named vector or a combination is the study's ``v`` at α = 1 on the same model
(``target + 1·v``: does the combination beat the vector it started from?); the reference of a row
of ``rows:`` is the row its ``vs`` names. How each combination was made (method, inputs, every
resolved parameter, seed) comes from ``study.json``'s ``combine`` record
(:func:`rvec.study.combine.combine_record`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rvec.eval.stats import Comparison, format_delta, format_p, format_pct
from rvec.plotting import new_figure, save_png
from rvec.study.report_index import Comparer, ReportIndex, Row, compare_rows, has_cell, row_accuracy

__all__ = ["combinations_section"]

_HEADER = [
    "variant",
    "condition",
    "task",
    "n",
    "accuracy",
    "Δ vs baseline [CI]",
    "p (vs baseline)",
    "compared with",
    "its accuracy",
    "Δ vs it [CI]",
    "p (vs it)",
    "flips ↑",
    "flips ↓",
]
PLOT = "combinations.png"


def combinations_section(
    index: ReportIndex, comparer: Comparer, record: Mapping[str, Any] | None, plot_dir: Path
) -> tuple[list[str], list[Path]]:
    """The Markdown lines of the section and the plot it wrote (none without combinations or rows).

    Args:
        index: the report's cells.
        comparer: computes and records each paired comparison.
        record: ``study.json``'s ``combine`` record, or ``None`` (an older run, or none in the study).
        plot_dir: where the forest plot goes.
    """
    if not record:
        return [], []
    subjects = _subjects(index, record)
    if not subjects:
        return [], []
    lines = [
        "## Vectors and combinations",
        "",
        "Each named vector and each combination is added to the target in memory at α = 1 (no merged "
        "file is written) and compared on the same items with the baseline and with the reference: "
        "the study's v at α = 1 for vectors and combinations, the row `vs` names for the extra rows.",
        "",
        *_made_table(record),
    ]
    body, forest = [], []
    for row, reference in subjects:
        for column in index.columns:
            if not has_cell(index, row, column):
                continue
            base = compare_rows(index, comparer, "vs-baseline", index.base, row, column)
            ref = compare_rows(index, comparer, "vs-reference", reference, row, column) if reference else None
            body.append(_result_row(index, row, column, base, reference, ref))
            if base is not None:
                forest.append((f"{row[0]} · {column}" if len(index.columns) > 1 else row[0], base))
    lines += ["| " + " | ".join(_HEADER) + " |", "|" + "|".join("---" for _ in _HEADER) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    lines.append("")
    if not forest:
        return lines, []
    base_name = index.base[0].replace("|", r"\|")
    path = _plot_forest(forest, plot_dir / PLOT, baseline=base_name)
    lines += [
        f"![Δ vs baseline of vectors and combinations](plots/{PLOT})",
        "",
        f"*Δ vs {base_name} (accuracy points) with its 95% paired bootstrap CI, per row and task.*",
        "",
    ]
    return lines, [path]


def _subjects(index: ReportIndex, record: Mapping[str, Any]) -> list[tuple[Row, Row | None]]:
    """The rows of the section, each with its reference row (``None``: only vs the baseline)."""
    named = set(record.get("vectors", {}))
    combos = set(record.get("combinations", {}))
    extra = dict(record.get("rows", {}))
    out: list[tuple[Row, Row | None]] = []
    for row in index.rows:
        variant = index.variants[row[0]]
        if variant.kind in ("vector", "combination") and variant.vector in named | combos:
            out.append((row, _v_row(index, variant.model, row[1])))
        elif variant.kind == "other" and row[0] in extra:
            vs = extra[row[0]]
            out.append((row, (vs, row[1]) if vs and (vs, row[1]) in index.rows else None))
    return out


def _v_row(index: ReportIndex, model: str, condition: str) -> Row | None:
    """``model + 1·v`` under ``condition`` (else ``v`` at the positive α nearest 1), if evaluated."""
    found = [
        (abs((v.alpha or 0.0) - 1.0), r)
        for r in index.rows
        if r[1] == condition
        and (v := index.variants[r[0]]).kind == "vector"
        and v.vector == "v"
        and v.model == model
        and (v.alpha or 0.0) > 0
    ]
    return min(found)[1] if found else None


def _made_table(record: Mapping[str, Any]) -> list[str]:
    combos = record.get("combinations", {})
    if not combos:
        return []
    lines = ["| combination | method | inputs | parameters | seed |", "|---|---|---|---|---|"]
    for entry in combos.values():
        lines.append(
            f"| {entry['shown']} | [{entry['method']}]({entry['reference_url']}) | "
            f"{', '.join(entry['inputs'])} | {_parameters(entry)} | {entry['seed']} |"
        )
    return [*lines, ""]


def _parameters(entry: Mapping[str, Any]) -> str:
    """``weight 1, 1; density 0.5, 0.5; normalize true``: per-vector values in input order, then shared."""
    rows: Sequence[Mapping[str, Any]] = entry.get("per_vector", [])
    names = list(dict.fromkeys(k for r in rows for k in r))
    parts = [f"{n} {', '.join(_value(r[n]) for r in rows)}" for n in names]
    parts += [f"{n} {_value(v)}" for n, v in entry.get("parameters", {}).items()]
    return "; ".join(parts) or "—"


def _value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}"


def _result_row(
    index: ReportIndex,
    row: Row,
    column: str,
    base: Comparison | None,
    reference: Row | None,
    ref: Comparison | None,
) -> list[str]:
    acc = format_pct(row_accuracy(index, row, column))
    vs_base = [format_delta(base), format_p(base.mcnemar_p)] if base else ["not paired", "—"]
    if reference is None:
        vs_ref = ["—", "—", "—", "—", "—", "—"]
    elif ref is None:
        vs_ref = [reference[0], "—", "not paired", "—", "—", "—"]
    else:
        vs_ref = [
            reference[0],
            format_pct(ref.acc_a),
            format_delta(ref),
            format_p(ref.mcnemar_p),
            str(ref.flips_up),
            str(ref.flips_down),
        ]
    n = str(base.n) if base else "—"
    cells = [row[0], row[1], column, n, acc, *vs_base, *vs_ref]
    return [c.replace("|", r"\|") for c in cells]


def _plot_forest(entries: Sequence[tuple[str, Comparison]], path: Path, *, baseline: str) -> Path:
    """Δ vs the baseline with its CI, one line per (row, task), top to bottom in report order."""
    fig, (ax,) = new_figure(6.4, 0.9 + 0.32 * len(entries))
    ys = list(range(len(entries)))[::-1]
    for y, (_, c) in zip(ys, entries, strict=True):
        ax.plot([100 * c.ci_low, 100 * c.ci_high], [y, y], color="tab:blue", linewidth=2)
        ax.plot([100 * c.diff], [y], marker="o", color="tab:blue")
    ax.axvline(0.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yticks(ys, [label for label, _ in entries], fontsize=8)
    ax.set_xlabel(f"Δ accuracy vs {baseline} (points, 95% CI)")
    return save_png(fig, path)
