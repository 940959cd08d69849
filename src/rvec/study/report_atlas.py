"""The report's atlas of v and its forgetting proxy.

Atlas (per condition and task): for each part P (a module group within a depth block), Δ_P = the
accuracy of "only P of v" minus the target's (paired on items, 95% CI, McNemar p), its share of the
full effect Δ_P / Δ_full (point estimate), and the leave-one-out drop Δ_full − Δ_all-but-P (the
paired difference of "v" and "all of v but P"). Every p-value of one atlas (two per part) is one
family, adjusted with Holm's step-down method (:func:`rvec.eval.pvalues.holm_adjusted`).

Forgetting proxy: each cell's mean KL(p_target ‖ p_variant) of the next token after the prompt
(:mod:`rvec.study.kl`) beside its accuracy and response length.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from rvec.eval.pvalues import holm_adjusted
from rvec.eval.stats import Comparison, format_delta, format_p, format_pct
from rvec.study.atlas_plots import HeatPanel, plot_atlas
from rvec.study.report_index import (
    Comparer,
    ReportIndex,
    cell_tokens,
    compare_rows,
    has_cell,
    row_accuracy,
)
from rvec.study.report_tables import escape_md

__all__ = ["atlas_section", "kl_section"]

_HEADER = [
    "part",
    "‖v‖² share",
    "only P",
    "Δ_P vs target [CI]",
    "p (Holm)",
    "Δ_P / Δ_full",
    "all but P",
    "drop Δ_full − Δ_all-but-P [CI]",
    "p (Holm)",
]


def atlas_section(
    index: ReportIndex, comparer: Comparer, record: dict[str, Any] | None, plot_dir: Path
) -> tuple[list[str], list[Path], list[dict[str, Any]]]:
    """The atlas's Markdown, its heat maps, and its numbers for ``results.json``.

    Args:
        index (ReportIndex): The report's cells.
        comparer (Comparer): Computes (and records) every paired comparison.
        record (dict | None): The target's atlas from ``study.json`` (:func:`rvec.study.atlas.atlas_record`).
        plot_dir (Path): Where ``atlas_<condition>_<task>.png`` go.
    """
    if not record:
        return [], [], []
    groups = "; ".join(f"{g}: {', '.join(c)}" for g, c in record["groups"].items())
    lines = [
        "## Atlas of v: which parts carry the effect",
        "",
        f"v cut into {record['blocks']} depth blocks × {len(record['groups'])} module groups "
        f"({groups}), at α = {record['alpha']:g}. "
        "Δ_P: only part P of v vs the target; drop: the full v vs v without P (what P adds on top of the "
        "rest). Both paired on items, 95% bootstrap CI; p-values are exact McNemar, Holm-adjusted over "
        "every test of one atlas (two per part), so a * (adjusted p < 0.05) holds for the whole family. "
        f"The parts cover {100 * (1 - record['uncovered_norm_share']):.1f}% of ‖v‖²; the rest "
        "(norms, embeddings, classes in no group) is in no part.",
        "",
    ]
    written, numbers = [], []
    base_name, full_name = record["baseline"], record["full"]
    for condition in _conditions(index, full_name):
        for column in index.columns:
            base, full = (base_name, condition), (full_name, condition)
            if not (has_cell(index, base, column) and has_cell(index, full, column)):
                continue
            table = _atlas_table(index, comparer, record, base, full, column)
            path = plot_dir / f"atlas_{_slug(condition)}_{_slug(column)}.png"
            written.append(_heat_maps(record, table, path, f"{column} · {condition}"))
            numbers.append({"condition": condition, "task": column, **table["json"]})
            lines += [f"### {escape_md(column)} · {condition}", "", table["headline"], ""]
            lines += table["markdown"]
            lines += ["", f"![atlas on {column}](plots/{path.name})", "", _caption(), ""]
    return lines, written, numbers


def _conditions(index: ReportIndex, full_name: str) -> list[str]:
    return [cond for name, cond in index.rows if name == full_name]


def _atlas_table(
    index: ReportIndex,
    comparer: Comparer,
    record: dict[str, Any],
    base: tuple[str, str],
    full: tuple[str, str],
    column: str,
) -> dict[str, Any]:
    """Every comparison of one atlas, the Holm family adjusted, as Markdown rows and JSON."""
    condition = base[1]
    whole = compare_rows(index, comparer, "atlas-full", base, full, column)
    only: list[Comparison | None] = []
    drops: list[Comparison | None] = []
    for part in record["parts"]:
        only.append(_compare(index, comparer, "atlas-part", base, (part["only"], condition), column))
        all_but = (part["all_but"], condition) if part.get("all_but") else None
        drops.append(
            _compare(index, comparer, "atlas-leave-one-out", all_but, full, column) if all_but else None
        )
    raw = [c.mcnemar_p if c is not None else math.nan for c in [*only, *drops]]
    holm = holm_adjusted(raw)
    n = len(record["parts"])
    rows, parts_json = [], []
    for i, part in enumerate(record["parts"]):
        o, d = only[i], drops[i]
        share = o.diff / whole.diff if o is not None and whole is not None and whole.diff != 0 else math.nan
        rows.append(
            [
                escape_md(part["label"]),
                f"{100 * part['norm_share']:.1f}%",
                format_pct(o.acc_b) if o else "—",
                format_delta(o) if o else "—",
                f"{format_p(o.mcnemar_p)} ({format_p(holm[i])})" if o else "—",
                f"{share:+.2f}" if not math.isnan(share) else "—",
                format_pct(d.acc_a) if d else "—",
                format_delta(d) if d else "—",
                f"{format_p(d.mcnemar_p)} ({format_p(holm[n + i])})" if d else "—",
            ]
        )
        parts_json.append(
            {
                **{k: part[k] for k in ("label", "group", "block", "layers", "norm_share")},
                "only": o.to_dict() if o else None,
                "only_p_holm": _finite(holm[i]),
                "share_of_full": _finite(share),
                "leave_one_out": d.to_dict() if d else None,
                "leave_one_out_p_holm": _finite(holm[n + i]),
            }
        )
    headline = (
        f"Full v: {format_pct(row_accuracy(index, full, column))}% vs target {format_pct(row_accuracy(index, base, column))}%, "
        f"Δ_full = {format_delta(whole)} pp, p = {format_p(whole.mcnemar_p)}."
        if whole is not None
        else "Full v and the target share no item."
    )
    markdown = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    markdown += ["| " + " | ".join(r) + " |" for r in rows]
    return {
        "headline": headline,
        "markdown": markdown,
        "only": only,
        "drops": drops,
        "holm": holm,
        "json": {"full": whole.to_dict() if whole else None, "holm_family": 2 * n, "parts": parts_json},
    }


def _compare(
    index: ReportIndex,
    comparer: Comparer,
    kind: str,
    a: tuple[str, str] | None,
    b: tuple[str, str],
    column: str,
) -> Comparison | None:
    if a is None or not (has_cell(index, a, column) and has_cell(index, b, column)):
        return None
    return compare_rows(index, comparer, kind, a, b, column)


def _heat_maps(record: dict[str, Any], table: dict[str, Any], path: Path, title: str) -> Path:
    groups = list(record["groups"])
    blocks = sorted({p["block"] for p in record["parts"]})
    labels = []
    for b in blocks:
        layers = next(p["layers"] for p in record["parts"] if p["block"] == b)
        labels.append(f"L{layers[0]}–{layers[-1]}")
    n = len(record["parts"])
    panels = []
    for title_, comparisons, offset in (
        ("only P: Δ vs target", table["only"], 0),
        ("drop: Δ_full − Δ_all-but-P", table["drops"], n),
    ):
        grid: dict[str, list[list[float]]] = {
            k: [[math.nan] * len(blocks) for _ in groups] for k in ("v", "lo", "hi")
        }
        sig = [[False] * len(blocks) for _ in groups]
        for i, part in enumerate(record["parts"]):
            c = comparisons[i]
            if c is None:
                continue
            g, b = groups.index(part["group"]), blocks.index(part["block"])
            grid["v"][g][b], grid["lo"][g][b], grid["hi"][g][b] = (
                100 * c.diff,
                100 * c.ci_low,
                100 * c.ci_high,
            )
            sig[g][b] = table["holm"][offset + i] < 0.05
        if any(c is not None for c in comparisons):
            panels.append(HeatPanel(title_, grid["v"], grid["lo"], grid["hi"], sig))
    return plot_atlas(groups, labels, panels, path, title=title)


def _caption() -> str:
    return (
        "*Left: Δ of only part P of v vs the target; right: the drop when P is left out of v. Percentage "
        "points with the 95% paired bootstrap CI; * = Holm-adjusted McNemar p < 0.05 over the atlas.*"
    )


def kl_section(index: ReportIndex) -> list[str]:
    """Every cell's KL(p_target ‖ p_variant) and response length (mean, median tokens) beside its accuracy."""
    rows = []
    for row in index.rows:
        for column in index.columns:
            cell = index.get(row, column)
            if cell is None:
                continue
            kl = cell.extra.get("kl") or {}
            tokens = cell_tokens(cell)
            rows.append(
                [
                    escape_md(row[0]),
                    row[1],
                    escape_md(column),
                    format_pct(cell.accuracy),
                    _number(kl.get("mean")),
                    _number(kl.get("median")),
                    f"{tokens['mean']:.1f}" if tokens else "—",
                    f"{tokens['median']:g}" if tokens else "—",
                ]
            )
    if not rows or not any(r[4] != "—" or r[6] != "—" for r in rows):
        return []
    header = [
        "variant",
        "condition",
        "task",
        "accuracy",
        "KL mean",
        "KL median",
        "tokens mean",
        "tokens median",
    ]
    return [
        "## Beside accuracy: KL to the target and response length",
        "",
        "KL(p_target ‖ p_variant) in nats of the next-token distribution right after each prompt (one "
        "position per item, no labels needed; docs/atlas.md), averaged over the cell's items: a variant "
        "that moves the distribution a lot while gaining nothing is forgetting. Tokens: the length of "
        "each response in tokens, mean and median over the cell's items (log-likelihood tasks generate "
        "none). Cells computed before these were measured show —.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
    ]


def _number(value: Any) -> str:
    """A KL in nats, three significant digits (tiny models move it by 1e-6)."""
    return f"{value:.3g}" if isinstance(value, (int, float)) else "—"


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
