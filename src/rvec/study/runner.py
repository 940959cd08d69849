"""``rvec run``: the whole study — vectors extracted once, each target loaded once, α applied in
memory per variant, every cell cached by content so an interrupted run resumes where it stopped.

Run folder layout::

    RUN/
      study.yaml            the config as given        study.json   resolved plan (cells + cache keys)
      vectors/              v (extracted once), random controls
      cells/<key>.json      one finished cell: scores, per-item correctness, samples
      report.md results.json results.csv plots/
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from rvec.errors import OutputExistsError
from rvec.study.cells import _write_json, cell_from_dict, cell_key, cell_to_dict, load_cell, save_cell
from rvec.study.config import StudyConfig
from rvec.study.execute import StudyExecutor
from rvec.study.progress import timed
from rvec.study.reporting import render_run
from rvec.study.types import CellCallback, StudyRun

logger = logging.getLogger(__name__)


def prepare_run_dir(out_dir: Path, config_text: str, *, resume: bool) -> None:
    """Create the run folder; refuse to mix with an existing run unless resuming."""
    if out_dir.exists() and any(out_dir.iterdir()) and not resume:
        raise OutputExistsError(
            f"{out_dir}: a run folder already exists; pass --resume to continue it or choose another -o"
        )
    (out_dir / "cells").mkdir(parents=True, exist_ok=True)
    (out_dir / "vectors").mkdir(exist_ok=True)
    previous = out_dir / "study.yaml"
    if resume and previous.is_file() and previous.read_text() != config_text:
        logger.warning(
            "%s: the study changed since the last run; cells whose inputs changed will be recomputed", out_dir
        )
    (out_dir / "study.yaml").write_text(config_text)


def run_study(
    config: StudyConfig,
    out_dir: str | Path,
    *,
    config_text: str | None = None,
    resume: bool = False,
    progress: bool = True,
    on_cell: CellCallback | None = None,
) -> StudyRun:
    """Run every cell of ``config`` (skipping cached ones) and render the report.

    Args:
        config: a validated study (:func:`rvec.study.config.load_study`).
        out_dir: run folder.
        config_text: the YAML as written by the user (kept in the run folder).
        resume: continue an existing run folder; finished cells are not recomputed.
        progress: show a progress display over the whole matrix with an ETA.
        on_cell: callback after each cell.

    Raises:
        OutputExistsError: ``out_dir`` holds a run and ``resume`` is false.
        ConfigError, IncompatibleError, DataNotFoundError: as raised by the stages.
    """
    out_dir = Path(out_dir)
    text = config_text if config_text is not None else yaml.safe_dump(config.model_dump(), sort_keys=False)
    prepare_run_dir(out_dir, text, resume=resume)
    executor = StudyExecutor(config, out_dir, progress=progress, on_cell=on_cell)
    run = executor.run()
    with timed(run.timings, "report"):
        render_run(out_dir)
    _write_json(
        out_dir / "timings.json", {"timings": run.timings, "computed": run.computed, "cached": run.cached}
    )
    return run


# The cell-cache names lived here before rvec.study.cells; they stay importable from here.
__all__ = [
    "CellCallback",
    "StudyRun",
    "cell_from_dict",
    "cell_key",
    "cell_to_dict",
    "load_cell",
    "prepare_run_dir",
    "run_study",
    "save_cell",
]
