"""What a merge method is: its parameters (mergekit's names, meanings and defaults) and two steps.

A method combines the float32 deltas ``v₁ … vₙ`` of one tensor into one delta, block by block:

1. :meth:`MergeMethod.prepare` — per-tensor statistics that need the whole tensor (TIES's magnitude
   cut, breadcrumbs' two cuts, the L1 rescale sums), computed by streamed passes over each vector's
   tensor (:mod:`.select`), never the tensor in memory;
2. :meth:`MergeMethod.combine` — one block of the merged delta from the same block of every vector.

Parameters are **shared** (one value: ``normalize``, ``lambda``…) or **per vector** (``weight``,
``density``, ``gamma``), as mergekit's ``ParameterScope.SHARED`` / ``NON_BASE``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rvec.checkpoint.reader import Workspace
from rvec.vector.methods.kept_bits import KeptBits, MaskBudget
from rvec.vector.methods.sparsify import TensorBlocks

Value = float | bool


@dataclass(frozen=True)
class ParamDef:
    """One parameter: its mergekit name, whether it is per vector, its default and what it means.

    ``default`` is mergekit 0.1.5's; ``None`` marks one mergekit requires (rvec's library and CLI use
    ``rvec_default`` there; a mergekit YAML must give it, as mergekit demands).
    """

    name: str
    kind: type  # float or bool
    per_vector: bool
    default: Value | None
    doc: str
    rvec_default: Value | None = None
    low: float | None = None  # inclusive bounds for floats
    high: float | None = None


@dataclass(frozen=True)
class Params:
    """Every parameter of one merge, resolved: shared values and one mapping per vector."""

    shared: Mapping[str, Value]
    per_vector: tuple[Mapping[str, Value], ...]

    def column(self, name: str) -> list[Value]:
        """``name``'s value for each vector, in order."""
        return [p[name] for p in self.per_vector]

    def to_dict(self) -> dict[str, Any]:
        return {"shared": dict(self.shared), "per_vector": [dict(p) for p in self.per_vector]}


@dataclass(frozen=True)
class TensorInput:
    """What ``prepare`` may read of one vector's tensor: its blocks (one pass per call) and identity."""

    index: int  # position of the vector in the merge
    name: str
    numel: int
    blocks: TensorBlocks
    masks: MaskBudget | None = None  # where a pass may keep the tensor's mask for combine

    def hold_mask(self) -> KeptBits | None:
        """Bits to keep this tensor's mask in between passes, or ``None`` (no budget, or none left)."""
        return None if self.masks is None else self.masks.take(self.name, self.numel)


class MergeMethod(Protocol):
    """A merge method of the registry (:mod:`rvec.vector.methods.registry`)."""

    name: str
    pretty_name: str
    reference_url: str
    params: tuple[ParamDef, ...]
    draws_masks: bool  # random masks (DARE): only then does the seed change the result

    def prepare(self, inputs: Sequence[TensorInput], params: Params, *, seed: int, ws: Workspace) -> Any:
        """Per-tensor state (``None`` when the method needs none), from streamed passes over ``inputs``."""
        ...

    def combine(
        self,
        state: Any,
        deltas: Sequence[np.ndarray],
        start: int,
        out: np.ndarray,
        params: Params,
        ws: Workspace,
    ) -> np.ndarray:
        """``out`` (float32) = the merged delta of the block at flat ``start``; ``deltas`` may be overwritten."""
        ...

    def kept(self, state: Any, numel: int, n_vectors: int) -> list[int]:
        """Entries of each vector's tensor that survive its sparsification (``numel`` when none)."""
        ...


def shared_param(
    name: str, kind: type, default: Value, doc: str, *, low: float | None = None, high: float | None = None
) -> ParamDef:
    return ParamDef(name, kind, False, default, doc, rvec_default=default, low=low, high=high)


def vector_param(
    name: str,
    default: Value | None,
    doc: str,
    *,
    rvec_default: Value | None = None,
    low: float | None = None,
    high: float | None = None,
) -> ParamDef:
    fallback = default if rvec_default is None else rvec_default
    return ParamDef(name, float, True, default, doc, rvec_default=fallback, low=low, high=high)


WEIGHT = vector_param(
    "weight",
    None,
    "multiplies the vector's (sparsified) delta before the sum; mergekit requires it, rvec defaults to 1",
    rvec_default=1.0,
)
DENSITY = vector_param(
    "density",
    1.0,
    "fraction of the vector's entries kept by the sparsification; ≥ 1 keeps all",
    low=0.0,
    high=1.0,
)
GAMMA = vector_param(
    "gamma", 0.01, "fraction of the largest-|v| entries breadcrumbs drops as outliers", low=0.0, high=1.0
)
LAMBDA = shared_param("lambda", float, 1.0, "multiplies the merged delta at the end")
INT8_MASK = shared_param(
    "int8_mask",
    bool,
    False,
    "mergekit: store sign masks as int8 to save memory; no effect on values (rvec's masks are boolean, one block each)",
)


def normalize_param(default: bool) -> ParamDef:
    return shared_param(
        "normalize",
        bool,
        default,
        "divide the sum by the sum of the weights (with TIES consensus: of the weights that agree with the elected sign, per entry)",
    )


def rescale_param(default: bool) -> ParamDef:
    return shared_param(
        "rescale",
        bool,
        default,
        "after sparsifying, scale the kept entries so the tensor keeps its L1 norm (mergekit's RescaleNorm.l1)",
    )
