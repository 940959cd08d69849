"""What ``rvec anatomy`` reports: the per-tensor record, how records aggregate into layers, module
classes and the whole vector, and the definitions written beside every figure (``anatomy.json``,
``anatomy.md``, docs/anatomy.md).

Aggregation rules, one per kind of figure:

* norms: root-sum-of-squares (``‖v‖`` of the concatenated tensors), and the relative norm of a
  group is ``√Σ‖v‖² / √Σ‖θ‖²`` — null when a tensor of the group has no known ``‖θ‖``;
* fractions (non-zero, moved): sums of counts over sums of entries;
* ranks and overlaps (and their random baselines): means over the group's matrices weighted by
  ``‖v‖``, so a matrix the vector barely touches barely counts; null when no matrix has the figure;
* cosine: ``Σ⟨v, w⟩ / √(Σ‖v‖²·Σ‖w‖²)``, the cosine of the concatenated tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rvec.vector import family

DEFINITIONS: dict[str, str] = {
    "norm": "‖v‖_F of the tensor, as recorded in rvec.json (exact for every encoding)",
    "base_norm": "‖θ‖_F: the --like target's tensor (read as float32); without --like, ‖θ_SFT‖ = ‖v‖/rel_norm "
    "from rvec.json (unknown where ‖v‖ = 0 or the writer recorded no rel_norm)",
    "rel_norm": "‖v‖_F / ‖θ‖_F",
    "nonzero_fraction": "fraction of the entries of v that are not exactly 0 (1 − rvec.json's zero_fraction)",
    "moved_fraction": "fraction of entries i with float32(θ_i + v_i) ≠ θ_i, θ_i the --like target's value "
    "widened to float32 and the sum rounded to the nearest float32: the entries that adding v at α = 1 "
    "changes in float32 (needs --like)",
    "effective_rank": "exp(−Σ p_i ln p_i), p_i = σ_i / Σ_j σ_j over the singular values σ of v "
    "(Roy & Vetterli 2007); singular values ≤ σ_1·max(m, n)·2⁻²³ count as 0 (float32 rounding, "
    "numpy.linalg.matrix_rank's tolerance)",
    "energy_rank": "the smallest k with Σ_{i≤k} σ_i² ≥ 0.9·Σ σ_i² (the rank that holds 90% of ‖v‖²)",
    "max_rank": "min(m, n) of the matrix",
    "k": "subspace dimension compared: min(--top-k, rank of v, rank of θ)",
    "overlap_left": "‖U_vᵀ U_θ‖_F² / k, U_v and U_θ the top-k left singular vectors (row space: a linear "
    "layer's outputs) of v and θ: 1 = the same subspace, 0 = orthogonal",
    "overlap_right": "‖V_vᵀ V_θ‖_F² / k for the top-k right singular vectors (column space: a linear layer's inputs)",
    "random_left": "k/m, the expected overlap_left of a uniformly random k-dimensional subspace (m rows)",
    "random_right": "k/n, the expected overlap_right of a uniformly random k-dimensional subspace (n columns)",
    "cosine": "⟨v, w⟩ / (‖v‖‖w‖), w the --compare vector's tensor (both read as float32, summed in float64); "
    "null where v or w is zero",
    "compare_norm": "‖w‖_F of the --compare vector's tensor",
}

AGGREGATION: dict[str, str] = {
    "norm": "root-sum-of-squares",
    "base_norm": "root-sum-of-squares (null if any tensor's is unknown)",
    "rel_norm": "√Σ‖v‖² / √Σ‖θ‖²",
    "nonzero_fraction": "Σ non-zero entries / Σ entries",
    "moved_fraction": "Σ moved entries / Σ entries",
    "effective_rank": "mean over the group's matrices weighted by ‖v‖",
    "energy_rank": "mean over the group's matrices weighted by ‖v‖",
    "max_rank": "mean over the group's matrices weighted by ‖v‖",
    "overlap_left": "mean over the group's matrices weighted by ‖v‖",
    "overlap_right": "mean over the group's matrices weighted by ‖v‖",
    "random_left": "mean over the group's matrices weighted by ‖v‖ (the baseline of overlap_left)",
    "random_right": "mean over the group's matrices weighted by ‖v‖ (the baseline of overlap_right)",
    "cosine": "Σ⟨v, w⟩ / √(Σ‖v‖²·Σ‖w‖²) over the tensors both vectors hold",
    "compare_norm": "not aggregated",
}

_WEIGHTED = ("effective_rank", "energy_rank", "max_rank", "overlap_left", "overlap_right")


@dataclass
class TensorAnatomy:
    """The figures of one tensor ``v[name]`` (``None``: not measured, or not defined for it)."""

    name: str
    shape: tuple[int, ...]
    module: str  # rvec.vector.family.module_class
    layer: int | None
    encoding: str
    norm: float
    nonzero_fraction: float
    base_norm: float | None = None
    moved: int | None = None
    effective_rank: float | None = None
    energy_rank: int | None = None
    k: int | None = None
    overlap_left: float | None = None
    overlap_right: float | None = None
    dot: float | None = None  # ⟨v, w⟩ with the --compare vector
    self_sq: float | None = None  # ‖v‖² as read in the same pass (the cosine's own denominator)
    other_sq: float | None = None  # ‖w‖²

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def rel_norm(self) -> float | None:
        return _ratio(self.norm, self.base_norm)

    @property
    def moved_fraction(self) -> float | None:
        return None if self.moved is None else (self.moved / self.numel if self.numel else 0.0)

    @property
    def max_rank(self) -> int | None:
        return min(self.shape) if len(self.shape) == 2 and self.effective_rank is not None else None

    @property
    def random_left(self) -> float | None:
        return self.k / self.shape[0] if self.k else None

    @property
    def random_right(self) -> float | None:
        return self.k / self.shape[1] if self.k else None

    @property
    def cosine(self) -> float | None:
        if self.dot is None or self.self_sq is None or self.other_sq is None:
            return None
        return _cos(self.dot, self.self_sq, self.other_sq)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "module": self.module,
            "layer": self.layer,
            "encoding": self.encoding,
            "norm": self.norm,
            "base_norm": self.base_norm,
            "rel_norm": self.rel_norm,
            "nonzero_fraction": self.nonzero_fraction,
            "moved": self.moved,
            "moved_fraction": self.moved_fraction,
            "effective_rank": self.effective_rank,
            "energy_rank": self.energy_rank,
            "max_rank": self.max_rank,
            "k": self.k,
            "overlap_left": self.overlap_left,
            "random_left": self.random_left,
            "overlap_right": self.overlap_right,
            "random_right": self.random_right,
            "cosine": self.cosine,
            "compare_norm": None if self.other_sq is None else math.sqrt(self.other_sq),
        }


@dataclass(frozen=True)
class Aggregate:
    """The figures of a group of tensors (a layer, a module class, a layer's class, the whole vector)."""

    tensors: int
    numel: int
    norm: float
    base_norm: float | None
    rel_norm: float | None
    nonzero_fraction: float
    moved_fraction: float | None
    effective_rank: float | None
    energy_rank: float | None
    max_rank: float | None
    overlap_left: float | None
    random_left: float | None
    overlap_right: float | None
    random_right: float | None
    cosine: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def aggregate(records: Sequence[TensorAnatomy]) -> Aggregate:
    """Combine ``records`` by the module docstring's rules.

    Raises:
        ValueError: ``records`` is empty (a group always has a tensor).
    """
    if not records:
        raise ValueError("aggregate: no tensors")
    numel = sum(r.numel for r in records)
    norm = math.sqrt(sum(r.norm**2 for r in records))
    bases = [r.base_norm for r in records]
    base = math.sqrt(sum(b**2 for b in bases if b is not None)) if None not in bases else None
    moved = [r.moved for r in records]
    compared = [r for r in records if r.dot is not None]
    weighted = {key: _weighted(records, lambda r, key=key: getattr(r, key)) for key in _WEIGHTED}
    return Aggregate(
        tensors=len(records),
        numel=numel,
        norm=norm,
        base_norm=base,
        rel_norm=_ratio(norm, base),
        nonzero_fraction=sum(r.nonzero_fraction * r.numel for r in records) / numel if numel else 0.0,
        moved_fraction=(sum(m for m in moved if m is not None) / numel if numel else 0.0)
        if None not in moved
        else None,
        random_left=_weighted(records, lambda r: r.random_left),
        random_right=_weighted(records, lambda r: r.random_right),
        cosine=_cos(
            sum(r.dot or 0.0 for r in compared),
            sum(r.self_sq or 0.0 for r in compared),
            sum(r.other_sq or 0.0 for r in compared),
        ),
        **weighted,
    )


def group_by(
    records: Iterable[TensorAnatomy], key: Callable[[TensorAnatomy], Any]
) -> dict[Any, list[TensorAnatomy]]:
    """Records grouped by ``key`` (records whose key is ``None`` are left out)."""
    groups: dict[Any, list[TensorAnatomy]] = {}
    for r in records:
        k = key(r)
        if k is not None:
            groups.setdefault(k, []).append(r)
    return groups


def _weighted(
    records: Sequence[TensorAnatomy], value: Callable[[TensorAnatomy], float | None]
) -> float | None:
    pairs = [(r.norm, v) for r in records if (v := value(r)) is not None]
    weight = sum(w for w, _ in pairs)
    return sum(w * v for w, v in pairs) / weight if weight > 0 else None


def _ratio(num: float, den: float | None) -> float | None:
    return num / den if den else None  # ‖θ‖ unknown or 0: no meaningful ratio


def _cos(dot: float, na: float, nb: float) -> float | None:
    return dot / math.sqrt(na * nb) if na > 0 and nb > 0 else None  # undefined against a zero vector


@dataclass
class Anatomy:
    """Every figure of one vector: per tensor, and aggregated (see :mod:`rvec.vector.anatomy_metrics`)."""

    vector: dict[str, Any]
    settings: dict[str, Any]
    tensors: list[TensorAnatomy]
    like: dict[str, Any] | None = None
    compare: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    not_compared: dict[str, list[str]] = field(default_factory=dict)

    @property
    def overall(self) -> Aggregate:
        return aggregate(self.tensors)

    @property
    def per_layer(self) -> dict[int, Aggregate]:
        return {k: aggregate(v) for k, v in sorted(group_by(self.tensors, lambda r: r.layer).items())}

    @property
    def per_module(self) -> dict[str, Aggregate]:
        groups = group_by(self.tensors, lambda r: r.module)
        return {m: aggregate(groups[m]) for m in family.CLASS_ORDER if m in groups}

    @property
    def per_layer_module(self) -> dict[int, dict[str, Aggregate]]:
        cells = group_by(self.tensors, lambda r: None if r.layer is None else (r.layer, r.module))
        out: dict[int, dict[str, Aggregate]] = {}
        for (layer, module), records in sorted(cells.items(), key=lambda kv: kv[0][0]):
            out.setdefault(layer, {})[module] = aggregate(records)
        return {layer: {m: row[m] for m in family.CLASS_ORDER if m in row} for layer, row in out.items()}

    def to_dict(self) -> dict[str, Any]:
        """``anatomy.json``: settings, definitions, aggregation rules, then the figures, coarse to fine."""
        return {
            "kind": "rvec-anatomy",
            "vector": self.vector,
            "like": self.like,
            "compare": self.compare,
            "settings": self.settings,
            "definitions": DEFINITIONS,
            "aggregation": AGGREGATION,
            "warnings": self.warnings,
            "not_compared": self.not_compared,
            "overall": self.overall.to_dict(),
            "per_module": {m: a.to_dict() for m, a in self.per_module.items()},
            "per_layer": {str(k): a.to_dict() for k, a in self.per_layer.items()},
            "per_layer_module": {
                str(k): {m: a.to_dict() for m, a in row.items()} for k, row in self.per_layer_module.items()
            },
            "per_tensor": {r.name: r.to_dict() for r in self.tensors},
        }

    def norms_panel(self) -> dict[str, Any]:
        """Per-layer ‖v‖, total and by module class, as :func:`rvec.vector.anatomy_plots.plot_norms` draws it."""
        return {
            "total_norm": self.overall.norm,
            "per_layer": {str(k): a.norm for k, a in self.per_layer.items()},
            "per_layer_module": {
                str(k): {m: a.norm for m, a in row.items()} for k, row in self.per_layer_module.items()
            },
        }
