"""The parts of v a study evaluates, as ``study.yaml`` writes them: named ``slices``, the ``atlas``
(depth blocks × module-class groups, each part alone and v without it) and the α ``search``; and
the checks of those sections pydantic cannot express (every problem one line, all at once).

Example ``study.yaml`` sections::

    slices:
      - {name: early attention, layers: 0-9, classes: [attn.q, attn.k, attn.v, attn.o]}
      - {name: ramp, schedule: "linear:0:2"}
    atlas: {blocks: 3, groups: {attention: [attn.q, attn.k, attn.v, attn.o], mlp: [mlp.gate, mlp.up, mlp.down]}}
    search: {task: arith, dev: 60, test: 150, profile: 3, bounds: [0.0, 2.0], trials: 12}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, PositiveInt

from rvec.errors import RvecError
from rvec.vector.family import CLASS_ORDER
from rvec.vector.masks import Selection, parse_selection

__all__ = ["DEFAULT_GROUPS", "AtlasSpec", "SearchSpec", "SliceSpec", "part_errors"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")

DEFAULT_GROUPS: dict[str, list[str]] = {
    "attention": [c for c in CLASS_ORDER if c.startswith("attn.")],
    "mlp": [c for c in CLASS_ORDER if c.startswith("mlp.")],
}
"""The atlas's module groups unless the study names its own: attention (q, k, v, o and fused
projections) and MLP (gate, up, down); norms and embeddings are in no part (the report says how
much of ‖v‖ that leaves out)."""


class SliceSpec(BaseModel):
    """One named part of v, applied as ``rvec apply --layers/--classes/--include/--exclude/--schedule`` would."""

    model_config = _FROZEN
    name: str | None = None
    """Row label in the report (default: built from the fields)."""
    layers: str | None = None
    """Layer ranges, e.g. ``0-9,20``."""
    classes: list[str] | None = None
    """Module classes (``attn.q`` … ``mlp.down``, ``norm``, ``embed``; :data:`rvec.vector.family.CLASS_ORDER`)."""
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    schedule: str | None = None
    """Per-depth α: ``linear:A:B``, ``constant:C`` or ``profile:A,B,…`` (optionally ``:outside=X``)."""
    invert: bool = False
    """All of v but the part the other fields select."""
    alpha: FiniteFloat = 1.0

    def selection(self) -> Selection:
        """The :class:`~rvec.vector.masks.Selection` this slice names."""
        return parse_selection(
            include=self.include,
            exclude=self.exclude,
            layers=self.layers,
            schedule=self.schedule,
            classes=self.classes,
            invert=self.invert,
        )

    @property
    def label(self) -> str:
        """``name``, else the fields that are set (``layers 0-9 · attn.q,attn.k``)."""
        if self.name:
            return self.name
        bits = [f"layers {self.layers}" if self.layers else "", ",".join(self.classes or ())]
        bits += [f"include {'|'.join(self.include)}" if self.include else ""]
        bits += [f"exclude {'|'.join(self.exclude)}" if self.exclude else "", self.schedule or ""]
        text = " · ".join(b for b in bits if b) or "all"
        return f"all but {text}" if self.invert else text

    @property
    def kind(self) -> Literal["slice", "profile"]:
        """``profile`` for a per-depth α schedule, else ``slice``."""
        return "profile" if self.schedule else "slice"


class AtlasSpec(BaseModel):
    """The atlas: layers cut into ``blocks`` equal depth blocks × the module ``groups``; each part
    evaluated alone ("only this part of v") and, with ``complement``, as "all of v but this part"."""

    model_config = _FROZEN
    blocks: int = Field(3, ge=1, le=64)
    """Depth blocks (layer ``l`` of ``L`` is in block ``⌊l·blocks/L⌋``, as ``profile:`` schedules cut them)."""
    groups: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_GROUPS))
    """Group name → module classes; a class in no group is in no part."""
    alpha: FiniteFloat | None = None
    """α of every part and of the full v it is compared with (default: the study's first α)."""
    complement: bool = True
    """Also evaluate "all of v but this part" (the leave-one-out drop)."""


class SearchSpec(BaseModel):
    """α search on a dev split of one task, disjoint from its test split by construction."""

    model_config = _FROZEN
    task: str
    """One task (not a group): dev and test items are drawn from its items."""
    dev: PositiveInt
    """Items the search optimises on."""
    test: PositiveInt | None = None
    """Items the best configuration is evaluated on once (default: the study's limit for the task,
    at most every item not in dev)."""
    target: str | None = None
    """The model searched for (a source or a ``models:`` name; default: the study's first target)."""
    condition: str | None = None
    """Prompt condition (default: the study's first)."""
    profile: int = Field(0, ge=0, le=8)
    """0: one global α; N (≤ 8): one α per depth block, N equal blocks."""
    bounds: list[FiniteFloat] = Field(default_factory=lambda: [0.0, 2.0], min_length=2, max_length=2)
    """``[low, high]`` of every α searched."""
    outside: FiniteFloat = 1.0
    """With a profile: the factor of v's tensors outside the blocks (embeddings, final norm)."""
    trials: PositiveInt = 20
    """Trials in all, the first being α = 1 everywhere (v as extracted)."""
    sampler: Literal["tpe", "cmaes"] = "tpe"
    """Optuna's TPE, or CMA-ES (``cmaes``; needs a profile of 2 blocks or more)."""
    startup_trials: PositiveInt | None = None
    """Random trials before TPE models the history (default: a third of ``trials``, 2 to 10)."""

    @property
    def n_params(self) -> int:
        """Parameters searched: 1 (global α) or the profile's blocks."""
        return self.profile or 1


# ------------------------------------------------------------------------------------------ checks
def part_errors(raw: dict[str, Any], vector_folder: Path | None) -> list[str]:
    """Every problem of ``slices``, ``atlas`` and ``search`` that pydantic cannot see: layer
    ranges, classes, patterns and schedules that do not parse, a part that selects no tensor of v
    (when v is a folder the study names), atlas groups that overlap, bounds reversed, a search task
    that is a group, an unknown condition, CMA-ES on one parameter.

    Args:
        raw (dict): The study as read from YAML.
        vector_folder (Path | None): The ``vector:`` folder, resolved; ``None`` when v is made in the run.
    """
    names, layers = _vector_names(vector_folder)
    return [
        *_slice_errors(raw.get("slices"), names),
        *_atlas_errors(raw.get("atlas"), names, layers),
        *_search_errors(raw),
    ]


def _vector_names(folder: Path | None) -> tuple[list[str] | None, int | None]:
    """Tensor names and layer count of the ``vector:`` folder, read from its ``rvec.json`` (no
    shard is read); ``None`` when v is made in the run (donors) or the folder is unreadable (the
    vector check reports that)."""
    if folder is None:
        return None, None
    try:
        manifest = json.loads((folder / "rvec.json").read_text())
        layers = manifest.get("family", {}).get("num_hidden_layers")
        return list(manifest["tensors"]), int(layers) if layers else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None


def _selection_problem(where: str, spec: SliceSpec) -> str | None:
    """The first field of ``spec`` that does not parse, as ``slices[i].field: what is wrong``."""
    from rvec.vector.masks import parse_layers, parse_schedule

    checks: list[tuple[str, Any]] = [
        ("layers", lambda: parse_layers(spec.layers)),
        ("schedule", lambda: parse_schedule(spec.schedule)),
        ("include", lambda: parse_selection(include=spec.include)),
        ("exclude", lambda: parse_selection(exclude=spec.exclude)),
        ("classes", lambda: parse_selection(classes=spec.classes)),
    ]
    for field, check in checks:
        try:
            check()
        except RvecError as err:
            # The parsers speak to the command line ("--layers 9-3: range …"): keep what follows the value.
            text = str(err)
            return f"{where}.{field}: {text.split(': ', 1)[1] if text.startswith('--') else text}"
    return None


def _slice_errors(slices: Any, names: list[str] | None) -> list[str]:
    if not isinstance(slices, list):
        return []
    errors, labels = [], []
    for i, raw in enumerate(slices):
        try:
            spec = SliceSpec.model_validate(raw)
        except ValueError:
            continue  # pydantic's own errors are reported by the config
        labels.append(spec.label)
        problem = _selection_problem(f"slices[{i}]", spec)
        if problem is not None:
            errors.append(problem)
        elif names is not None and not any(spec.selection().selects(n) for n in names):
            errors.append(
                f"slices[{i}] ({spec.label}): selects no tensor of v ({len(names)} tensors, e.g. {names[0]}); "
                "check its layers, classes and patterns"
            )
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    errors += [f"slices: two slices are named {label!r}; give each a distinct name" for label in repeated]
    return errors


def _atlas_errors(atlas: Any, names: list[str] | None, layers: int | None) -> list[str]:
    if not isinstance(atlas, dict):
        return []
    errors: list[str] = []
    groups = atlas.get("groups", DEFAULT_GROUPS)
    if isinstance(groups, dict):
        seen: dict[str, str] = {}
        for group, classes in groups.items():
            if not isinstance(classes, list):
                continue
            if not classes:
                errors.append(f"atlas.groups.{group}: no module class; list some or drop the group")
            for cls in classes:
                if cls not in CLASS_ORDER:
                    errors.append(
                        f"atlas.groups.{group}: unknown module class {cls!r}; valid: {', '.join(CLASS_ORDER)}"
                    )
                elif cls in seen:
                    errors.append(
                        f"atlas.groups.{group}: {cls} is also in group {seen[cls]}; a class belongs to one group"
                    )
                else:
                    seen[cls] = str(group)
            known = [c for c in classes if c in CLASS_ORDER]
            if (
                names is not None
                and known
                and not any(Selection(classes=frozenset(known)).selects(n) for n in names)
            ):
                errors.append(
                    f"atlas.groups.{group}: selects no tensor of v ({', '.join(known)}); drop the group"
                )
    blocks = atlas.get("blocks", 3)
    if isinstance(blocks, int) and layers is not None and blocks > layers:
        errors.append(f"atlas.blocks: {blocks} blocks but v has {layers} layers; use at most {layers}")
    return errors


def _search_errors(raw: dict[str, Any]) -> list[str]:
    search = raw.get("search")
    if not isinstance(search, dict):
        return []
    errors = []
    bounds = search.get("bounds")
    numbers = (
        isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds)
    )
    if numbers and bounds[0] >= bounds[1]:
        errors.append(
            f"search.bounds: [{bounds[0]:g}, {bounds[1]:g}] is reversed or empty; write [low, high] with low < high"
        )
    if (
        search.get("sampler") == "cmaes"
        and isinstance(search.get("profile", 0), int)
        and search.get("profile", 0) < 2
    ):
        errors.append(
            "search.sampler: CMA-ES needs 2 or more parameters; set profile: 2 or more, or sampler: tpe"
        )
    task = search.get("task")
    if isinstance(task, str):
        from rvec.eval.tasks.registry import expand_task_names

        try:
            if expand_task_names(task) != [task]:
                errors.append(
                    f"search.task: {task} is a group of tasks; name one of them (e.g. {expand_task_names(task)[0]})"
                )
        except RvecError as err:
            errors.append(f"search.task: {err}")
    condition = search.get("condition")
    conditions = raw.get("conditions", ["plain", "think"])
    if isinstance(condition, str) and isinstance(conditions, list) and condition not in conditions:
        errors.append(
            f"search.condition: {condition!r} is not among the study's conditions ({', '.join(map(str, conditions))})"
        )
    return errors
