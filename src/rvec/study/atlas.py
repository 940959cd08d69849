"""Slices and the atlas of v as study variants: each a part of v set in memory
(:meth:`rvec.model.state.ModelState.set_vectors` with a :class:`~rvec.vector.masks.Selection`).

The atlas cuts the layers into ``blocks`` equal depth blocks (layer ``l`` of ``L`` in block
``⌊l·blocks/L⌋``, the rule of ``profile:`` schedules) and crosses them with the module groups
(attention, MLP, or the study's own). Each part P is evaluated as "only P" (``Selection(layers,
classes)``) and as "all of v but P" (the same with ``invert``), so the two add up to v exactly. The
report reads the parts back from ``study.json`` (:func:`atlas_record`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rvec.errors import ConfigError
from rvec.study.specs import AtlasSpec
from rvec.study.types import Variant
from rvec.vector.family import layer_of
from rvec.vector.masks import Selection, selection_from_record

if TYPE_CHECKING:
    from rvec.study.config import StudyConfig
    from rvec.vector.artifact import ReasoningVector

__all__ = [
    "AtlasPart",
    "atlas_alpha",
    "atlas_parts",
    "atlas_record",
    "block_layers",
    "check_parts_select",
    "full_name",
    "num_layers_of",
    "part_variants",
]


@dataclass(frozen=True)
class AtlasPart:
    """One cell of the atlas: a module group within a depth block."""

    group: str
    block: int
    layers: tuple[int, ...]
    classes: tuple[str, ...]

    @property
    def label(self) -> str:
        """``attention L0–9``."""
        return f"{self.group} L{self.layers[0]}–{self.layers[-1]}"

    def selection(self, *, invert: bool = False) -> Selection:
        """Only this part of v, or (``invert``) all of v but this part."""
        return Selection(layers=frozenset(self.layers), classes=frozenset(self.classes), invert=invert)


def block_layers(num_layers: int, blocks: int) -> list[tuple[int, ...]]:
    """The layers of each depth block: layer ``l`` is in block ``⌊l·blocks/num_layers⌋``.

    Example:
        >>> block_layers(5, 2)
        [(0, 1, 2), (3, 4)]
    """
    out: list[list[int]] = [[] for _ in range(blocks)]
    for layer in range(num_layers):
        out[layer * blocks // num_layers].append(layer)
    return [tuple(b) for b in out if b]


def atlas_parts(spec: AtlasSpec, num_layers: int) -> list[AtlasPart]:
    """Every part, group by group, shallow to deep."""
    return [
        AtlasPart(group, i, layers, tuple(classes))
        for group, classes in spec.groups.items()
        for i, layers in enumerate(block_layers(num_layers, spec.blocks))
    ]


def atlas_alpha(spec: AtlasSpec, alphas: list[float]) -> float:
    """The α of the atlas's parts and of the full v they are compared with: its own, else the
    study's first."""
    return float(spec.alpha if spec.alpha is not None else alphas[0])


def _plus(label: str, alpha: float, what: str) -> str:
    sign = "+" if alpha >= 0 else "−"
    return f"{label} {sign} {abs(alpha):g}·v[{what}]"


def full_name(label: str, alpha: float) -> str:
    """The name :func:`rvec.study.plan.variants_for` gives ``target + α·v``."""
    sign = "+" if alpha > 0 else "−"
    return f"{label} {sign} {abs(alpha):g}·v"


def part_variants(config: StudyConfig, label: str, target: str, num_layers: int | None) -> list[Variant]:
    """The slice and atlas variants of one target, in report order: each slice, then the full v at
    the atlas's α (when ``alphas`` lacks it), then each atlas part alone and v without it.

    Args:
        config (StudyConfig): The study.
        label (str): The target's row label (``target``, or its short name with several targets).
        target (str): The target's source.
        num_layers (int | None): The vector's layers (blocks are cut from them); ``None`` skips the atlas.
    """
    out = [
        Variant(_plus(label, s.alpha, s.label), s.kind, target, "v", s.alpha, s.selection().describe())
        for s in config.slices
    ]
    if config.atlas is None or num_layers is None:
        return out
    alpha = atlas_alpha(config.atlas, config.alphas)
    if alpha not in config.alphas:
        out.append(Variant(full_name(label, alpha), "vector", target, "v", alpha))
    parts = atlas_parts(config.atlas, num_layers)
    # Every "only P" before every "all but P": consecutive cells then differ in two parts of v, and
    # a switch rewrites (on vLLM: reloads) only the parameters whose terms change.
    out += [
        Variant(_plus(label, alpha, part.label), "slice", target, "v", alpha, part.selection().describe())
        for part in parts
    ]
    if config.atlas.complement:
        out += [
            Variant(
                _plus(label, alpha, f"all but {part.label}"),
                "slice",
                target,
                "v",
                alpha,
                part.selection(invert=True).describe(),
            )
            for part in parts
        ]
    return out


def atlas_record(config: StudyConfig, label: str, vector: ReasoningVector) -> dict[str, Any] | None:
    """What the report needs to draw the atlas of one target, for ``study.json``: the baseline and
    full-v variant names, and per part its group, block, layers, variant names and share of ‖v‖²
    (from the norms ``rvec.json`` records per tensor); ``None`` without an atlas."""
    if config.atlas is None:
        return None
    num_layers = num_layers_of(vector)
    alpha = atlas_alpha(config.atlas, config.alphas)
    norms = {n: float(t.get("norm") or 0.0) ** 2 for n, t in vector.manifest["tensors"].items()}
    total = sum(norms.values()) or 1.0
    parts = []
    covered = 0.0
    for part in atlas_parts(config.atlas, num_layers):
        share = sum(sq for n, sq in norms.items() if part.selection().selects(n)) / total
        covered += share
        parts.append(
            {
                "label": part.label,
                "group": part.group,
                "block": part.block,
                "layers": list(part.layers),
                "classes": list(part.classes),
                "norm_share": share,
                "only": _plus(label, alpha, part.label),
                "all_but": _plus(label, alpha, f"all but {part.label}") if config.atlas.complement else None,
            }
        )
    return {
        "alpha": alpha,
        "blocks": config.atlas.blocks,
        "groups": {g: list(c) for g, c in config.atlas.groups.items()},
        "baseline": label,
        "full": full_name(label, alpha),
        "uncovered_norm_share": max(0.0, 1.0 - covered),
        "parts": parts,
    }


def num_layers_of(vector: ReasoningVector) -> int:
    """Layers of the model family v was made for (its recorded family, else its tensor names)."""
    recorded = vector.family.get("num_hidden_layers")
    if recorded:
        return int(recorded)
    layers = [layer_of(n) for n in vector.shapes]
    return 1 + max((x for x in layers if x is not None), default=-1)


def check_parts_select(variants: list[Variant], vector: ReasoningVector, *, source: str) -> None:
    """Refuse slices and atlas parts that select no tensor of ``v`` (they would silently evaluate
    the target under another name). The study file's check sees v's tensors only when ``vector:`` is
    a folder; this one runs once v exists (extracted from the donors), before any cell is evaluated.

    Raises:
        ConfigError: one problem per part that selects nothing.
    """
    names = list(vector.shapes)
    parts = {v.name: v.selection for v in variants if v.selection is not None}  # one per name
    problems = [
        f"{name}: selects no tensor of v ({len(names)} tensors, e.g. {names[0]}); check its layers, "
        "classes and patterns"
        for name, record in parts.items()
        if not any(selection_from_record(record).selects(n) for n in names)
    ]
    if problems:
        raise ConfigError(problems, source=source)
