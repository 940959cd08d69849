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

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rvec.errors import OutputExistsError
from rvec.study.config import StudyConfig
from rvec.study.types import CellResult, Variant

logger = logging.getLogger(__name__)

CellCallback = Callable[[CellResult, bool], None]
"""Called after each cell with (result, came from cache)."""


@dataclass
class StudyRun:
    """What :func:`run_study` did: every cell, how many were computed vs cached, where time went."""

    out_dir: Path
    cells: list[CellResult]
    computed: int = 0
    cached: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def cell_key(parts: dict[str, Any]) -> str:
    """Content address of a cell: sha256 of everything that changes its result."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)  # a crash never leaves a half-written cell that would be trusted on resume


def save_cell(cells_dir: Path, cell: CellResult, samples: list[dict[str, Any]]) -> None:
    _write_json(cells_dir / f"{cell.cache_key}.json", {"cell": cell_to_dict(cell), "samples": samples})


def cell_to_dict(cell: CellResult) -> dict[str, Any]:
    return {**asdict(cell), "variant": asdict(cell.variant)}


def cell_from_dict(data: dict[str, Any]) -> CellResult:
    data = dict(data)
    data["variant"] = Variant(**data["variant"])
    return CellResult(**data)


def load_cell(cells_dir: Path, key: str) -> CellResult | None:
    file = cells_dir / f"{key}.json"
    if not file.is_file():
        return None
    try:
        return cell_from_dict(json.loads(file.read_text())["cell"])
    except (json.JSONDecodeError, KeyError, TypeError):
        logger.warning("ignoring unreadable cached cell %s", file.name)
        return None


@contextmanager
def _timer(timings: dict[str, float], what: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[what] = timings.get(what, 0.0) + time.perf_counter() - start


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
        CodeExecutionNotAllowedError, SandboxUnavailableError: HumanEval without permission or sandbox.
        ConfigError, IncompatibleError, DataNotFoundError: as raised by the stages.
    """
    from rvec.eval.plan import check_code_execution
    from rvec.study.execute import StudyExecutor

    # Before any folder is written or model loaded: HumanEval needs permission and a working sandbox.
    check_code_execution(config.tasks, allowed=config.allow_code_execution)
    out_dir = Path(out_dir)
    text = config_text if config_text is not None else yaml.safe_dump(config.model_dump(), sort_keys=False)
    prepare_run_dir(out_dir, text, resume=resume)
    executor = StudyExecutor(config, out_dir, progress=progress, on_cell=on_cell)
    run = executor.run()
    from rvec.study.reporting import render_run

    with _timer(run.timings, "report"):
        render_run(out_dir)
    _write_json(
        out_dir / "timings.json", {"timings": run.timings, "computed": run.computed, "cached": run.cached}
    )
    return run


__all__ = ["StudyRun", "cell_from_dict", "cell_key", "cell_to_dict", "load_cell", "run_study", "save_cell"]
