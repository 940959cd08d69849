"""The study report: Markdown tables with paired statistics, plots, ``results.json`` and ``results.csv``.

Everything is computed from the cells alone (the runner caches them; ``rvec report`` re-renders),
so the same cells, resamples and seed give byte-identical tables. Comparisons always pair items
by doc_id (:mod:`rvec.study.stats`); every difference printed carries its CI and McNemar p.

Layout of ``report.md``:

1. main table: rows = (variant, condition), columns = clean tasks plus ``bbh`` (the unweighted mean
   of the ``bbh:<subtask>`` cells), each cell the accuracy and, except on the baseline row, its
   Δ vs the baseline row [CI] and p; the BBH subtasks get their own table;
2. adversarial table: each perturbed task next to the clean score of the same items;
3. controls table: subtraction, random-control and α-sweep variants vs the baseline, with flips;
4. plots, the statistics footnote and the study configuration.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rvec.atomic import write_text
from rvec.errors import RvecError
from rvec.study import plots
from rvec.study.stats import (
    Comparison,
    StatisticsError,
    accuracy_interval,
    format_delta,
    format_p,
    format_pct,
    paired_comparison,
    stratified_comparison,
)
from rvec.study.types import CellResult, Variant

__all__ = ["BBH_MEAN", "ReportError", "render_report"]

logger = logging.getLogger(__name__)

BBH_PREFIX = "bbh:"
BBH_MEAN = "bbh"
"""Main-table column: the unweighted mean over the ``bbh:<subtask>`` cells of a row."""

_BASELINE_CONDITION = "plain"
_CONTROL_KINDS = ("subtraction", "random-control")
_CONFIDENCE = 0.95
_PLOT_PATTERNS = ("alpha_sweep_*.png", "conditions.png", "vector_norms.png")
_CSV_COLUMNS = (
    "variant",
    "kind",
    "alpha",
    "model",
    "condition",
    "task",
    "clean_task",
    "metric",
    "value",
    "n",
)

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
    "Δ vs baseline [CI]",
    "p",
    "flips ↑",
    "flips ↓",
]

_FOOTNOTES = {
    "†": "† Δ on the items both cells share, fewer than one of them holds.",
    "‡": "‡ BBH mean over only the subtasks this row has (and, for Δ, over those both rows have).",
}

Row = tuple[str, str]
"""A report row: (variant name, condition)."""


class ReportError(RvecError, ValueError):
    """The cells cannot make a report: none, no baseline cell, or clashing cells.

    Example: ``baseline variant 'target' has no cell; variants: RL donor, target + 1·v; pass the baseline's name``
    """


@dataclass
class _Index:
    """The cells arranged for lookup: rows, columns and the baseline row."""

    cells: dict[tuple[str, str, str], CellResult]
    variants: dict[str, Variant]
    rows: list[Row]  # baseline row first, then in order of first appearance
    base: Row
    columns: list[str]  # clean tasks, with BBH_MEAN where the first BBH subtask appeared
    subtasks: list[str]  # clean ``bbh:<sub>`` tasks, sorted
    perturbed: list[str]  # tasks whose clean_task differs, in order of first appearance

    def get(self, row: Row, task: str) -> CellResult | None:
        return self.cells.get((row[0], row[1], task))

    def bbh(self, row: Row) -> dict[str, CellResult]:
        return {s: c for s in self.subtasks if (c := self.get(row, s)) is not None}


class _Comparer:
    """Computes each comparison once and records every one for ``results.json``."""

    def __init__(self, *, resamples: int, seed: int) -> None:
        self.resamples = resamples
        self.seed = seed
        self.records: list[dict[str, Any]] = []
        self._cache: dict[tuple[Any, ...], Comparison | None] = {}

    def cells(self, kind: str, a: CellResult, b: CellResult) -> Comparison | None:
        """B vs A paired on doc_id; ``None`` (recorded with the reason) when they share no item."""
        key = (_ref_key(a), _ref_key(b))
        if key not in self._cache:
            self._cache[key] = self._run(
                kind,
                b.task,
                _ref(a),
                _ref(b),
                lambda: paired_comparison(a.per_item, b.per_item, **self._kw()),
            )
        return self._cache[key]

    def bbh_mean(
        self, kind: str, a: Mapping[str, CellResult], b: Mapping[str, CellResult]
    ) -> Comparison | None:
        """Unweighted BBH mean of B vs A over the subtasks both have (items resampled per subtask)."""
        shared = sorted(set(a) & set(b))
        if not shared:
            return None
        first_a, first_b = a[shared[0]], b[shared[0]]
        key = ("bbh", tuple(_ref_key(a[s]) for s in shared), tuple(_ref_key(b[s]) for s in shared))
        if key not in self._cache:
            ref_a = {**_ref(first_a), "task": BBH_MEAN, "subtasks": shared}
            ref_b = {**_ref(first_b), "task": BBH_MEAN, "subtasks": shared}
            strata = {s: (a[s].per_item, b[s].per_item) for s in shared}
            self._cache[key] = self._run(
                kind, BBH_MEAN, ref_a, ref_b, lambda: stratified_comparison(strata, **self._kw())
            )
        return self._cache[key]

    def _kw(self) -> dict[str, Any]:
        return {"resamples": self.resamples, "seed": self.seed, "confidence": _CONFIDENCE}

    def _run(
        self, kind: str, task: str, a: dict[str, Any], b: dict[str, Any], compute: Callable[[], Comparison]
    ) -> Comparison | None:
        record: dict[str, Any] = {"kind": kind, "task": task, "a": a, "b": b}
        try:
            result: Comparison | None = compute()
        except StatisticsError as err:
            # A pair without shared items is reported as "not paired", never silently dropped.
            logger.warning("%s: %s vs %s not compared: %s", task, a, b, err)
            result = None
            record["problem"] = str(err)
        record["comparison"] = result.to_dict() if result is not None else None
        self.records.append(record)
        return result


def render_report(
    cells: list[CellResult],
    *,
    out_dir: Path,
    baseline: str,
    title: str,
    notes: list[str],
    vector_stats: dict | None,
    config_text: str | None,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Write ``report.md``, ``results.json``, ``results.csv`` and ``plots/*.png`` into ``out_dir``.

    Args:
        cells (list[CellResult]): every evaluated cell of the study.
        out_dir (Path): the run folder; files are replaced atomically, other files are left alone
            (stale PNGs of an earlier render under ``plots/`` are removed).
        baseline (str): name of the baseline variant; its row under ``plain`` (else its first
            condition) is the reference of every Δ.
        title (str): the report's heading.
        notes (list[str]): bullet points under the title (e.g. "the demo uses a random control").
        vector_stats (dict | None): ``rvec.vector.stats.vector_stats(...).to_dict()`` for the
            norms plot; ``None`` skips it.
        config_text (str | None): the study configuration, appended verbatim; ``None`` omits it.
        resamples (int): bootstrap resamples per comparison (≥ 10,000 for a real report).
        seed (int): bootstrap seed, shared by every comparison.

    Returns:
        dict[str, Any]: ``{"report": Path, "results_json": Path, "results_csv": Path,
        "plots": list[Path]}``, the files written.

    Raises:
        ReportError: no cells, the baseline variant has no cell, one name for two different
            variants, or two cells for one (variant, condition, task).
        StatisticsError: ``resamples < 1``.

    Example:
        Re-render a run folder from its cached cells (``load_cells`` stands for the runner's loader)::

            render_report(load_cells(run), out_dir=run, baseline="target", title="Demo", notes=[],
                          vector_stats=None, config_text=None, resamples=10_000, seed=0)
    """
    if resamples < 1:
        raise StatisticsError(f"resamples = {resamples}; pass a positive count, e.g. 10000")
    index = _index(cells, baseline)
    comparer = _Comparer(resamples=resamples, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    lines = [f"# {title}", ""]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    lines += [
        f"Baseline: **{_md(index.base[0])}** under `{index.base[1]}`. Δ = accuracy − baseline accuracy, "
        f"in percentage points, on the items both cells share, with its {_CONFIDENCE:.0%} CI and "
        "McNemar p.",
        "",
    ]
    lines += _main_section(index, comparer)
    lines += _bbh_section(index, comparer)
    lines += _adversarial_section(index, comparer)
    lines += _controls_section(index, comparer)
    plot_lines, written_plots = _plots_section(index, comparer, out_dir / "plots", vector_stats)
    lines += plot_lines
    lines += [
        "## Statistics",
        "",
        f"{_CONFIDENCE:.0%} paired bootstrap CI, {resamples} resamples, seed {seed} (percentile interval of "
        "the difference; items resampled with replacement, within each subtask for the BBH mean); "
        "exact McNemar p (two-sided binomial test on the discordant pairs); flips = items that changed "
        "correctness (↑ wrong → right, ↓ right → wrong). Accuracies and differences are in percent.",
        "",
    ]
    if config_text is not None:
        # A fence longer than any backtick run inside, so a config holding ``` cannot close it.
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", config_text)), default=0))
        lines += ["## Configuration", "", f"{fence}yaml", config_text.rstrip("\n"), fence, ""]

    report = write_text(out_dir / "report.md", "\n".join(lines))
    results_json = write_text(
        out_dir / "results.json", _results_json(cells, index, comparer, title, notes, config_text) + "\n"
    )
    results_csv = write_text(out_dir / "results.csv", _results_csv(cells))
    logger.info("report written to %s", report)
    return {
        "report": report,
        "results_json": results_json,
        "results_csv": results_csv,
        "plots": written_plots,
    }


# ---------------------------------------------------------------------------------------- index
def _index(cells: Sequence[CellResult], baseline: str) -> _Index:
    if not cells:
        raise ReportError("no cells to report; run the study first (`rvec run study.yaml`)")
    by_key: dict[tuple[str, str, str], CellResult] = {}
    variants: dict[str, Variant] = {}
    problems: list[str] = []
    for cell in cells:
        name = cell.variant.name
        if variants.setdefault(name, cell.variant) != cell.variant:
            problems.append(f"variant name {name!r} names two variants ({variants[name]} and {cell.variant})")
        key = (name, cell.condition, cell.task)
        if key in by_key:
            problems.append(
                f"two cells for variant {name!r}, condition {cell.condition!r}, task {cell.task!r}"
            )
        by_key[key] = cell
    if problems:
        raise ReportError("cannot report these cells: " + "; ".join(sorted(set(problems))))
    if baseline not in variants:
        raise ReportError(
            f"baseline variant {baseline!r} has no cell; variants: {', '.join(sorted(variants))}; "
            "pass the baseline's name"
        )

    rows = list(dict.fromkeys((c.variant.name, c.condition) for c in cells))
    base_conditions = [cond for name, cond in rows if name == baseline]
    base = (baseline, _BASELINE_CONDITION if _BASELINE_CONDITION in base_conditions else base_conditions[0])
    rows = [base] + [r for r in rows if r != base]

    clean = list(dict.fromkeys(c.task for c in cells if c.task == c.clean_task))
    columns = list(dict.fromkeys(BBH_MEAN if t.startswith(BBH_PREFIX) else t for t in clean))
    if BBH_MEAN in clean:
        # A literal "bbh" cell would collide with the computed mean column.
        raise ReportError(
            "a cell has task 'bbh', which the report reserves for the mean of the bbh:<subtask> cells; "
            "evaluate the subtasks (task keys bbh:<subtask>) instead"
        )
    return _Index(
        cells=by_key,
        variants=variants,
        rows=rows,
        base=base,
        columns=columns,
        subtasks=sorted(t for t in clean if t.startswith(BBH_PREFIX)),
        perturbed=list(dict.fromkeys(c.task for c in cells if c.task != c.clean_task)),
    )


def _ref(cell: CellResult) -> dict[str, str]:
    return {"variant": cell.variant.name, "condition": cell.condition, "task": cell.task}


def _ref_key(cell: CellResult) -> tuple[str, str, str]:
    return (cell.variant.name, cell.condition, cell.task)


# ------------------------------------------------------------------------------------- sections
def _main_section(index: _Index, comparer: _Comparer) -> list[str]:
    marks: set[str] = set()
    header = ["variant", "condition", *index.columns]
    body = [
        [_md(row[0]), row[1], *(_task_cell(index, comparer, row, column, marks) for column in index.columns)]
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


def _bbh_section(index: _Index, comparer: _Comparer) -> list[str]:
    if not index.subtasks:
        return []
    marks: set[str] = set()
    header = ["subtask", *(f"{_md(name)} / {cond}" for name, cond in index.rows)]
    body = [
        [sub.removeprefix(BBH_PREFIX), *(_task_cell(index, comparer, row, sub, marks) for row in index.rows)]
        for sub in index.subtasks
    ]
    return ["## BIG-Bench Hard subtasks", "", *_table(header, body), "", *_footnotes(marks)]


def _task_cell(index: _Index, comparer: _Comparer, row: Row, task: str, marks: set[str]) -> str:
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


def _adversarial_section(index: _Index, comparer: _Comparer) -> list[str]:
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
                    _md(row[0]),
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


def _control_rows(index: _Index) -> list[Row]:
    vectors = [r for r in index.rows if index.variants[r[0]].kind == "vector"]
    alphas = {index.variants[r[0]].alpha for r in vectors} - {None}
    sweep = sorted(vectors, key=lambda r: index.variants[r[0]].alpha or 0.0) if len(alphas) >= 2 else []
    others = [r for kind in _CONTROL_KINDS for r in index.rows if index.variants[r[0]].kind == kind]
    return sweep + others


def _controls_section(index: _Index, comparer: _Comparer) -> list[str]:
    lines = ["## Controls: subtraction, random vector, α sweep", ""]
    rows = _control_rows(index)
    if not rows:
        return [*lines, "No control variant in this study.", ""]
    header = _CONTROLS_HEADER
    body = []
    for row in rows:
        variant = index.variants[row[0]]
        for column in index.columns:
            if not _has(index, row, column):
                continue
            acc = _accuracy(index, row, column)
            c = _compare(index, comparer, "vs-baseline", index.base, row, column)
            alpha = "" if variant.alpha is None else f"{variant.alpha:g}"
            stats = (
                [format_delta(c), format_p(c.mcnemar_p), str(c.flips_up), str(c.flips_down)]
                if c
                else ["no paired baseline", "—", "—", "—"]
            )
            body.append([_md(row[0]), variant.kind, alpha, row[1], column, format_pct(acc), *stats])
    base = f"{_md(index.base[0])} / {index.base[1]}"
    return [*lines, f"Every row is compared with the baseline row ({base}).", "", *_table(header, body), ""]


# ---------------------------------------------------------------------------------------- plots
def _plots_section(
    index: _Index, comparer: _Comparer, plot_dir: Path, vector_stats: Mapping[str, Any] | None
) -> tuple[list[str], list[Path]]:
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
    if vector_stats is not None:
        written.append(plots.plot_vector_norms(vector_stats, plot_dir / "vector_norms.png"))
        lines += [
            "![per-layer vector norms](plots/vector_norms.png)",
            "",
            "*Per-layer ‖v‖, total and by module.*",
            "",
        ]
    _remove_stale_plots(plot_dir, written)
    return lines, written


def _sweep_series(
    index: _Index, comparer: _Comparer, column: str, skipped: list[str]
) -> list[plots.SweepSeries]:
    """One series per (model, vector, condition) with ≥ 2 α values on ``column``, α = 0 from the baseline."""
    groups: dict[tuple[str, str | None, str], list[Row]] = {}
    for row in index.rows:
        variant = index.variants[row[0]]
        if variant.kind == "vector" and variant.alpha is not None and _has(index, row, column):
            groups.setdefault((variant.model, variant.vector, row[1]), []).append(row)
    series = []
    for (_, vector, condition), rows in groups.items():
        if len({index.variants[r[0]].alpha for r in rows}) < 2:
            continue
        base_row = (index.base[0], condition)
        if not _has(index, base_row, column):
            skipped.append(
                f"α sweep on {column} under `{condition}` not plotted: no baseline cell under that condition."
            )
            continue
        base_acc = _accuracy(index, base_row, column)
        points = [(0.0, base_acc, base_acc, base_acc)]
        for row in sorted(rows, key=lambda r: index.variants[r[0]].alpha or 0.0):
            c = _compare(index, comparer, "alpha-sweep-vs-alpha0", base_row, row, column)
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


def _condition_bars(index: _Index, comparer: _Comparer) -> tuple[list[str], list[plots.Bars]]:
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


def _has(index: _Index, row: Row, column: str) -> bool:
    return bool(index.bbh(row)) if column == BBH_MEAN else index.get(row, column) is not None


def _accuracy(index: _Index, row: Row, column: str) -> float:
    if column == BBH_MEAN:
        cells = index.bbh(row)
        return sum(c.accuracy for c in cells.values()) / len(cells)
    cell = index.get(row, column)
    return cell.accuracy if cell is not None else math.nan


def _compare(index: _Index, comparer: _Comparer, kind: str, a: Row, b: Row, column: str) -> Comparison | None:
    if column == BBH_MEAN:
        return comparer.bbh_mean(kind, index.bbh(a), index.bbh(b))
    cell_a, cell_b = index.get(a, column), index.get(b, column)
    if cell_a is None or cell_b is None:
        return None
    return comparer.cells(kind, cell_a, cell_b)


def _remove_stale_plots(plot_dir: Path, written: list[Path]) -> None:
    """Drop PNGs of an earlier render that this one did not redraw, so report and folder agree."""
    keep = {p.resolve() for p in written}
    for pattern in _PLOT_PATTERNS:
        for path in plot_dir.glob(pattern):
            if path.resolve() not in keep:
                logger.info("removing stale plot %s", path)
                path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ json, csv, text
def _results_json(
    cells: Sequence[CellResult],
    index: _Index,
    comparer: _Comparer,
    title: str,
    notes: list[str],
    config_text: str | None,
) -> str:
    payload = {
        "title": title,
        "notes": list(notes),
        "baseline": {"variant": index.base[0], "condition": index.base[1]},
        "statistics": {
            "confidence": _CONFIDENCE,
            "resamples": comparer.resamples,
            "seed": comparer.seed,
            "interval": "paired bootstrap, percentile",
            "test": "exact McNemar (two-sided binomial on discordant pairs)",
            "bbh_mean": "unweighted mean over subtasks; bootstrap within subtasks; McNemar pooled",
        },
        "cells": [_cell_json(c) for c in cells],
        "comparisons": comparer.records,
        "config": config_text,
    }
    return json.dumps(_finite(payload), indent=2, ensure_ascii=False, allow_nan=False)


def _cell_json(cell: CellResult) -> dict[str, Any]:
    return {
        "variant": asdict(cell.variant),
        "condition": cell.condition,
        "task": cell.task,
        "clean_task": cell.clean_task,
        "primary": cell.primary,
        "scores": dict(cell.scores),
        "n": cell.n,
        "accuracy": cell.accuracy,
        "seconds": cell.seconds,
        "generated_tokens": cell.generated_tokens,
        "cache_key": cell.cache_key,
    }


def _finite(value: Any) -> Any:
    """NaN/inf (an empty cell's accuracy) become ``null``: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _results_csv(cells: Sequence[CellResult]) -> str:
    """One row per cell and metric; the primary metric is added from per_item when scores lacks it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for cell in cells:
        v = cell.variant
        metrics = dict(cell.scores)
        metrics.setdefault(cell.primary, cell.accuracy)
        for metric, value in metrics.items():
            alpha = "" if v.alpha is None else repr(v.alpha)
            row = [v.name, v.kind, alpha, v.model, cell.condition, cell.task, cell.clean_task, metric]
            writer.writerow([*row, repr(float(value)), cell.n])
    return buffer.getvalue()


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


def _md(text: str) -> str:
    """Escape the pipe so a variant name cannot break a Markdown table."""
    return text.replace("|", r"\|")


def _slug(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", task)
