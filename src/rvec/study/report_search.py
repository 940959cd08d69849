"""The report's α search: the setup and the split, the winner checked once on test against the
target and against α = 1 (paired, 95% CI), the dev/test gap, every trial, and one figure (trial
history, chosen configuration, dev vs test), all read from ``RUN/search/search.json`` and the
cached cells it names (:mod:`rvec.study.search`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rvec.eval.stats import Comparison, format_delta, format_p, format_pct
from rvec.study.atlas_plots import SearchFigure, plot_search
from rvec.study.cells import load_cell
from rvec.study.report_index import Comparer, cell_tokens
from rvec.study.report_tables import escape_md
from rvec.study.search import SEARCH_FILE
from rvec.study.types import CellResult

__all__ = ["SearchView", "load_search", "search_section"]

_ROLES = {"target": "target", "alpha1": "α = 1", "best": "best"}


@dataclass
class SearchView:
    """A finished search: its record and its cells, each named by its role and split."""

    record: dict[str, Any]
    trials: list[CellResult | None]
    dev_target: CellResult | None
    tests: dict[str, CellResult | None]

    @property
    def test_cells(self) -> list[CellResult]:
        """The target, α = 1 and best cells on test that exist (target first)."""
        return [c for c in self.tests.values() if c is not None]


def load_search(run_dir: Path) -> SearchView | None:
    """The search of a run folder, or ``None`` when it has none (or it never finished)."""
    file = run_dir / SEARCH_FILE
    if not file.is_file():
        return None
    record = json.loads(file.read_text())
    cells = run_dir / "cells"
    best = record["best"]["number"]

    def named(key: str, name: str, kind: str) -> CellResult | None:
        cell = load_cell(cells, key)
        # One state can be two roles (the best trial may be α = 1): cached once, named per role here.
        return (
            replace(cell, variant=replace(cell.variant, name=name, kind=kind)) if cell is not None else None
        )  # type: ignore[arg-type]

    trials = [named(t["key"], f"trial {t['number']} (dev)", t["variant"]["kind"]) for t in record["trials"]]
    tests = {
        role: named(
            key, f"best, trial {best} (test)" if role == "best" else f"{_ROLES[role]} (test)", _kind(role)
        )
        for role, key in record["test"].items()
    }
    return SearchView(record, trials, named(record["dev"]["target"], "target (dev)", "baseline"), tests)


def _kind(role: str) -> str:
    return {"target": "baseline", "alpha1": "vector"}.get(role, "profile")


def search_section(
    view: SearchView, comparer: Comparer, plot_dir: Path
) -> tuple[list[str], list[Path], dict[str, Any]]:
    """The search's Markdown, its figure, and its numbers for ``results.json``."""
    r = view.record
    spec = r["spec"]
    params = "one global α" if spec["profile"] == 0 else f"one α per depth block ({spec['profile']} blocks)"
    n_dev, n_test = len(r["split"]["dev"]), len(r["split"]["test"])
    best = r["best"]
    outside = "" if spec["profile"] == 0 else f", tensors outside the blocks at {spec['outside']:g}"
    lines = [
        f"## α search on {escape_md(r['task'])} · {r['condition']}",
        "",
        f"Target: `{escape_md(r['target'])}`. Searched: {params} in [{spec['bounds'][0]:g}, {spec['bounds'][1]:g}]"
        f"{outside}; "
        f"Optuna {r['optuna']['version']} {spec['sampler'].upper()}, {len(r['trials'])} trials (trial 0 = v as "
        f"extracted, α = 1, when the bounds hold it). Dev: {n_dev} items, test: {n_test} items, disjoint by "
        f"construction (a seeded permutation of the task's items; doc ids in `{SEARCH_FILE}`). The winner is "
        "chosen on dev only and evaluated on test once.",
        "",
        f"Best: trial {best['number']}, {_params(best['params'])}, dev accuracy {format_pct(best['value'])}%.",
        "",
    ]
    test_lines, test_json = _test_table(view, comparer)
    gap_lines, gap_json = _gap_table(view, comparer)
    lines += test_lines + gap_lines + _trial_table(view)
    path = plot_search(_figure(view), plot_dir / "search.png", task=r["task"])
    lines += [
        "![α search](plots/search.png)",
        "",
        "*Left: dev accuracy of each trial and the best so far, against the target and α = 1 on dev. "
        "Middle: the chosen α per parameter (depth blocks shallow to deep). Right: dev and test accuracy of "
        "the target, α = 1 and the best; a best that is far ahead of α = 1 on dev only is the search "
        "fitting noise of the dev items.*",
        "",
    ]
    numbers = {
        "task": r["task"],
        "condition": r["condition"],
        "target": r["target"],
        "best": best,
        "dev_items": n_dev,
        "test_items": n_test,
        "test": test_json,
        "dev": gap_json,
    }
    return lines, [path], numbers


def _params(params: dict[str, float]) -> str:
    return ", ".join(f"{k} = {v:.2f}" for k, v in params.items())


def _test_table(view: SearchView, comparer: Comparer) -> tuple[list[str], dict[str, Any]]:
    t = view.tests
    header = ["on test", "n", "accuracy", "Δ vs target [CI]", "p", "Δ vs α = 1 [CI]", "p", "KL to target"]
    rows, out = [], {}
    for role in ("target", "alpha1", "best"):
        cell = t.get(role)
        if cell is None:
            continue
        vs_target = _cmp(comparer, "search-test", t.get("target"), cell) if role != "target" else None
        vs_one = _cmp(comparer, "search-test", t.get("alpha1"), cell) if role == "best" else None
        kl = (cell.extra.get("kl") or {}).get("mean")
        rows.append(
            [
                escape_md(cell.variant.name),
                str(cell.n),
                format_pct(cell.accuracy),
                format_delta(vs_target) if vs_target else "",
                format_p(vs_target.mcnemar_p) if vs_target else "",
                format_delta(vs_one) if vs_one else "",
                format_p(vs_one.mcnemar_p) if vs_one else "",
                _kl_text(kl),
            ]
        )
        out[role] = {
            "accuracy": cell.accuracy,
            "n": cell.n,
            "vs_target": vs_target.to_dict() if vs_target else None,
            "vs_alpha1": vs_one.to_dict() if vs_one else None,
            "kl": cell.extra.get("kl"),
        }
    return ["### On test (once)", "", *_markdown(header, rows), ""], out


def _gap_table(view: SearchView, comparer: Comparer) -> tuple[list[str], dict[str, Any]]:
    """Δ vs the target on dev and on test, for α = 1 and the best: the winner's dev lead shrinks on
    test by what choosing on dev fitted to the dev items."""
    best_number = view.record["best"]["number"]
    by_number = {t["number"]: c for t, c in zip(view.record["trials"], view.trials)}
    pairs = {
        "alpha1": (_alpha1_trial(view), view.tests.get("alpha1")),
        "best": (by_number.get(best_number), view.tests.get("best")),
    }
    rows, out = [], {}
    for role, (dev, test) in pairs.items():
        d = _cmp(comparer, "search-dev", view.dev_target, dev)
        t = _cmp(comparer, "search-test", view.tests.get("target"), test)
        if d is None and t is None:
            continue
        gap = d.diff - t.diff if d is not None and t is not None else math.nan
        rows.append(
            [
                _ROLES[role],
                format_pct(d.acc_b) if d else "—",
                format_delta(d) if d else "—",
                format_pct(t.acc_b) if t else "—",
                format_delta(t) if t else "—",
                f"{100 * gap:+.1f}" if not math.isnan(gap) else "—",
            ]
        )
        out[role] = {
            "dev": d.to_dict() if d else None,
            "test": t.to_dict() if t else None,
            "gap": None if math.isnan(gap) else gap,
        }
    header = [
        "state",
        "dev acc",
        "Δ vs target on dev [CI]",
        "test acc",
        "Δ vs target on test [CI]",
        "dev − test gap (pp)",
    ]
    return ["### Dev vs test", "", *_markdown(header, rows), ""], out


def _trial_table(view: SearchView) -> list[str]:
    header = ["trial", "parameters", "dev accuracy", "KL to target", "tokens mean", "tokens median"]
    rows = []
    for trial, cell in zip(view.record["trials"], view.trials):
        kl = (cell.extra.get("kl") or {}).get("mean") if cell is not None else None
        tokens = cell_tokens(cell)
        rows.append(
            [
                str(trial["number"]),
                _params(trial["params"]),
                format_pct(trial["value"]),
                _kl_text(kl),
                f"{tokens['mean']:.1f}" if tokens else "—",
                f"{tokens['median']:g}" if tokens else "—",
            ]
        )
    return ["### Trials (dev)", "", *_markdown(header, rows), ""]


def _figure(view: SearchView) -> SearchFigure:
    r = view.record
    trials = r["trials"]
    one = _alpha1_trial(view)
    first = one.accuracy if one is not None else None
    params = list(r["best"]["params"])
    roles = [role for role in ("target", "alpha1", "best") if view.tests.get(role) is not None]
    by_number = {t["number"]: c for t, c in zip(trials, view.trials)}
    dev = {"target": view.dev_target, "alpha1": one, "best": by_number.get(r["best"]["number"])}
    return SearchFigure(
        trials=[t["number"] for t in trials],
        values=[t["value"] for t in trials],
        alpha1_dev=first,
        target_dev=view.dev_target.accuracy if view.dev_target is not None else math.nan,
        params=params,
        best_params=[float(r["best"]["params"][p]) for p in params],
        bounds=(float(r["spec"]["bounds"][0]), float(r["spec"]["bounds"][1])),
        rows=[_ROLES[role] for role in roles],
        dev=[dev[role].accuracy if dev[role] is not None else math.nan for role in roles],  # type: ignore[union-attr]
        test=[view.tests[role].accuracy for role in roles],  # type: ignore[union-attr]
    )


def _alpha1_trial(view: SearchView) -> CellResult | None:
    """The dev cell of v as extracted (every α 1: trial 0 when the bounds hold 1), if any."""
    for trial, cell in zip(view.record["trials"], view.trials):
        if all(float(v) == 1.0 for v in trial["params"].values()):
            return cell
    return None


def _kl_text(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else "—"


def _cmp(comparer: Comparer, kind: str, a: CellResult | None, b: CellResult | None) -> Comparison | None:
    return comparer.cells(kind, a, b) if a is not None and b is not None else None


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(r) + " |" for r in rows],
    ]
