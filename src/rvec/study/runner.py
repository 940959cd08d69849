"""``rvec run``: the whole study — vectors extracted once, each target loaded once, α applied in
memory per variant, every cell cached by content so an interrupted run resumes where it stopped.

Run folder layout::

    RUN/
      study.yaml            the config as given        study.json   resolved plan (cells + cache keys)
      vectors/              v (extracted once), random controls
      cells/<key>.json      one finished cell: scores, per-item correctness, samples
      kl/                   the target's next-token distributions (KL per cell, rvec.study.kl)
      search/               the α search: optuna.db (Optuna's SQLite storage), search.json
      report.md results.json results.csv plots/
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from rvec.atomic import make_folder, write_json, write_text
from rvec.errors import OutputExistsError
from rvec.outputs import check_results_folder
from rvec.progress import timed
from rvec.study.config import MadeModel, StudyConfig
from rvec.study.execute import StudyExecutor
from rvec.study.reporting import render_run
from rvec.study.search import TrialEvent, check_search, run_search
from rvec.study.types import CellCallback, StudyRun

__all__ = [
    "check_sources",
    "prepare_run_dir",
    "run_study",
    "run_study_file",
    "run_tune",
    "run_tune_file",
    "with_overrides",
]

logger = logging.getLogger(__name__)


def prepare_run_dir(out_dir: Path, config_text: str, *, resume: bool) -> None:
    """Create the run folder; refuse to mix with an existing run unless resuming, and to resume
    into a folder that is not a run (its files would be replaced)."""
    if out_dir.is_dir() and any(out_dir.iterdir()) and not resume:
        raise OutputExistsError(
            f"{out_dir}: a run folder already exists; pass --resume to continue it or choose another -o"
        )
    check_results_folder(out_dir, markers=("cells",))
    make_folder(out_dir / "cells")
    make_folder(out_dir / "vectors")
    previous = out_dir / "study.yaml"
    if resume and previous.is_file() and previous.read_text() != config_text:
        logger.warning(
            "%s: the study changed since the last run; cells whose inputs changed will be recomputed", out_dir
        )
    write_text(out_dir / "study.yaml", config_text)


def run_study(
    config: StudyConfig,
    out_dir: str | Path,
    *,
    config_text: str | None = None,
    resume: bool = False,
    progress: bool = True,
    on_cell: CellCallback | None = None,
    on_trial: Callable[[TrialEvent], None] | None = None,
) -> StudyRun:
    """Run every cell of ``config`` (skipping cached ones), then its α search if it has one, and
    render the report.

    Args:
        config: a validated study (:func:`rvec.study.config.load_study`).
        out_dir: run folder.
        config_text: the YAML as written by the user (kept in the run folder).
        resume: continue an existing run folder; finished cells are not recomputed.
        progress: show a progress display over the whole matrix with an ETA.
        on_cell: callback after each cell.
        on_trial: callback after each trial of the search.

    Raises:
        OutputExistsError: ``out_dir`` holds a run and ``resume`` is false.
        CodeExecutionNotAllowedError, SandboxUnavailableError: HumanEval without permission or sandbox.
        SourceNotFoundError, CorruptCheckpointError, UnsafeNameError, VectorFormatError: a model or
            vector the study names cannot be used (:func:`check_sources`; nothing is created).
        ConfigError, IncompatibleError, DataNotFoundError: as raised by the stages (a search's split
            that cannot be drawn before anything is written).
    """
    executor = _start(config, out_dir, config_text, resume=resume, progress=progress, on_cell=on_cell)
    executor.run()
    if config.search is not None:
        run_search(executor, executor.vectors(), on_trial=on_trial)
        executor.note_kl()
    return _finish(executor)


def run_tune(
    config: StudyConfig,
    out_dir: str | Path,
    *,
    config_text: str | None = None,
    resume: bool = False,
    progress: bool = True,
    on_trial: Callable[[TrialEvent], None] | None = None,
) -> tuple[StudyRun, dict[str, Any]]:
    """``rvec tune``: only the study's α search (trials on dev, the winner once on test) and its report.

    Args: as :func:`run_study`.

    Returns:
        tuple: the run (cells computed and cached) and the search's record (``search/search.json``).

    Raises:
        ConfigError: the study has no ``search:`` section, or its split cannot be drawn.
        and the errors of :func:`run_study`.
    """
    from rvec.errors import ConfigError

    if config.search is None:
        raise ConfigError(["no search: section to run; add one (docs/atlas.md)"], source=config.name)
    executor = _start(config, out_dir, config_text, resume=resume, progress=progress, on_cell=None)
    if not (executor.out_dir / "study.json").is_file():  # a study's own plan, when there is one, stays
        executor.write_plan([])
    record = run_search(executor, executor.vectors(), on_trial=on_trial)
    executor.note_kl()
    return _finish(executor), record


def _start(
    config: StudyConfig,
    out_dir: str | Path,
    config_text: str | None,
    *,
    resume: bool,
    progress: bool,
    on_cell: CellCallback | None,
) -> StudyExecutor:
    """Every check that needs no model, then the run folder and its executor."""
    from rvec.eval.plan import check_code_execution

    # Before any folder is written or model loaded: HumanEval needs permission and a working sandbox,
    # every model and vector the study names must resolve, and a search must have a split it can draw.
    check_code_execution(config.tasks, allowed=config.allow_code_execution)
    check_sources(config)
    out_dir = Path(out_dir)
    executor = StudyExecutor(config, out_dir, progress=progress, on_cell=on_cell)
    check_search(executor)
    text = config_text if config_text is not None else yaml.safe_dump(config.model_dump(), sort_keys=False)
    prepare_run_dir(out_dir, text, resume=resume)
    return executor


def _finish(executor: StudyExecutor) -> StudyRun:
    run = executor.run_state
    out_dir = executor.out_dir
    with timed(run.timings, "report"):
        render_run(out_dir)
    write_json(
        out_dir / "timings.json",
        {"timings": run.timings, "computed": run.computed, "cached": run.cached},
        indent=1,
        default=str,
    )
    return run


def check_sources(config: StudyConfig) -> None:
    """Resolve every model and vector the study names before anything is created: local folders
    must be model folders with valid headers and file names (:meth:`Checkpoint.validate`), hub ids
    must be cached or reachable (config and index only), vector folders must open (their bytes are
    verified when they are used). A GGUF file is checked when it is converted.

    Raises:
        SourceNotFoundError, HubUnavailableError, CorruptCheckpointError, UnsafeNameError,
        VectorFormatError: a source cannot be used (named).
    """
    from rvec.checkpoint.source import resolve
    from rvec.vector.artifact import read_vector

    made = config.models
    # A mergekit YAML's models were checked when the study was loaded (rvec.study.mergekit_models).
    recipes = [m for m in made.values() if isinstance(m, MadeModel)]
    donors = [config.donors.sft, config.donors.rl] if config.donors else []
    rows = [row.model for row in config.rows.values()]
    for source in dict.fromkeys([*config.targets, *donors, *rows, *(m.base for m in recipes)]):
        if source in made:
            continue
        ckpt = resolve(source, weights=False)
        if ckpt.gguf_file is None:
            ckpt.config  # noqa: B018 — config.json: a JSON object
            ckpt.validate()
    named = [*([config.vector] if config.vector else []), *config.vectors.values()]
    for folder in [*named, *(a for m in recipes for a in m.add)]:
        read_vector(folder, verify=False).close()


def run_study_file(
    study: str | Path,
    output: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    data_dir: str | Path | None = None,
    backend: str | None = None,
    engine: Mapping[str, Any] | None = None,
    on_trial: Callable[[TrialEvent], None] | None = None,
) -> StudyRun:
    """``rvec run STUDY.yaml``: load and validate the file, apply the command line's overrides, run.

    Args:
        study: the study file.
        output: the run folder (default: the study's ``output:``, else ``runs/<name>``).
        resume: continue an interrupted run.
        progress: show the matrix's progress bar.
        data_dir: replaces the study's ``data_dir``.
        backend: replaces ``backend.name`` (settings kept when the name stays, dropped when it changes).
        engine: backend settings to replace (``replicas``, ``ray_address``…); ``None`` values are ignored.
        on_trial: callback after each trial of the study's α search.

    Raises:
        ConfigError: the study (with the overrides) is invalid, every problem listed.
        and every error of :func:`run_study`.
    """
    from rvec.study.config import load_study

    path = Path(study)
    config = with_overrides(load_study(path), data_dir=data_dir, backend=backend, engine=engine)
    # name and output: were checked to stay inside the working folder (study.validation); only -o,
    # typed by the user, may place the run elsewhere.
    folder = Path(output or config.output or f"runs/{config.name}")
    return run_study(
        config, folder, config_text=path.read_text(), resume=resume, progress=progress, on_trial=on_trial
    )


def run_tune_file(
    study: str | Path,
    output: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    data_dir: str | Path | None = None,
    on_trial: Callable[[TrialEvent], None] | None = None,
) -> tuple[StudyRun, dict[str, Any]]:
    """``rvec tune STUDY.yaml``: load and validate the file, then :func:`run_tune`.

    Args:
        study: the study file (with a ``search:`` section).
        output: the run folder (default: the study's ``output:``, else ``runs/<name>-tune``).
        resume: continue a killed search: finished trials are reused, a trial left running is redone.
        progress: show the search's progress bar.
        data_dir: replaces the study's ``data_dir``.
        on_trial: callback after each trial.

    Raises:
        ConfigError: the study is invalid, has no search, or its split cannot be drawn.
        and every error of :func:`run_study`.
    """
    from rvec.study.config import load_study

    path = Path(study)
    config = with_overrides(load_study(path), data_dir=data_dir)
    folder = Path(output or config.output or f"runs/{config.name}-tune")
    return run_tune(
        config, folder, config_text=path.read_text(), resume=resume, progress=progress, on_trial=on_trial
    )


def with_overrides(
    config: StudyConfig,
    *,
    data_dir: str | Path | None = None,
    backend: str | None = None,
    engine: Mapping[str, Any] | None = None,
) -> StudyConfig:
    """``config`` with the command line's overrides: ``data_dir``; ``backend.name`` (its settings
    kept when the name stays the same, dropped when it changes); engine settings (``None`` values
    ignored).

    Raises:
        UnknownNameError, InvalidArgumentError: an unknown backend or a setting it does not have.
    """
    from rvec.model.registry import parse_backend_flags

    if data_dir is not None:
        config = config.model_copy(update={"data_dir": str(data_dir)})
    given = {k: v for k, v in (engine or {}).items() if v is not None}
    if backend is None and not given:
        return config
    current = config.backend.model_dump()
    name = backend or current["name"]
    base = {k: v for k, v in current.items() if k != "name"} if name == current["name"] else {}
    return config.model_copy(update={"backend": parse_backend_flags(name, **{**base, **given})})
