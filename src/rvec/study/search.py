"""The α search of a study (``search:``; ``rvec tune`` runs it alone): a global α, or one α per
depth block (a ``profile:`` schedule of at most 8 values), optimised on a dev split of one task
and checked once on a disjoint test split (:mod:`rvec.study.split`).

Every trial is a model state set in memory (no checkpoint is written) and a cached cell (its key:
the state and the dev items), so a resumed search reuses finished trials. Optuna proposes the
trials (TPE by default, CMA-ES on request) and keeps them in ``RUN/search/optuna.db`` (SQLite:
transactional, so a kill leaves it whole). Trials are reproducible across a kill: each trial's
sampler is seeded with (study seed + trial number) and reads only the finished history, and a
trial the kill left running is finished first with its own parameters. Trial 0 is v as extracted
(α = 1 everywhere) when the bounds hold it.

Afterwards the target, α = 1 and the best trial's state are evaluated on the test items, each once
(cached cells); ``RUN/search/search.json`` records the split, every trial and the cells' keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from rvec.atomic import make_folder, write_json
from rvec.checkpoint.source import resolve
from rvec.errors import RvecError
from rvec.progress import ProgressBar
from rvec.study.cells import load_cell
from rvec.study.plan import PlannedCell, by_model_state, short_name
from rvec.study.specs import SearchSpec
from rvec.study.split import Split, make_split
from rvec.study.types import CellResult, Variant
from rvec.vector.masks import Schedule, Selection

if TYPE_CHECKING:
    from rvec.model.state import ModelState
    from rvec.study.execute import StudyExecutor
    from rvec.vector.artifact import ReasoningVector

__all__ = ["SEARCH_FILE", "TrialEvent", "check_search", "run_search", "search_split", "state_variant"]

logger = logging.getLogger(__name__)

SEARCH_FILE = "search/search.json"
"""The search's record, relative to the run folder."""


@dataclass(frozen=True)
class TrialEvent:
    """What :func:`run_search` reports after each trial."""

    number: int
    params: dict[str, float]
    value: float
    seconds: float
    cached: bool
    done: int
    total: int
    estimate_s: float | None
    """Time the remaining trials and the three test cells will take, from the time of the first
    cell computed on dev (the target's, else the first trial's); ``None`` when every one was cached."""


def search_split(executor: StudyExecutor) -> Split:
    """The search's dev and test items (see :mod:`rvec.study.split`).

    Raises:
        ConfigError: the dev split exceeds the task or leaves no test items.
    """
    spec = _spec(executor)
    docs = executor.keys.docs(spec.task)
    test = spec.test
    if test is None:  # the study's own limit for the task, at most what dev leaves
        test = min(executor.config.limit_for(spec.task) or len(docs), max(1, len(docs) - spec.dev))
    return make_split(spec.task, docs, dev=spec.dev, test=test, seed=executor.config.seed)


def check_search(executor: StudyExecutor) -> None:
    """Refuse, before anything is written or loaded, a search whose split cannot be drawn."""
    if executor.config.search is not None:
        search_split(executor)


def state_variant(spec: SearchSpec, params: dict[str, float], *, name: str, model: str) -> Variant:
    """The model state of one trial's parameters: ``target + α·v``, or ``target + v`` under a
    ``profile:`` schedule. A profile of ones (with ``outside`` 1) is v itself: written as α = 1, so
    it shares α = 1's fingerprint and cells."""
    if spec.profile == 0:
        return Variant(name, "vector", model, "v", float(params["alpha"]))
    values = tuple(float(params[f"block{i}"]) for i in range(spec.profile))
    if all(v == 1.0 for v in values) and spec.outside == 1.0:
        return Variant(name, "vector", model, "v", 1.0)
    schedule = Schedule("profile", outside=float(spec.outside), values=values)
    return Variant(name, "profile", model, "v", 1.0, Selection(schedule=schedule).describe())


def run_search(
    executor: StudyExecutor,
    vectors: dict[str, ReasoningVector],
    *,
    on_trial: Callable[[TrialEvent], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study's search, evaluate its winner on test, write ``search.json``.

    Args:
        executor (StudyExecutor): The run (its config has a ``search``).
        vectors (dict): The study's vectors (``v``).
        on_trial (callable | None): Called after each trial (``rvec tune`` prints the estimate).

    Returns:
        dict: The record written to ``RUN/search/search.json``.

    Raises:
        ConfigError: the split cannot be drawn.
        and every error of evaluating a cell.
    """
    return _Search(executor, vectors, on_trial).run()


class _Search:
    """One search: its split, its cells, its Optuna study; the target loaded on first need."""

    def __init__(
        self,
        executor: StudyExecutor,
        vectors: dict[str, ReasoningVector],
        on_trial: Callable[[TrialEvent], None] | None,
    ) -> None:
        self.x = executor
        self.vectors = vectors
        self.on_trial = on_trial
        self.spec = _spec(executor)
        c = executor.config
        self.target = self.spec.target or c.targets[0]
        self.condition = self.spec.condition or c.conditions[0]
        self.split = search_split(executor)
        self.fp = resolve(executor.local(self.target)).fingerprint()
        executor.reference[self.target] = self.fp
        self.label = short_name(self.target)
        self.folder = executor.out_dir / "search"
        self._stack = ExitStack()
        self._state: ModelState | None = None
        self._first_s: float | None = None

    # ------------------------------------------------------------------------------------ cells
    def cell(self, variant: Variant, items: tuple[str, ...]) -> tuple[CellResult, float, bool]:
        """``variant`` on ``items``: from the cache, else evaluated now. Returns the cell, the
        seconds it took here, and whether it came from the cache."""
        planned = PlannedCell(
            variant, self.condition, self.spec.task, self.spec.task, None, self.spec.task, items
        )
        key = self.x.keys.key(planned, self.fp, self.vectors)
        done = load_cell(self.x.cells_dir, key)
        if done is not None:
            self.x.progress.advance()
            return done, 0.0, True
        start = time.perf_counter()
        self.x.evaluate_groups(
            self._loaded(), by_model_state([(planned, key)]), self.vectors, reference=self.fp
        )
        done = load_cell(self.x.cells_dir, key)
        if done is None:
            raise RvecError(f"{self.spec.task}: the cell of {variant.name} was evaluated but not saved")
        return done, time.perf_counter() - start, False

    def _loaded(self) -> ModelState:
        if self._state is None:
            self._state = self._stack.enter_context(self.x.loaded(self.target, self.vectors))
        return self._state

    # ------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        make_folder(self.folder)
        total = self.spec.trials + 4  # trials, the target on dev, three test cells
        self.x.progress = ProgressBar("search", total=total, unit="cells", enabled=self.x.show_progress)
        with self._stack, self.x.progress:
            dev_target, seconds, cached = self.cell(
                Variant(self.label, "baseline", self.target), self.split.dev
            )
            if not cached:  # a trial costs what the target's dev cell cost (the switch is cheap)
                self._first_s = seconds
            study = self._study()
            trials = self._trials(study)
            best = max(trials, key=lambda t: (t["value"], -t["number"]))  # ties: the earliest trial
            tests = self._tests(best)
        record = self._record(study, trials, best, dev_target, tests)
        write_json(self.x.out_dir / SEARCH_FILE, record, indent=1)
        return record

    def _tests(self, best: dict[str, Any]) -> dict[str, CellResult]:
        """The target, α = 1 and the best state on the test items, each evaluated once."""
        variants = {
            "target": Variant(self.label, "baseline", self.target),
            "alpha1": Variant(f"{self.label} + 1·v", "vector", self.target, "v", 1.0),
            "best": state_variant(
                self.spec,
                best["params"],
                name=f"{self.label} + best (trial {best['number']})",
                model=self.target,
            ),
        }
        return {role: self.cell(v, self.split.test)[0] for role, v in variants.items()}

    def _trial_variant(self, number: int, params: dict[str, float]) -> Variant:
        return state_variant(self.spec, params, name=f"{self.label} trial {number}", model=self.target)

    def _evaluate_trial(
        self, number: int, params: dict[str, float], done: int
    ) -> tuple[CellResult, float, bool]:
        cell, seconds, cached = self.cell(self._trial_variant(number, params), self.split.dev)
        if not cached and self._first_s is None:
            self._first_s = seconds
        # The remaining trials, then the three test cells (target, α = 1, best) at the test size.
        remaining = self.spec.trials - done + 3 * len(self.split.test) / max(1, len(self.split.dev))
        estimate = self._first_s * remaining if self._first_s is not None else None
        if self.on_trial is not None:
            self.on_trial(
                TrialEvent(number, params, cell.accuracy, seconds, cached, done, self.spec.trials, estimate)
            )
        return cell, seconds, cached

    # ---------------------------------------------------------------------------------- optuna
    def _study(self) -> Any:
        from sqlalchemy.pool import NullPool

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # rvec reports trials itself
        # No connection pool: the database is closed between calls, so nothing stays open after the run.
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{(self.folder / 'optuna.db').resolve()}", engine_kwargs={"poolclass": NullPool}
        )
        self._stack.callback(storage.engine.dispose)
        study = optuna.create_study(
            storage=storage, study_name=self._study_name(), direction="maximize", load_if_exists=True
        )
        if not study.trials and self.spec.bounds[0] <= 1.0 <= self.spec.bounds[1]:
            study.enqueue_trial({name: 1.0 for name in self._distributions()})  # trial 0: v as extracted
        return study

    def _study_name(self) -> str:
        """Names everything the trials' values depend on, so a changed search starts a new study
        beside the old one instead of mixing their trials."""
        payload = {
            "spec": self.spec.model_dump(),
            "target": self.fp,
            "vector": self.vectors["v"].content_hash,
            "split": self.split.digest,
            "preset": self.x.preset.to_dict(),
            "condition": self.condition,
            "seed": self.x.config.seed,
        }
        return (
            "search-"
            + hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
        )

    def _distributions(self) -> dict[str, Any]:
        from optuna.distributions import FloatDistribution

        low, high = (float(b) for b in self.spec.bounds)
        names = ["alpha"] if self.spec.profile == 0 else [f"block{i}" for i in range(self.spec.profile)]
        return {n: FloatDistribution(low, high) for n in names}

    def _sampler(self, number: int) -> Any:
        """A fresh sampler per trial, seeded by (seed + trial number): what it proposes depends on
        the finished trials only, so a resumed search proposes what an uninterrupted one would."""
        seed = self.x.config.seed + number
        if self.spec.sampler == "cmaes":
            low, high = (float(b) for b in self.spec.bounds)
            x0 = 1.0 if low <= 1.0 <= high else (low + high) / 2
            return optuna.samplers.CmaEsSampler(
                x0={n: x0 for n in self._distributions()},
                sigma0=(high - low) / 6,
                seed=seed,
                warn_independent_sampling=False,
            )
        startup = self.spec.startup_trials or min(10, max(2, self.spec.trials // 3))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)

    def _trials(self, study: Any) -> list[dict[str, Any]]:
        """Finish what a kill left running, then ask and tell until ``trials`` are complete."""
        from optuna.trial import TrialState

        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            cell, _, _ = self._evaluate_trial(stale.number, dict(stale.params), done + 1)
            study.tell(stale.number, cell.accuracy)
        while (
            done := len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        ) < self.spec.trials:
            study.sampler = self._sampler(len(study.trials))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna's ExperimentalWarning for multivariate TPE
                trial = study.ask(self._distributions())
            cell, _, _ = self._evaluate_trial(trial.number, dict(trial.params), done + 1)
            study.tell(trial, cell.accuracy)
        return [
            {"number": t.number, "params": dict(t.params), "value": float(t.value)}
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        ][: self.spec.trials]

    # ---------------------------------------------------------------------------------- record
    def _record(
        self,
        study: Any,
        trials: list[dict[str, Any]],
        best: dict[str, Any],
        dev_target: CellResult,
        tests: dict[str, CellResult],
    ) -> dict[str, Any]:
        for trial in trials:
            variant = self._trial_variant(trial["number"], trial["params"])
            planned = PlannedCell(
                variant, self.condition, self.spec.task, self.spec.task, None, self.spec.task, self.split.dev
            )
            trial["key"] = self.x.keys.key(planned, self.fp, self.vectors)
            trial["variant"] = variant.to_dict()
        return {
            "spec": self.spec.model_dump(),
            "target": self.target,
            "target_fingerprint": self.fp,
            "task": self.spec.task,
            "condition": self.condition,
            "split": self.split.to_dict(),
            "optuna": {
                "version": optuna.__version__,
                "storage": "search/optuna.db",
                "study": study.study_name,
                "sampler": self.spec.sampler,
            },
            "trials": trials,
            "best": {k: best[k] for k in ("number", "params", "value", "key")},
            "dev": {"target": dev_target.cache_key},
            "test": {role: cell.cache_key for role, cell in tests.items()},
        }


def _spec(executor: StudyExecutor) -> SearchSpec:
    if executor.config.search is None:
        raise RvecError("the study has no search: section; add one (docs/atlas.md) or run it with rvec run")
    return executor.config.search
