"""Re-render a run folder's report from its cached cells (``rvec report``; also the last step of ``rvec run``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from rvec.errors import RvecError
from rvec.study.cells import load_cell
from rvec.study.plan import short_name
from rvec.study.report import render_report
from rvec.study.report_search import load_search
from rvec.study.types import CellResult, Variant


def render_run(run_dir: str | Path) -> list[Path]:
    """Render ``report.md``, ``results.json``, ``results.csv`` and ``plots/`` for every target of a run.

    One target: files at the top of the run folder. Several: one sub-folder per target.

    Raises:
        RvecError: not a run folder, or no finished cell to report.
    """
    run_dir = Path(run_dir)
    plan_file = run_dir / "study.json"
    if not plan_file.is_file():
        raise RvecError(
            f"{run_dir}: not a run folder (no study.json); create one with rvec run STUDY.yaml -o {run_dir}"
        )
    plan = json.loads(plan_file.read_text())
    config_text = (run_dir / "study.yaml").read_text() if (run_dir / "study.yaml").is_file() else None
    targets = list(dict.fromkeys(entry["target"] for entry in plan["cells"]))
    search = load_search(run_dir)
    written: list[Path] = []
    if not targets and search is not None:  # rvec tune: the search alone
        return _render_search_only(run_dir, plan, search, config_text)
    for i, target in enumerate(targets):
        cells = [
            _as_planned(c, e)
            for e in plan["cells"]
            if e["target"] == target and (c := load_cell(run_dir / "cells", e["key"])) is not None
        ]
        if not cells:
            raise RvecError(f"{run_dir}: no finished cell for {target}; run rvec run --resume first")
        missing = sum(e["target"] == target for e in plan["cells"]) - len(cells)
        notes = list(plan.get("notes", []))
        if missing:
            notes.append(
                f"{missing} planned cells are not finished yet (interrupted run); resume with rvec run --resume."
            )
        out = run_dir if len(targets) == 1 else run_dir / short_name(target)
        baseline = next(c.variant.name for c in cells if c.variant.kind == "baseline")
        result = render_report(
            cells,
            out_dir=out,
            baseline=baseline,
            title=plan.get("title") or f"rvec study — {short_name(target)}",
            notes=notes,
            vector_norms=_vector_norms(run_dir, plan.get("vector")),
            config_text=config_text,
            resamples=int(plan.get("bootstrap_resamples", 10_000)),
            seed=int(plan.get("seed", 0)),
            atlas=plan.get("atlas", {}).get(target),
            search=search if i == 0 else None,  # the search has one report: the first target's
            combine=plan.get("combine"),
        )
        written += [result["report"], result["results_json"], result["results_csv"], *result["plots"]]
    return written


def _render_search_only(run_dir: Path, plan: dict, search: Any, config_text: str | None) -> list[Path]:
    """The report of a run that holds only a search: its test cells as the main table, then the search."""
    cells = search.test_cells
    if not cells:
        raise RvecError(f"{run_dir}: the search has no finished test cell; run rvec tune --resume first")
    result = render_report(
        cells,
        out_dir=run_dir,
        baseline=cells[0].variant.name,
        title=plan.get("title") or f"rvec tune — {short_name(search.record['target'])}",
        notes=list(plan.get("notes", [])),
        vector_norms=None,
        config_text=config_text,
        resamples=int(plan.get("bootstrap_resamples", 10_000)),
        seed=int(plan.get("seed", 0)),
        search=search,
    )
    return [result["report"], result["results_json"], result["results_csv"], *result["plots"]]


def _as_planned(cell: CellResult, entry: dict) -> CellResult:
    """The cached cell under the variant the plan names: one model can be two variants (a target
    that is also the SFT donor) and is computed and cached once, under whichever came first."""
    if "kind" not in entry or entry["variant"] == cell.variant.name:
        return cell  # a plan written before variants were recorded in full
    variant = Variant(
        entry["variant"],
        entry["kind"],
        entry["model"],
        entry["vector_label"],
        entry["alpha"],
        entry.get("selection"),
    )
    return replace(cell, variant=variant)


def _vector_norms(run_dir: Path, vector: str | None) -> dict | None:
    from rvec.vector.anatomy import measure_anatomy
    from rvec.vector.artifact import read_vector

    vectors = run_dir / "vectors"
    # The study's v: a folder it names (vector:), else extracted or stood in for in the run folder.
    candidates = [*([Path(vector)] if vector else []), vectors / "v", *sorted(vectors.glob("random-as-v-*"))]
    folders = [p for p in candidates if (p / "rvec.json").is_file()]
    # Norms only: without SVD, target or compare vector, anatomy reads nothing but rvec.json.
    return measure_anatomy(read_vector(folders[0]), svd=False).norms_panel() if folders else None
