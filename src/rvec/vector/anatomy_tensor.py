"""The figures of one tensor for ``rvec anatomy``: at most one pass over its rows, reading v, the
target's θ and the compared vector's w side by side in float32 blocks of whole rows.

What a tensor needs read:

* nothing but ``rvec.json`` — its norm and non-zero fraction — without a target, a compare vector
  or SVD metrics, or for a factored matrix whose SVD comes from its factors;
* v, θ and w block by block for the moved count, ‖θ‖, the dot products, and the Gram matrices of
  :mod:`rvec.vector.subspace`;
* a matrix with fewer rows than columns (``down_proj``) is read whole — its row count bounds it —
  so that its transpose can be fed to the Gram matrices in row chunks.

A tensor stored with no entries (``kept: 0``) or at rank 0 is exactly zero: v is not read, its
ranks are 0 and it has no subspace to compare.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rvec.checkpoint.dtypes import F32, dot, to_float32
from rvec.checkpoint.reader import DEFAULT_BLOCK_ELEMENTS, Workspace
from rvec.checkpoint.source import Checkpoint
from rvec.vector import family
from rvec.vector.anatomy_metrics import TensorAnatomy
from rvec.vector.artifact import ReasoningVector
from rvec.vector.subspace import (
    Decomposition,
    GramPass,
    Overlap,
    effective_rank,
    energy_rank,
    factored_decomposition,
    finish,
)

Block = np.ndarray | None


@dataclass(frozen=True)
class Sources:
    """What one anatomy reads: the vector, and optionally the target (with the name holding each
    tensor's θ) and a second vector (with the tensors both hold at equal shapes)."""

    vector: ReasoningVector
    top_k: int
    svd: bool
    target: Checkpoint | None = None
    target_names: Mapping[str, str] = field(default_factory=dict)
    compare: ReasoningVector | None = None
    shared: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Plan:
    """What one tensor's measurement reads and accumulates."""

    shape: tuple[int, ...]
    zero: bool  # exactly zero by its encoding: v is not read
    matrix: bool  # SVD metrics wanted and defined (a non-zero 2-D tensor)
    factored: bool
    like: bool
    compare: bool

    @property
    def transposed(self) -> bool:
        return len(self.shape) == 2 and self.shape[0] < self.shape[1]

    @property
    def tall(self) -> tuple[int, int]:
        """(p, q), p ≥ q: the orientation the Gram matrices are taken in."""
        m, n = self.shape
        return (n, m) if self.transposed else (m, n)

    @property
    def gram(self) -> bool:
        """Whether a pass accumulates Gram matrices (a factored v needs them only for θ)."""
        return self.matrix and (self.like or not self.factored)

    @property
    def needs_pass(self) -> bool:
        return self.like or self.compare or self.gram


@dataclass
class _Sums:
    """Elementwise sums of one tensor's pass (float64)."""

    moved: int = 0
    t_sq: float = 0.0
    v_sq: float = 0.0
    c_sq: float = 0.0
    vc: float = 0.0


class TensorMeasurer:
    """Measures the tensors of :class:`Sources` one at a time, reusing its block buffers."""

    def __init__(self, sources: Sources) -> None:
        self.s = sources
        self._ws = {role: Workspace() for role in ("v", "t", "c", "sum")}

    def measure(self, name: str, progress: Callable[[int], None]) -> TensorAnatomy:
        """The figures of ``v[name]``; ``progress(elements done)`` as its rows are read."""
        rec = self.s.vector.manifest["tensors"][name]
        shape = tuple(int(d) for d in rec["shape"])
        enc = self.s.vector.encoding(name)
        zero = int(rec.get("kept", -1)) == 0 or int(rec.get("rank", -1)) == 0
        plan = _Plan(
            shape=shape,
            zero=zero,
            matrix=self.s.svd and len(shape) == 2 and min(shape) > 0 and not zero,
            factored=enc == "factored",
            like=self.s.target is not None,
            compare=name in self.s.shared,
        )
        record = TensorAnatomy(
            name=name,
            shape=shape,
            module=family.module_class(name),
            layer=family.layer_of(name),
            encoding=enc,
            norm=float(rec["norm"]),
            nonzero_fraction=1.0 - float(rec["zero_fraction"]),
        )
        dec = self._factored(name, plan) if plan.matrix and plan.factored else None
        gram = None
        if plan.gram:
            left = dec.left if dec is not None else None
            gram = GramPass(plan.tall[1], vector=not plan.factored, target=plan.like, left_v=left)
        sums = _Sums()
        if plan.needs_pass:
            self._pass(name, plan, sums, gram, progress)
        if plan.matrix:
            if dec is None and gram is not None:
                dec = gram.decomposition(plan.tall, self.s.top_k)
            if dec is not None:
                record.effective_rank, record.energy_rank = effective_rank(dec.sigma), energy_rank(dec.sigma)
            if gram is not None and dec is not None and plan.like:
                _set_overlap(record, finish(gram, dec, plan.tall, self.s.top_k), plan.transposed)
        elif self.s.svd and len(shape) == 2 and zero:
            record.effective_rank, record.energy_rank = 0.0, 0
        _record_sums(record, rec, plan, sums)
        return record

    def _factored(self, name: str, plan: _Plan) -> Decomposition:
        a, b = self.s.vector.factors(name)  # v = B @ A: B (m, r), A (r, n)
        p_factor, q_factor = (a.T, b) if plan.transposed else (b, a.T)
        return factored_decomposition(p_factor, q_factor, self.s.top_k)

    def _pass(
        self, name: str, plan: _Plan, sums: _Sums, gram: GramPass | None, progress: Callable[[int], None]
    ) -> None:
        if gram is not None and plan.transposed:
            self._wide_pass(name, plan, sums, gram)
            progress(math.prod(plan.shape))
            return
        cols = plan.shape[1] if len(plan.shape) == 2 else 1
        for first, rows, v, t, c in self._chunks(name, plan, cols):
            _accumulate(sums, v, t, c, self._ws["sum"])
            if gram is not None:
                gram.add(first, _rows64(v, cols, gram.vector), _rows64(t, cols, True))
            progress((first + rows) * cols)

    def _chunks(self, name: str, plan: _Plan, cols: int) -> Iterator[tuple[int, int, Block, Block, Block]]:
        """``(first row, rows, v, θ, w)``: flat float32 blocks of whole rows (``None``: not needed)."""
        total = math.prod(plan.shape) // cols if cols else 0
        step = max(1, DEFAULT_BLOCK_ELEMENTS // max(cols, 1))
        for first in range(0, total, step):
            rows = min(step, total - first)
            start, n = first * cols, rows * cols
            v = None if plan.zero else self._read(self.s.vector, "v", name, start, n)
            t = self._read_target(name, start, n) if plan.like else None
            c = self._read(self.s.compare, "c", name, start, n) if plan.compare else None
            yield first, rows, v, t, c

    def _wide_pass(self, name: str, plan: _Plan, sums: _Sums, gram: GramPass) -> None:
        """Read a wide matrix whole and feed the Gram matrices row chunks of its transpose."""
        m, n = plan.shape
        v = self._read(self.s.vector, "v", name, 0, m * n).reshape(m, n)
        t = self._read_target(name, 0, m * n).reshape(m, n) if plan.like else None
        c = self._read(self.s.compare, "c", name, 0, m * n) if plan.compare else None
        _accumulate(sums, v.reshape(-1), None if t is None else t.reshape(-1), c, self._ws["sum"])
        step = max(1, DEFAULT_BLOCK_ELEMENTS // m)
        for first in range(0, n, step):
            mv = v[:, first : first + step].T.astype(np.float64) if gram.vector else None  # (cols, m)
            mt = None if t is None else t[:, first : first + step].T.astype(np.float64)
            gram.add(first, mv, mt)

    def _read(self, source: ReasoningVector | None, role: str, name: str, start: int, n: int) -> np.ndarray:
        """Flat float32 elements ``[start, start + n)`` of a vector's tensor, in ``role``'s buffer."""
        if source is None:
            raise ValueError(f"no {role} source to read {name} from")  # the plan reads only what exists
        ws = self._ws[role]
        return source.read_delta_into(name, start, ws.get("block", np.float32, n), ws)

    def _read_target(self, name: str, start: int, n: int) -> np.ndarray:
        """θ's flat elements ``[start, start + n)`` widened to float32 (exact for every float dtype)."""
        target, ws = self.s.target, self._ws["t"]
        if target is None:
            raise ValueError(f"no target to read {name} from")  # the plan reads θ only with a target
        tname = self.s.target_names[name]
        dtype = target.index[tname].dtype
        if dtype == F32:
            return target.read_into(tname, start, ws.get("block", np.float32, n))
        raw = target.read_into(tname, start, ws.get("raw", dtype.numpy, n))
        return to_float32(raw, ws.get("block", np.float32, n))


def _rows64(block: Block, cols: int, wanted: bool) -> np.ndarray | None:
    """A flat float32 block as float64 rows (rows, cols), or ``None``."""
    return None if block is None or not wanted else block.astype(np.float64).reshape(-1, cols)


def _accumulate(sums: _Sums, v: Block, t: Block, c: Block, ws: Workspace) -> None:
    """Add one block's moved count, squared norms and dot product to ``sums`` (float64 sums)."""
    if t is not None:
        t64 = t.astype(np.float64)
        sums.t_sq += dot(t64, t64)
        if v is not None:  # float32(θ + v) ≠ θ: the sum rounds once to float32, as apply's does
            added = np.add(t, v, out=ws.get("sum", np.float32, v.size))
            sums.moved += int(np.count_nonzero(added != t))
    if c is not None:
        c64 = c.astype(np.float64)
        sums.c_sq += dot(c64, c64)
        if v is not None:
            v64 = v.astype(np.float64)
            sums.vc += dot(v64, c64)
            sums.v_sq += dot(v64, v64)


def _record_sums(record: TensorAnatomy, rec: Mapping[str, Any], plan: _Plan, sums: _Sums) -> None:
    if plan.like:
        record.base_norm = math.sqrt(sums.t_sq)
        record.moved = sums.moved
    elif rec.get("rel_norm"):
        record.base_norm = record.norm / float(rec["rel_norm"])
    if plan.compare:
        record.dot, record.self_sq, record.other_sq = sums.vc, sums.v_sq, sums.c_sq


def _set_overlap(record: TensorAnatomy, overlap: Overlap | None, transposed: bool) -> None:
    if overlap is None:
        return
    record.k = overlap.k
    # The Gram matrices of a wide matrix were taken of vᵀ: their left side is v's right side.
    if transposed:
        record.overlap_left, record.overlap_right = overlap.right, overlap.left
    else:
        record.overlap_left, record.overlap_right = overlap.left, overlap.right
