"""The study report: Markdown tables with paired statistics, plots, ``results.json`` and ``results.csv``.

Everything is computed from the cells alone (the runner caches them; ``rvec report`` re-renders),
so the same cells, resamples and seed give byte-identical tables. Comparisons always pair items
by doc_id (:mod:`rvec.eval.stats`); every difference printed carries its CI and McNemar p.

Layout of ``report.md``:

1. main table: rows = (variant, condition), columns = clean tasks plus ``bbh`` (the unweighted mean
   of the ``bbh:<subtask>`` cells), each cell the accuracy and, except on the baseline row, its
   Δ vs the baseline row [CI] and p; the BBH subtasks get their own table;
2. adversarial table: each perturbed task next to the clean score of the same items;
3. controls table: subtraction, random-control and α-sweep variants vs the baseline, with flips
   and mean generated tokens; with donor rows (``controls.donor_rows``), RL donor vs SFT donor per
   condition and task;
4. named vectors, combinations and extra rows vs the baseline and their reference row, with a
   forest plot (:mod:`rvec.study.report_combine`);
5. scorers compared: where two verdicts on the same responses disagree (GSM8K's regex and
   math-verify under ``reasoning``, :mod:`rvec.study.report_verdicts`); generation length: tokens
   per response of every cell, accuracy against length per task (:mod:`rvec.study.report_lengths`);
6. the atlas of v, KL to the target and response length, the α search (:mod:`rvec.study.report_atlas`,
   :mod:`rvec.study.report_search`);
7. plots, the statistics footnote and the study configuration.

In a sampled study a cell's accuracy is the mean over items of each item's share of correct
samples (avg@n), and its comparisons pair those means: the McNemar p gives way to the paired
sign-flip test (:mod:`rvec.eval.pvalues`), and the text says so.

Modules: :mod:`rvec.study.report_index` (rows, columns, comparisons), :mod:`rvec.study.report_tables`
(Markdown tables), :mod:`rvec.study.report_plots` (plots), :mod:`rvec.study.report_files` (JSON, CSV).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rvec.atomic import write_text
from rvec.eval.stats import StatisticsError
from rvec.study.report_atlas import atlas_section, kl_section
from rvec.study.report_combine import combinations_section
from rvec.study.report_files import results_csv_text, results_json_text
from rvec.study.report_index import BBH_MEAN, CONFIDENCE, Comparer, ReportError, ReportIndex, build_index
from rvec.study.report_lengths import length_section
from rvec.study.report_plots import plots_section
from rvec.study.report_search import SearchView, search_section
from rvec.study.report_tables import (
    adversarial_section,
    bbh_section,
    controls_section,
    donors_section,
    escape_md,
    main_section,
)
from rvec.study.report_verdicts import verdicts_section
from rvec.study.types import CellResult

__all__ = ["BBH_MEAN", "ReportError", "render_report"]

logger = logging.getLogger(__name__)


def render_report(
    cells: list[CellResult],
    *,
    out_dir: Path,
    baseline: str,
    title: str,
    notes: list[str],
    vector_norms: dict | None,
    config_text: str | None,
    resamples: int,
    seed: int,
    atlas: dict[str, Any] | None = None,
    search: SearchView | None = None,
    combine: Mapping[str, Any] | None = None,
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
        vector_norms (dict | None): ``rvec.vector.anatomy.Anatomy.norms_panel()`` for the
            norms plot; ``None`` skips it.
        config_text (str | None): the study configuration, appended verbatim; ``None`` omits it.
        resamples (int): bootstrap resamples per comparison (≥ 10,000 for a real report).
        seed (int): bootstrap seed, shared by every comparison.
        atlas (dict | None): the target's atlas record from ``study.json``
            (:func:`rvec.study.atlas.atlas_record`): adds the atlas section and its heat maps.
        search (SearchView | None): the run's α search (:func:`rvec.study.report_search.load_search`).
        combine (Mapping | None): ``study.json``'s record of named vectors, combinations and extra
            rows (:func:`rvec.study.combine.combine_record`); their section is left out without it.

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
                          vector_norms=None, config_text=None, resamples=10_000, seed=0)
    """
    if resamples < 1:
        raise StatisticsError(f"resamples = {resamples}; pass a positive count, e.g. 10000")
    index = build_index(cells, baseline)
    comparer = Comparer(resamples=resamples, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    lines = [f"# {title}", ""]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    lines += [
        f"Baseline: **{escape_md(index.base[0])}** under `{index.base[1]}`. Δ = accuracy − baseline accuracy, "
        f"in percentage points, on the items both cells share, with its {CONFIDENCE:.0%} CI and "
        "McNemar p.",
        "",
    ]
    for section in (main_section, bbh_section, adversarial_section, controls_section, donors_section):
        lines += section(index, comparer)
    combine_lines, combine_plots = combinations_section(index, comparer, combine, out_dir / "plots")
    length_lines, length_plots = length_section(index, out_dir / "plots")
    lines += [*combine_lines, *verdicts_section(cells), *length_lines]
    research_lines, research_plots, sections = _research_sections(index, comparer, atlas, search, out_dir)
    lines += research_lines
    kept = [*combine_plots, *research_plots]
    plot_lines, written_plots = plots_section(
        index, comparer, out_dir / "plots", vector_norms, keep=[*kept, *length_plots]
    )
    written_plots = [*kept, *written_plots]
    lines += plot_lines
    lines += [
        "## Statistics",
        "",
        f"{CONFIDENCE:.0%} paired bootstrap CI, {resamples} resamples, seed {seed} (percentile interval of "
        "the difference; items resampled with replacement, within each subtask for the BBH mean); "
        "exact McNemar p (two-sided binomial test on the discordant pairs); flips = items that changed "
        "correctness (↑ wrong → right, ↓ right → wrong). Accuracies and differences are in percent.",
        "",
    ]
    if _sampled(cells):
        lines += [_SAMPLED_STATISTICS, ""]
    if config_text is not None:
        # A fence longer than any backtick run inside, so a config holding ``` cannot close it.
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", config_text)), default=0))
        lines += ["## Configuration", "", f"{fence}yaml", config_text.rstrip("\n"), fence, ""]

    report = write_text(out_dir / "report.md", "\n".join(lines))
    results_json = write_text(
        out_dir / "results.json",
        results_json_text(cells, index, comparer, title, notes, config_text, sections=sections) + "\n",
    )
    results_csv = write_text(out_dir / "results.csv", results_csv_text(cells))
    logger.info("report written to %s", report)
    return {
        "report": report,
        "results_json": results_json,
        "results_csv": results_csv,
        "plots": [*length_plots, *written_plots],
    }


def _research_sections(
    index: ReportIndex,
    comparer: Comparer,
    atlas: dict[str, Any] | None,
    search: SearchView | None,
    out_dir: Path,
) -> tuple[list[str], list[Path], dict[str, Any]]:
    """The atlas, the KL/length table and the α search: their lines, plots and ``results.json`` sections."""
    atlas_lines, atlas_plots, atlas_numbers = atlas_section(index, comparer, atlas, out_dir / "plots")
    search_lines, search_plots, search_numbers = (
        search_section(search, comparer, out_dir / "plots") if search is not None else ([], [], None)
    )
    lines = [*atlas_lines, *kl_section(index), *search_lines]
    return lines, [*atlas_plots, *search_plots], {"atlas": atlas_numbers or None, "search": search_numbers}


_SAMPLED_STATISTICS = (
    "Sampled cells (several responses per item): an item's value is the share of its samples that are "
    "correct, a cell's accuracy the mean of those shares (avg@n); differences, CIs and flips (↑ the share "
    "rose, ↓ it fell) pair the shares, and p is the paired sign-flip permutation test of the mean "
    "difference (exact McNemar on 0/1 items) in place of McNemar."
)


def _sampled(cells: list[CellResult]) -> bool:
    """Whether any cell was sampled (several responses per item): its scores carry ``avg@n``."""
    return any(metric.startswith("avg@") for c in cells for metric in c.scores)
