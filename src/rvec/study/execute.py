"""Executes a study's matrix: prepares vectors once (:mod:`rvec.study.vectors`), keys every cell
(:mod:`rvec.study.cells`), loads each model once on the study's backend (:mod:`rvec.model`) or on
persistent vLLM replicas, switches α in memory, evaluates the cells that are not cached, and saves
each as soon as it finishes."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from rvec import __version__
from rvec.atomic import write_json
from rvec.checkpoint.local import local_folder
from rvec.checkpoint.source import resolve
from rvec.errors import RvecError
from rvec.eval.data import DataSource
from rvec.eval.types import LanguageModel
from rvec.model.registry import get_backend
from rvec.model.state import HashedDelta, ModelState
from rvec.progress import ProgressBar, timed
from rvec.study.atlas import atlas_record, check_parts_select, num_layers_of
from rvec.study.cells import CellKeys, load_cell, save_cell
from rvec.study.combine import check_row_references, combination_vectors, combine_record
from rvec.study.config import StudyConfig
from rvec.study.kl import KLMeter
from rvec.study.plan import (
    PlannedCell,
    StateGroup,
    by_model_state,
    evaluation_parts,
    plan_cells,
    plan_row,
    resolved_preset,
    short_name,
    skip_note,
)
from rvec.study.records import cell_samples, make_cell
from rvec.study.types import CellCallback, CellResult, StudyRun
from rvec.study.vectors import prepare_vectors
from rvec.vector.masks import selection_from_record

__all__ = ["StudyExecutor"]

logger = logging.getLogger(__name__)


class StudyExecutor:
    """One run of a study; see :func:`rvec.study.runner.run_study`."""

    def __init__(
        self, config: StudyConfig, out_dir: Path, *, progress: bool, on_cell: CellCallback | None
    ) -> None:
        self.config = config
        self.out_dir = out_dir
        self.cells_dir = out_dir / "cells"
        self.on_cell = on_cell
        self.preset = resolved_preset(config)
        self.source = DataSource(Path(config.data_dir) if config.data_dir else None)
        self.backend = get_backend(config.backend.name)
        self.run_state = StudyRun(out_dir=out_dir, cells=[])
        self.show_progress = progress and sys.stderr.isatty()  # a log file gets no redrawn bar
        self.progress = ProgressBar("cells", unit="cells", enabled=False)  # the run's bar, made in run()
        self.keys = CellKeys(config, self.preset, self.source, get_backend(config.backend.name))
        self.kl = KLMeter(out_dir / "kl", source=self.source, enabled=config.kl is not False)
        self.reference: dict[str, str] = {}
        """Per loaded model, the target fingerprint its cells' KL is measured against (donors' too)."""
        self._local: dict[str, str] = {}
        self._plan_rows: list[dict[str, Any]] = []
        self._vectors: dict[str, HashedDelta] | None = None
        self._atlas: dict[str, Any] = {}

    def local(self, source: str) -> str:
        """A folder the engine loads: the study's own ``models:`` are made once in ``RUN/models/``
        (:mod:`rvec.study.made_models`); any other source through
        :func:`rvec.checkpoint.local.local_folder` (a GGUF dequantized once into rvec's cache)."""
        if source not in self._local and source in self.config.models:
            from rvec.study.made_models import made_model_folder

            with timed(self.run_state.timings, "make models"):
                folder = made_model_folder(
                    source,
                    self.config.models[source],
                    self.out_dir / "models",
                    local=self.local,
                    study_models=self.config.models,
                )
            self._local[source] = str(folder)
        if source not in self._local:
            with timed(self.run_state.timings, "convert"):
                ckpt = resolve(source)
                self._local[source] = source if ckpt.gguf_file is None else str(local_folder(ckpt))
        return self._local[source]

    # ---- run ---------------------------------------------------------------------------------
    def vectors(self) -> dict[str, HashedDelta]:
        """The study's vectors (:func:`rvec.study.vectors.prepare_vectors`) and its named vectors and
        combinations, merged in memory (:func:`rvec.study.combine.combination_vectors`), prepared once."""
        if self._vectors is None:
            with timed(self.run_state.timings, "extract"):
                vectors: dict[str, HashedDelta] = prepare_vectors(
                    self.config, self.out_dir / "vectors", local=self.local, notes=self.run_state.notes
                )
                vectors.update(combination_vectors(self.config, vectors))
                self._vectors = vectors
        return self._vectors

    def run(self) -> StudyRun:
        """Plan every cell, write ``study.json``, then evaluate model by model."""
        vectors = self.vectors()
        plan, groups = self._plan(vectors)
        self.write_plan(plan)
        self.progress = ProgressBar("cells", total=len(plan), unit="cells", enabled=self.show_progress)
        with self.progress:
            for model, keyed, with_vectors in groups:
                self._run_model(model, keyed, vectors if with_vectors else {})
        self.note_kl()
        return self.run_state

    def note_kl(self) -> None:
        """Say in the report why some cells have no KL (and rewrite ``study.json`` with it)."""
        fresh = [f"KL not measured for some cells: {why}." for why in sorted(self.kl.skipped)]
        fresh = [n for n in fresh if n not in self.run_state.notes]  # a search adds after the matrix
        if fresh:
            self.run_state.notes.extend(fresh)
            self.write_plan(self._plan_rows)

    def _plan(
        self, vectors: dict[str, HashedDelta]
    ) -> tuple[list[dict[str, Any]], list[tuple[str, list[tuple[PlannedCell, str]], bool]]]:
        """``study.json``'s cell rows, and the keyed cells grouped by the model they load (a target
        first, with the vectors; then each donor, without)."""
        c = self.config
        rl = c.donors.rl if c.donors is not None and c.controls.rl_donor_think is not False else None
        plan: list[dict[str, Any]] = []
        groups: list[tuple[str, list[tuple[PlannedCell, str]], bool]] = []
        layers = num_layers_of(vectors["v"])
        plans = {target: plan_cells(c, target, rl_donor=rl, num_layers=layers) for target in c.targets}
        check_row_references(c, [cell.variant.name for planned in plans.values() for cell in planned])
        for target, planned in plans.items():
            check_parts_select([cell.variant for cell in planned], vectors["v"], source=c.name)
            cells = [cell for cell in planned if self._applicable(cell)]
            fps = {m: resolve(self.local(m)).fingerprint() for m in {cell.variant.model for cell in cells}}
            self.reference.update({m: fps[target] for m in fps if m not in self.reference or m == target})
            label = short_name(target) if len(c.targets) > 1 else "target"
            self._atlas[target] = atlas_record(c, label, vectors["v"])
            keyed = [(cell, self.keys.key(cell, fps[cell.variant.model], vectors)) for cell in cells]
            plan += [{"target": target, "key": k, **plan_row(cell)} for cell, k in keyed]
            groups.append((target, [kc for kc in keyed if kc[0].variant.model == target], True))
            for donor in dict.fromkeys(cell.variant.model for cell in cells if cell.variant.model != target):
                groups.append((donor, [kc for kc in keyed if kc[0].variant.model == donor], False))
        return plan, groups

    def _applicable(self, cell: PlannedCell) -> bool:
        """Whether the cell's perturbation can change its task's items; an inapplicable pair is
        dropped from the matrix once, with a note in the report."""
        note = skip_note(cell, self.source, self.preset, seed=self.config.seed)
        if note is not None and note not in self.run_state.notes:
            self.run_state.notes.append(note)
        return note is None

    def write_plan(self, plan: list[dict[str, Any]]) -> None:
        c = self.config
        self._plan_rows = plan
        write_json(
            self.out_dir / "study.json",
            {
                "rvec_version": __version__,
                "title": c.title,
                "seed": c.seed,
                "bootstrap_resamples": c.bootstrap_resamples,
                "preset": self.preset.to_dict(),
                "backend": c.backend.model_dump(),
                "vector": c.vector,
                **({"combine": combine_record(c)} if c.vectors or c.combine or c.rows else {}),
                "notes": self.run_state.notes,
                "cells": plan,
                **({"atlas": self._atlas} if any(self._atlas.values()) else {}),
            },
            indent=1,
            default=str,
        )

    def _run_model(
        self, model_source: str, keyed: list[tuple[PlannedCell, str]], vectors: dict[str, HashedDelta]
    ) -> None:
        # One model can be two variants (a target that is also the SFT donor): one key, computed
        # once; the other variants take that cell under their own names.
        todo: list[tuple[PlannedCell, str]] = []
        repeats: list[tuple[PlannedCell, str]] = []
        for cell, key in keyed:
            cached = load_cell(self.cells_dir, key)
            if cached is not None:
                self._finish(replace(cached, variant=cell.variant), cached=True)
            elif key in {k for _, k in todo}:
                repeats.append((cell, key))
            else:
                todo.append((cell, key))
        if not todo:
            return
        if getattr(self.config.backend, "replicas", 1) > 1:
            self._evaluate_replicated(model_source, todo, vectors)
        else:
            self._evaluate_model(model_source, todo, vectors)
        for cell, key in repeats:
            done = load_cell(self.cells_dir, key)
            if done is None:
                raise RvecError(f"{cell.task}: the cell of {cell.variant.name} was evaluated but not saved")
            self._finish(replace(done, variant=cell.variant), cached=True)

    def _evaluate_model(
        self, model_source: str, todo: list[tuple[PlannedCell, str]], vectors: dict[str, HashedDelta]
    ) -> None:
        with self.loaded(model_source, vectors) as state:
            self.evaluate_groups(state, by_model_state(todo), vectors, reference=self.reference[model_source])

    @contextmanager
    def loaded(self, model_source: str, vectors: dict[str, HashedDelta]) -> Iterator[ModelState]:
        """The model loaded once on the study's backend, every vector attached; closed (θ₀ restored,
        weights freed) on the way out."""
        with timed(self.run_state.timings, "load"):
            state = self.backend.load(self.local(model_source), self.config.backend)
        try:
            if vectors:
                state.attach(list(vectors.values()))  # read once; the α switches below read nothing
            yield state
        finally:
            with timed(self.run_state.timings, "apply"):
                state.close()  # θ₀ restored bit for bit; the weights are freed with the state

    def evaluate_groups(
        self,
        state: ModelState,
        groups: list[StateGroup],
        vectors: dict[str, HashedDelta],
        *,
        reference: str,
    ) -> None:
        """Evaluate each group's cells after one switch of ``state`` to its model state. The cells'
        KL is measured against ``reference``; when ``state`` is that model, its distributions are
        stored first, with its own weights (:mod:`rvec.study.kl`)."""
        current: tuple[Any, ...] | None = None
        if reference == state.base_fingerprint:
            lm = state.language_model()
            every = [
                self.evaluate_args(g.condition, p, perts)
                for g in groups
                for p, perts in evaluation_parts(self.config, g.cells)
            ]
            needed = [args for args in every if self.kl.missing(lm, args, reference)]
            if needed and vectors:
                state.set_vectors([])  # θ₀: a no-op right after loading, a restore within a search
                current = (None, None, None)
            for args in needed:
                with timed(self.run_state.timings, "kl"):
                    self.kl.ensure_reference(state.language_model(), args, reference)
        for group in groups:
            terms = group.terms(vectors)
            if vectors and (group.vector, group.alpha, group.selection) != current:
                # The state's fingerprint, and with it the response cache key, follows each switch.
                with timed(self.run_state.timings, "apply"):
                    state.set_vectors(terms)
                current = (group.vector, group.alpha, group.selection)
            self._evaluate_group(state.language_model(), group, (reference, state.fingerprint))

    def _evaluate_replicated(
        self, model_source: str, todo: list[tuple[PlannedCell, str]], vectors: dict[str, HashedDelta]
    ) -> None:
        """``todo`` on persistent vLLM replicas (``backend: {name: vllm, replicas: N}``): every
        (variant, condition) part becomes one job of :func:`rvec.model.vllm.replicas.run_cells`; each
        replica is one engine for the whole run, every vector attached, α changed between its jobs."""
        from rvec.model.vllm.replicas import CellJob, ReplicaSpec, run_cells
        from rvec.vector.merge_recipe import delta_ref

        names = list(vectors)
        jobs, parts = [], {}
        for group in by_model_state(todo):
            alphas = tuple(float(group.alpha) if n == group.vector and group.alpha else 0.0 for n in names)
            part_of_v = selection_from_record(group.selection) if group.selection is not None else None
            selections = tuple(part_of_v if n == group.vector and group.alpha else None for n in names)
            for part, perturbations in evaluation_parts(self.config, group.cells):
                key = str(len(jobs))
                args = self.evaluate_args(group.condition, part, perturbations)
                jobs.append(CellJob(key, alphas, args, selections))
                parts[key] = part
        settings = self.config.backend
        refs = tuple(delta_ref(v) for v in vectors.values())  # folders; a merge as its recipe
        spec = ReplicaSpec(source=self.local(model_source), vectors=refs, settings=settings)  # type: ignore[arg-type]
        self.progress.describe(note=f"{len(jobs)} jobs on {settings.replicas} replicas")  # type: ignore[attr-defined]
        with timed(self.run_state.timings, "evaluate"):
            outcomes = run_cells(spec, jobs)
        for key, outcome in outcomes.items():
            self.finish_part(parts[key], outcome.result, outcome.seconds)

    def _evaluate_group(self, lm: LanguageModel, group: StateGroup, kl: tuple[str, str]) -> None:
        """All todo cells of one model state and condition in batched evaluations, then one cached
        cell per task key (a crash loses at most this group's unsaved cells; the response cache
        keeps what was generated). ``kl`` is (reference fingerprint, current fingerprint)."""
        variant = group.cells[0][0].variant
        self.progress.describe(note=f"{variant.name} · {group.condition} · {len(group.cells)} cells")
        # Perturbations apply to the study's clean tasks only: tasks without one are evaluated in a
        # call of their own, so no perturbed copy is generated that no cell asked for.
        for part, perturbations in evaluation_parts(self.config, group.cells):
            self._evaluate_part(lm, group.condition, part, perturbations, kl)

    def _evaluate_part(
        self,
        lm: LanguageModel,
        condition: str,
        part: list[tuple[PlannedCell, str]],
        perturbations: list[str],
        kl: tuple[str, str],
    ) -> None:
        from rvec.eval.runner import evaluate

        start = time.perf_counter()
        args = self.evaluate_args(condition, part, perturbations)
        with timed(self.run_state.timings, "evaluate"):
            result = evaluate(lm, **args)
        seconds = time.perf_counter() - start
        with timed(self.run_state.timings, "kl"):
            divergences = self.kl.measure(lm, args, *kl)
        self.finish_part(part, result, seconds, divergences)

    def evaluate_args(
        self, condition: str, part: list[tuple[PlannedCell, str]], perturbations: list[str]
    ) -> dict[str, Any]:
        """The arguments of :func:`rvec.eval.runner.evaluate` for one part, besides the model."""
        items = part[0][0].items  # parts share one limit or one split: see parts_of
        return {
            "tasks": list(dict.fromkeys(cell.base_task for cell, _ in part)),
            "preset": self.preset,
            "condition": condition,
            "perturbations": perturbations,
            "limit": self.config.limit_for(part[0][0].base_task) if items is None else None,
            "doc_ids": list(items) if items is not None else None,
            "data_dir": Path(self.config.data_dir) if self.config.data_dir else None,
            "allow_code_execution": self.config.allow_code_execution,
            "seed": self.config.seed,
            "progress": False,
            "cache_dir": self.out_dir / "responses",
        }

    def finish_part(
        self,
        part: list[tuple[PlannedCell, str]],
        result: Any,
        seconds: float,
        divergences: dict[str, tuple[dict[str, Any], dict[str, float]]] | None = None,
    ) -> None:
        """Record every cell of ``part`` from one evaluate() result that took ``seconds``, with each
        task key's KL (:meth:`rvec.study.kl.KLMeter.measure`) where it was measured
        (:mod:`rvec.study.records` builds each cell)."""
        seconds /= len(part)
        tokens = result.generated_tokens // len(part)
        for cell, key in part:
            samples, extra = cell_samples(
                cell.task, result.samples.get(cell.task), (divergences or {}).get(cell.task)
            )
            done = make_cell(
                cell,
                key,
                samples,
                seconds=seconds,
                tokens=tokens,
                extra=extra,
                preset=self.preset,
                source=self.source,
                limit=self.config.limit_for(cell.base_task),
            )
            save_cell(self.cells_dir, done, samples)
            self._finish(done, cached=False)

    def _finish(self, cell: CellResult, *, cached: bool) -> None:
        self.run_state.cells.append(cell)
        if cached:
            self.run_state.cached += 1
        else:
            self.run_state.computed += 1
        self.progress.advance()
        if self.on_cell is not None:
            self.on_cell(cell, cached)
