"""Executes a study's matrix: prepares vectors once (:mod:`rvec.study.vectors`), keys every cell
(:mod:`rvec.study.cells`), loads each model once on the study's backend (:mod:`rvec.model`) or on
persistent vLLM replicas, switches α in memory, evaluates the cells that are not cached, and saves
each as soon as it finishes."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rvec import __version__
from rvec.atomic import write_json
from rvec.checkpoint.local import local_folder
from rvec.checkpoint.source import resolve
from rvec.errors import RvecError
from rvec.eval.data import DataSource
from rvec.eval.tasks.registry import get_task
from rvec.eval.types import LanguageModel
from rvec.model.registry import get_backend
from rvec.model.state import HashedDelta
from rvec.progress import ProgressBar, timed
from rvec.study.cells import CellKeys, load_cell, save_cell
from rvec.study.combine import combination_vectors, combine_record
from rvec.study.config import StudyConfig
from rvec.study.plan import PlannedCell, by_model_state, plan_cells, plan_row, resolved_preset, skip_note
from rvec.study.types import CellCallback, CellResult, StudyRun
from rvec.study.vectors import prepare_vectors
from rvec.vector.masks import selection_from_record

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
        self._local: dict[str, str] = {}

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
    def run(self) -> StudyRun:
        """Plan every cell, write ``study.json``, then evaluate model by model."""
        with timed(self.run_state.timings, "extract"):
            vectors: dict[str, HashedDelta] = prepare_vectors(
                self.config, self.out_dir / "vectors", local=self.local, notes=self.run_state.notes
            )
            vectors.update(combination_vectors(self.config, vectors))  # named vectors, merges in memory
        plan, groups = self._plan(vectors)
        self._write_plan(plan)
        self.progress = ProgressBar("cells", total=len(plan), unit="cells", enabled=self.show_progress)
        with self.progress:
            for model, keyed, with_vectors in groups:
                self._run_model(model, keyed, vectors if with_vectors else {})
        return self.run_state

    def _plan(
        self, vectors: dict[str, HashedDelta]
    ) -> tuple[list[dict[str, Any]], list[tuple[str, list[tuple[PlannedCell, str]], bool]]]:
        """``study.json``'s cell rows, and the keyed cells grouped by the model they load (a target
        first, with the vectors; then each donor, without)."""
        c = self.config
        rl = c.donors.rl if c.donors is not None and c.controls.rl_donor_think is not False else None
        plan: list[dict[str, Any]] = []
        groups: list[tuple[str, list[tuple[PlannedCell, str]], bool]] = []
        for target in c.targets:
            cells = [cell for cell in plan_cells(c, target, rl_donor=rl) if self._applicable(cell)]
            fps = {m: resolve(self.local(m)).fingerprint() for m in {cell.variant.model for cell in cells}}
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

    def _write_plan(self, plan: list[dict[str, Any]]) -> None:
        c = self.config
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
        with timed(self.run_state.timings, "load"):
            state = self.backend.load(self.local(model_source), self.config.backend)
        try:
            if vectors:
                state.attach(list(vectors.values()))  # read once; the α switches below read nothing
            current: tuple[Any, ...] | None = None
            for group in by_model_state(todo):
                terms = group.terms(vectors)
                if vectors and (group.vector, group.alpha, group.selection) != current:
                    # The state's fingerprint, and with it the response cache key, follows each switch.
                    with timed(self.run_state.timings, "apply"):
                        state.set_vectors(terms)
                    current = (group.vector, group.alpha, group.selection)
                self._evaluate_group(state.language_model(), group.condition, group.cells)
        finally:
            with timed(self.run_state.timings, "apply"):
                state.close()  # θ₀ restored bit for bit; the weights are freed with the state

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
            for part, perturbations in self.parts_of(group.cells):
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

    def _evaluate_group(
        self, lm: LanguageModel, condition: str, group: list[tuple[PlannedCell, str]]
    ) -> None:
        """All todo cells of one model state and condition in batched evaluations, then one cached
        cell per task key (a crash loses at most this group's unsaved cells; the response cache
        keeps what was generated)."""
        variant = group[0][0].variant
        self.progress.describe(note=f"{variant.name} · {condition} · {len(group)} cells")
        # Perturbations apply to the study's clean tasks only: tasks without one are evaluated in a
        # call of their own, so no perturbed copy is generated that no cell asked for.
        for part, perturbations in self.parts_of(group):
            self._evaluate_part(lm, condition, part, perturbations)

    def parts_of(
        self, group: list[tuple[PlannedCell, str]]
    ) -> list[tuple[list[tuple[PlannedCell, str]], list[str]]]:
        """The cells of one (variant, condition) group split into evaluate() calls: one per
        (perturbed or not, task limit), since evaluate() takes one perturbation list and one limit."""
        by_kind: dict[tuple[bool, int | None], list[tuple[PlannedCell, str]]] = {}
        for cell, key in group:
            kind = (self._perturbed_tasks(cell.base_task), self.config.limit_for(cell.base_task))
            by_kind.setdefault(kind, []).append((cell, key))
        return [(p, self._perturbations() if perturbed else []) for (perturbed, _), p in by_kind.items()]

    def _perturbations(self) -> list[str]:
        from rvec.eval.perturb import parse_perturbations

        return [p.name for spec in self.config.perturbations for p in parse_perturbations(spec)]

    def _perturbed_tasks(self, base_task: str) -> bool:
        from rvec.eval.tasks.registry import expand_task_names

        return bool(self.config.perturbations) and base_task in expand_task_names(self.config.tasks)

    def _evaluate_part(
        self, lm: LanguageModel, condition: str, part: list[tuple[PlannedCell, str]], perturbations: list[str]
    ) -> None:
        from rvec.eval.runner import evaluate

        start = time.perf_counter()
        with timed(self.run_state.timings, "evaluate"):
            result = evaluate(lm, **self.evaluate_args(condition, part, perturbations))
        self.finish_part(part, result, time.perf_counter() - start)

    def evaluate_args(
        self, condition: str, part: list[tuple[PlannedCell, str]], perturbations: list[str]
    ) -> dict[str, Any]:
        """The arguments of :func:`rvec.eval.runner.evaluate` for one part, besides the model."""
        return {
            "tasks": list(dict.fromkeys(cell.base_task for cell, _ in part)),
            "preset": self.preset,
            "condition": condition,
            "perturbations": perturbations,
            "limit": self.config.limit_for(part[0][0].base_task),  # parts share one limit: see parts_of
            "data_dir": Path(self.config.data_dir) if self.config.data_dir else None,
            "allow_code_execution": self.config.allow_code_execution,
            "seed": self.config.seed,
            "progress": False,
            "cache_dir": self.out_dir / "responses",
        }

    def finish_part(self, part: list[tuple[PlannedCell, str]], result: Any, seconds: float) -> None:
        """Record every cell of ``part`` from one evaluate() result that took ``seconds``."""
        seconds /= len(part)
        tokens = result.generated_tokens // len(part)
        for cell, key in part:
            records = result.samples.get(cell.task)
            if records is None:
                raise RvecError(
                    f"{cell.task}: the evaluation returned no samples (is the perturbation applicable to this task?)"
                )
            self._finish(
                self._cell(cell, key, [dict(vars(r)) for r in records], seconds, tokens), cached=False
            )

    def _cell(
        self, cell: PlannedCell, key: str, samples: list[dict[str, Any]], seconds: float, tokens: int
    ) -> CellResult:
        per_item = {str(s["doc_id"]): bool(s["correct"]) for s in samples}
        if cell.clean_task != cell.base_task:
            per_item = self._paired(cell.base_task, per_item)
        metrics = list(dict.fromkeys(k for s in samples for k in s["metrics"]))
        scores = {k: sum(float(s["metrics"].get(k, 0.0)) for s in samples) / len(samples) for k in metrics}
        result = CellResult(
            variant=cell.variant,
            condition=cell.condition,
            task=cell.task,
            primary=samples[0].get("primary") or get_task(cell.base_task)._primary(self.preset),
            scores=scores,
            per_item=per_item,
            clean_task=cell.clean_task,
            cache_key=key,
            seconds=seconds,
            generated_tokens=tokens,
        )
        save_cell(self.cells_dir, result, samples)
        return result

    def _paired(self, task_name: str, per_item: dict[str, bool]) -> dict[str, bool]:
        """Key an adversarial cell by the id of the clean item it came from (GSM-Symbolic rows name
        their template instance; the pairing is by the GSM8K original), when that is one-to-one."""
        task = get_task(task_name)
        mapping = {
            d.doc_id: task.paired_doc_id(d) or d.doc_id
            for d in task.docs(self.source, limit=self.config.limit_for(task_name))
        }
        paired = [mapping.get(k, k) for k in per_item]
        if len(set(paired)) != len(paired):
            return per_item
        return {mapping.get(k, k): v for k, v in per_item.items()}

    def _finish(self, cell: CellResult, *, cached: bool) -> None:
        self.run_state.cells.append(cell)
        if cached:
            self.run_state.cached += 1
        else:
            self.run_state.computed += 1
        self.progress.advance()
        if self.on_cell is not None:
            self.on_cell(cell, cached)


__all__ = ["StudyExecutor"]
