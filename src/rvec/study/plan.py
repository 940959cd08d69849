"""The study matrix: which model variants are evaluated on which task, under which condition.

Variants per target: the target itself (baseline), ``target + α·v`` for every α (``alphas`` and the
α sweep), ``target − α₀·v`` (subtraction), ``target + α₀·r`` for each random control seed,
``target + 1·name`` for each named vector and ``target + METHOD(…)`` for each combination
(:mod:`rvec.study.combine`); and the RL donor under ``think`` (the paper's "G+T"), or both donors
under every condition with ``controls.donor_rows``, and the models of ``rows:``. Tasks: every clean task, its perturbed copies
(``task+perturbation``), every adversarial task and the clean task its items pair with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rvec.eval.data import DataSource
from rvec.eval.overrides import apply_overrides
from rvec.eval.perturb import parse_perturbations
from rvec.eval.presets import Preset, get_preset
from rvec.eval.tasks.registry import expand_task_names, get_task
from rvec.study.atlas import part_variants
from rvec.study.combine import extra_variants, row_variants
from rvec.study.config import StudyConfig
from rvec.study.types import Variant
from rvec.vector.masks import selection_from_record

# Adversarial task → the clean task whose items (by doc_id) it pairs with.
CLEAN_OF_ADVERSARIAL = {"gsm-symbolic": "gsm-symbolic:original"}


def clean_task_of(name: str) -> str:
    """``gsm-plus:<type>`` → ``gsm-plus:seed``; ``gsm-symbolic`` → ``gsm-symbolic:original``; else itself."""
    if name.startswith("gsm-plus:") and name != "gsm-plus:seed":
        return "gsm-plus:seed"
    return CLEAN_OF_ADVERSARIAL.get(name, name)


@dataclass(frozen=True)
class PlannedCell:
    """One cell to evaluate: ``task`` is the key in results (``gsm8k+typo:0.05``), ``base_task``
    the registry task, ``perturbation`` the programmatic perturbation or ``None``, ``items`` the doc
    ids of a split or ``None``."""

    variant: Variant
    condition: str
    task: str
    base_task: str
    perturbation: str | None
    clean_task: str
    items: tuple[str, ...] | None = None
    """Exactly these doc ids of the task (a search's dev or test split), instead of the study's
    first ``limit`` items."""


def short_name(model: str) -> str:
    return model.rstrip("/").split("/")[-1].removesuffix(".gguf")


def variants_for(config: StudyConfig, target: str, *, num_layers: int | None = None) -> list[Variant]:
    """Variants of one target in report order (baseline first; slices and the atlas's parts last,
    :func:`rvec.study.atlas.part_variants`, whose depth blocks are cut from v's ``num_layers``)."""
    label = short_name(target) if len(config.targets) > 1 else "target"
    v_name = "random-as-v" if config.random_in_place_of_v is not None else "v"
    first = config.alphas[0]
    out = [Variant(label, "baseline", target)]
    for alpha in [*config.alphas, *[a for a in config.controls.alpha_sweep if a not in config.alphas]]:
        if alpha == 0:
            continue
        kind = "vector" if alpha > 0 else "subtraction"
        sign = "+" if alpha > 0 else "−"
        out.append(Variant(f"{label} {sign} {abs(alpha):g}·{v_name}", kind, target, "v", alpha))
    if config.controls.subtraction and -first not in [v.alpha for v in out]:
        out.append(Variant(f"{label} − {first:g}·{v_name}", "subtraction", target, "v", -first))
    for seed in config.controls.random_seeds:
        out.append(
            Variant(f"{label} + {first:g}·random({seed})", "random-control", target, f"random:{seed}", first)
        )
    out += extra_variants(config, target, label)  # named vectors, combinations (study.combine)
    return out + part_variants(config, label, target, num_layers)


def tasks_for(config: StudyConfig) -> list[tuple[str, str, str | None, str]]:
    """``(task key, base task, perturbation, clean task)`` for every evaluated task, clean first."""
    clean = expand_task_names(config.tasks)
    rows: list[tuple[str, str, str | None, str]] = [(t, t, None, t) for t in clean]
    perturbations = [p for spec in config.perturbations for p in parse_perturbations(spec)]
    for t in clean:
        for p in perturbations:
            rows.append((f"{t}+{p.name}", t, p.name, t))
    for adv in expand_task_names(config.adversarial) if config.adversarial else []:
        partner = clean_task_of(adv)
        if partner not in [r[0] for r in rows]:
            rows.append((partner, partner, None, partner))
        if adv != partner:
            rows.append((adv, adv, None, partner))
    return rows


def plan_cells(
    config: StudyConfig, target: str, *, rl_donor: str | None, num_layers: int | None = None
) -> list[PlannedCell]:
    """Every cell of one target (plus the RL donor's ``think`` cells), grouped by variant."""
    tasks = tasks_for(config)
    cells = []
    for variant in variants_for(config, target, num_layers=num_layers):
        for condition in config.conditions:
            for key, base, pert, clean in tasks:
                cells.append(PlannedCell(variant, condition, key, base, pert, clean))
    if config.donors is not None and config.controls.donor_rows:
        for name, source in (("SFT donor", config.donors.sft), ("RL donor", config.donors.rl)):
            donor = Variant(name, "donor", source)
            for condition in config.conditions:
                for key, base, pert, clean in tasks:
                    cells.append(PlannedCell(donor, condition, key, base, pert, clean))
    elif rl_donor is not None and "think" in config.conditions:
        donor = Variant("RL donor", "donor", rl_donor)
        for key, base, pert, clean in tasks:
            cells.append(PlannedCell(donor, "think", key, base, pert, clean))
    for row in row_variants(config):  # the study's rows: other models, evaluated as they are
        for condition in config.conditions:
            cells += [PlannedCell(row, condition, key, base, pert, clean) for key, base, pert, clean in tasks]
    return cells


@dataclass(frozen=True)
class StateGroup:
    """The todo cells of one model state and condition: evaluated together after one switch."""

    vector: str | None
    alpha: float | None
    selection: dict[str, Any] | None
    condition: str
    cells: list[tuple[PlannedCell, str]]

    def terms(self, vectors: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The model state's ``set_vectors`` terms (none for a baseline or a donor)."""
        if self.vector is None or not self.alpha:
            return []
        if self.selection is None:
            return [(vectors[self.vector], self.alpha)]
        return [(vectors[self.vector], self.alpha, selection_from_record(self.selection))]


def by_model_state(todo: list[tuple[PlannedCell, str]]) -> list[StateGroup]:
    """The cells grouped per variant and condition, in plan order, so the weights switch once per
    variant at most."""
    groups: dict[tuple[str, str], list[tuple[PlannedCell, str]]] = {}
    variants: dict[str, Variant] = {}
    for cell, key in todo:
        variants[cell.variant.name] = cell.variant
        groups.setdefault((cell.variant.name, cell.condition), []).append((cell, key))
    return [
        StateGroup(variants[name].vector, variants[name].alpha, variants[name].selection, condition, cells)
        for (name, condition), cells in groups.items()
    ]


def resolved_preset(config: StudyConfig) -> Preset:
    """The preset with the study's changes applied and named (:func:`rvec.eval.overrides.apply_overrides`):
    ``max_new_tokens`` for every generating task (``paper[max_new_tokens=64]``, as always), and the
    sampling, thinking and chat-template switches, all recorded in the preset and its cell keys."""
    return apply_overrides(get_preset(config.preset), config.overrides())


def plan_row(cell: PlannedCell) -> dict[str, Any]:
    """The cell as ``study.json`` lists it (the report rebuilds variants from these rows)."""
    return {
        "variant": cell.variant.name,
        "kind": cell.variant.kind,
        "model": cell.variant.model,
        "vector_label": cell.variant.vector,
        "alpha": cell.variant.alpha,
        **({"selection": cell.variant.selection} if cell.variant.selection is not None else {}),
        "condition": cell.condition,
        "task": cell.task,
    }


def skip_note(cell: PlannedCell, source: DataSource, preset: Preset, *, seed: int) -> str | None:
    """Why the cell's perturbation cannot change its task's items (e.g. no option shuffle on GSM8K),
    or ``None`` when it applies: tried on the task's first item."""
    if cell.perturbation is None:
        return None
    from rvec.errors import PerturbationNotApplicableError
    from rvec.eval.perturb import perturb

    task = get_task(cell.base_task)
    try:
        perturb(
            task,
            task.docs(source, limit=1)[0],
            preset,
            parse_perturbations(cell.perturbation)[0],
            seed=seed,
            condition=cell.condition,
        )
    except PerturbationNotApplicableError as err:
        return f"{cell.task} skipped: {err}"
    return None


def evaluation_parts(
    config: StudyConfig, group: list[tuple[PlannedCell, str]]
) -> list[tuple[list[tuple[PlannedCell, str]], list[str]]]:
    """The cells of one (variant, condition) group split into evaluate() calls: one per (perturbed or
    not, task limit, item split), since evaluate() takes one perturbation list and one limit.

    Returns:
        list: ``(cells, perturbation names)`` per call.
    """
    perturbed = bool(config.perturbations)
    tasks = set(expand_task_names(config.tasks)) if perturbed else set()
    names = [p.name for spec in config.perturbations for p in parse_perturbations(spec)]
    by_kind: dict[tuple[bool, int | None, tuple[str, ...] | None], list[tuple[PlannedCell, str]]] = {}
    for cell, key in group:
        kind = (perturbed and cell.base_task in tasks, config.limit_for(cell.base_task), cell.items)
        by_kind.setdefault(kind, []).append((cell, key))
    return [(part, names if is_perturbed else []) for (is_perturbed, _, _), part in by_kind.items()]
