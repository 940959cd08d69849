"""Add ``Σ αᵢ·vᵢ`` to a live ``transformers`` model and restore it bit-exactly, so an evaluation
can sweep α without writing a checkpoint per value.

The arithmetic is the one ``apply`` writes to disk — ``cast(θ.float() + (α·f)·v)``, float32, one
cast — so a model changed in memory generates exactly what the written folder would. Originals are
kept as a copy on the parameter's device; ``restore`` copies them back (bit-exact by construction).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rvec.checkpoint.reader import Workspace
from rvec.errors import IncompatibleError, InvalidArgumentError
from rvec.vector import family
from rvec.vector.artifact import DeltaSource, ReasoningVector, read_vector
from rvec.vector.compat import is_tied
from rvec.vector.embeddings import EmbeddingPolicy
from rvec.vector.masks import Selection
from rvec.vector.merge import MergedDelta

logger = logging.getLogger(__name__)

# Elementwise work in chunks that stay in cache: 3 passes over cache-sized pieces instead of 3
# passes over memory is what keeps an α switch on a 0.5B model under a second on a CPU. One torch
# thread (see single_threaded_torch): thousands of small ops stall on thread barriers otherwise.
_CHUNK = 1 << 18


class _EncodedDelta:
    """A factored or sparse ``v[name]`` kept in its encoding — or a merge of vectors, kept as its
    inputs — and expanded chunk by chunk on each α switch, through the same numpy reader ``apply``
    uses: memory stays at the stored factors (the page cache) and one chunk, and the values are
    bit-identical to the written model's. A merge costs its arithmetic on every switch that sets it,
    instead of a float32 copy of the model per merge."""

    def __init__(
        self, source: DeltaSource, name: str, numel: int, device: torch.device, workspace: Workspace
    ) -> None:
        self.source, self.name, self._numel, self.device = source, name, numel, device
        self._workspace = workspace  # shared by every encoded delta: α switches run one chunk at a time

    def numel(self) -> int:
        return self._numel

    def __getitem__(self, span: slice) -> torch.Tensor:
        """Flat float32 elements ``[span.start, span.stop)`` on the parameter's device."""
        n = span.stop - span.start
        # Checked for NaN/Inf once, when attached (ReasoningVector.ensure_finite), not on every α switch.
        block = self.source.read_delta_into(
            self.name,
            span.start,
            self._workspace.get("chunk", np.float32, n),
            self._workspace,
            check_finite=False,
        )
        return torch.from_numpy(block).to(self.device)


@dataclass
class _Slot:
    """One parameter touched by the vectors: its name, original values and each vector's delta."""

    name: str
    param: torch.nn.Parameter
    original: torch.Tensor
    # (vector index, float32 delta rows — or their encoding, expanded per chunk —, mask factor)
    deltas: list[tuple[int, torch.Tensor | _EncodedDelta, float]]
    # What the parameter holds now: ((vector index, αᵢ·fᵢ), …) of its non-zero terms; () is θ₀
    # itself; None while it is being written (unknown after an error, so it is written again).
    live: tuple[tuple[int, float], ...] | None = ()


class InMemoryVectors:
    """Holds vectors next to a model and sets its parameters to ``θ₀ + Σ αᵢ·fᵢ·vᵢ`` on demand.

    Example:
        >>> iv = InMemoryVectors(model, ["vec/"])      # doctest: +SKIP
        >>> iv.set_alphas([0.5]); ...; iv.set_alphas([1.0]); ...; iv.restore()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: torch.nn.Module,
        vectors: Sequence[DeltaSource | str | Path],
        *,
        selection: Selection | None = None,
        embeddings: EmbeddingPolicy | None = None,
    ) -> None:
        self.model = model
        self.sources = [read_vector(v) if isinstance(v, (str, Path)) else v for v in vectors]
        self.selection = selection or Selection()
        self._slots: list[_Slot] = []
        self.alphas: list[float] = [0.0] * len(self.sources)
        self.selections: list[Selection | None] = [None] * len(self.sources)
        self.changed: list[str] = []  # parameters whose values the last switch or restore rewrote
        self.num_layers = 0
        self._build(embeddings)

    def _build(self, embeddings: EmbeddingPolicy | None) -> None:
        params = dict(self.model.named_parameters())  # tied lm_head is listed once, as the embedding
        config = self.model.config.to_dict() if hasattr(self.model, "config") else {}
        model_tied = (
            bool(config.get("tie_word_embeddings", True)) and family.lm_head_name(set(params)) is None
        )
        num_layers = self.num_layers = int(family.family_signature(config).get("num_hidden_layers") or 0)
        slots: dict[str, _Slot] = {}
        workspace = Workspace(_CHUNK)  # scratch of the encoded (factored, sparse) deltas
        for i, source in enumerate(self.sources):
            shapes = source.shapes
            src_tied = is_tied(source.config)
            head = family.lm_head_name(set(shapes))
            if model_tied and head and not src_tied:
                raise IncompatibleError(
                    f"{source.label}: the donors have a separate {head} but the model ties it to its embedding; "
                    "in-memory application cannot untie — write the model with rvec apply instead"
                )
            for name, param in params.items():
                delta_name = name
                if name not in shapes and family.is_embedding(name) and src_tied:
                    delta_name = family.embed_name(set(shapes)) or name
                if delta_name not in shapes:
                    continue
                factor = self.selection.factor(name, num_layers)
                if factor == 0.0 or (family.is_embedding(name) and embeddings == "skip"):
                    continue
                delta = self._load_delta(
                    source, delta_name, tuple(param.shape), embeddings, param.device, workspace
                )
                slot = slots.get(name)
                if slot is None:
                    # The parameter gets a fresh copy and the loaded tensor becomes the original:
                    # transformers may leave weights memory-mapped from the checkpoint, and writing
                    # into mapped pages costs a copy-on-write fault per page on the first α switch.
                    original = param.data
                    param.data = original.clone()
                    slot = slots[name] = _Slot(name=name, param=param, original=original, deltas=[])
                slot.deltas.append((i, delta, factor))
        self._slots = list(slots.values())
        if not self._slots:
            raise InvalidArgumentError(
                "no parameter of the model matches the vector(s); are they of this model family?"
            )

    @staticmethod
    def _load_delta(
        source: DeltaSource,
        name: str,
        shape: tuple[int, ...],
        embeddings: EmbeddingPolicy | None,
        device: torch.device,
        workspace: Workspace,
    ) -> torch.Tensor | _EncodedDelta:
        vshape = source.shapes[name]
        if vshape != shape and not (
            family.is_embedding(name) and embeddings == "overlap" and vshape[1:] == shape[1:]
        ):
            raise IncompatibleError(
                f"{name}: shape {vshape} in {source.label} ≠ {shape} in the model; pass --embeddings overlap or skip"
                if family.is_embedding(name)
                else f"{name}: shape {vshape} in {source.label} ≠ {shape} in the model"
            )
        numel = math.prod(shape) if vshape == shape else min(vshape[0], shape[0]) * math.prod(shape[1:])
        encoded = isinstance(source, ReasoningVector) and source.encoding(name) != "dense"
        if encoded:
            source.ensure_finite(name)  # from what is stored: factors or kept values
        if isinstance(source, MergedDelta):  # a merge of finite stored vectors: check each input once
            for part in source.inputs:
                if isinstance(part, ReasoningVector):
                    part.ensure_finite(name)
        if encoded or isinstance(source, MergedDelta):
            return _EncodedDelta(source, name, numel, device, workspace)
        flat = source.read_delta(name, 0, numel)  # (rows·cols,) float32, refused if NaN or Inf
        return torch.from_numpy(flat).to(device)

    def set_alphas(
        self, alphas: Sequence[float], selections: Sequence[Selection | None] | None = None
    ) -> None:
        """Set parameters to ``cast(θ₀.float() + Σ (αᵢ·fᵢ)·vᵢ)`` (from the originals, never cumulatively).

        Args:
            alphas: one α per vector.
            selections: one per vector, or ``None`` for the selection the holder was built with:
                ``fᵢ`` is then that selection's factor for each tensor (``rvec apply``'s rule), so one
                holder switches between parts of a vector (slices, depth profiles) in memory.

        A parameter whose terms ``(i, αᵢ·fᵢ)`` are those it already holds is left as it is (the same
        arithmetic would give the same bits), so a switch between two slices of v rewrites only the
        parameters either slice touches; :attr:`changed` names the ones rewritten.

        Raises:
            InvalidArgumentError: not one α (or selection) per vector.
        """
        chosen = list(selections) if selections is not None else [None] * len(self.sources)
        if len(alphas) != len(self.sources) or len(chosen) != len(self.sources):
            raise InvalidArgumentError(f"{len(self.sources)} vectors but {len(alphas)} α values")
        changed = []
        with torch.no_grad(), single_threaded_torch():
            for slot in self._slots:
                terms = self._scales(slot, alphas, chosen)
                signature = tuple((i, scale) for i, scale, _ in terms)
                if signature == slot.live:  # same terms, same bits: a masked switch skips the rest
                    continue
                slot.live = None
                _combine_into(slot, [(scale, delta) for _, scale, delta in terms])
                slot.live = signature
                changed.append(slot.name)
        self.alphas = list(alphas)
        self.selections = chosen
        self.changed = changed

    def _scales(
        self, slot: _Slot, alphas: Sequence[float], selections: Sequence[Selection | None]
    ) -> list[tuple[int, float, torch.Tensor | _EncodedDelta]]:
        """``(i, αᵢ·fᵢ, vᵢ)`` of the slot's deltas whose scale is not zero."""
        out = []
        for i, delta, built in slot.deltas:
            chosen = selections[i]
            factor = built if chosen is None else chosen.factor(slot.name, self.num_layers)
            if alphas[i] * factor != 0.0:
                out.append((i, alphas[i] * factor, delta))
        return out

    def restore(self) -> None:
        """Put back the original parameters, bit for bit (those not already θ₀)."""
        changed = []
        with torch.no_grad(), single_threaded_torch():
            for slot in self._slots:
                if slot.live != ():
                    slot.live = None
                    slot.param.copy_(slot.original)
                    slot.live = ()
                    changed.append(slot.name)
        self.alphas = [0.0] * len(self.sources)
        self.selections = [None] * len(self.sources)
        self.changed = changed

    @property
    def touched(self) -> list[str]:
        names = {id(p): n for n, p in self.model.named_parameters()}
        return [names[id(s.param)] for s in self._slots]


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Run torch ops on one thread for the duration.

    On chunks of a few hundred thousand elements, intra-op parallelism gains little and its thread
    barriers collapse when the machine is busy (measured: 5× slower under load on 2 cores).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _combine_into(slot: _Slot, active: list[tuple[float, torch.Tensor | _EncodedDelta]]) -> None:
    target = slot.param.data.view(-1)
    original = slot.original.view(-1)
    if not active:
        target.copy_(original)
        return
    tmp = torch.empty(min(_CHUNK, target.numel()), dtype=torch.float32, device=target.device)
    # A float32 parameter accumulates in place, and its first delta is added while reading the
    # original: the same float32 operations in the same order as copy-then-add through a separate
    # accumulator, with two fewer passes over each chunk (measured: 1.17 → 0.74 s per α on 0.5B).
    # Other dtypes go through a float32 buffer, copy then add: a mixed-dtype add is 2x slower.
    buf = None if target.dtype == torch.float32 else torch.empty_like(tmp)
    for start in range(0, target.numel(), _CHUNK):
        stop = min(start + _CHUNK, target.numel())
        n = stop - start
        acc = target[start:stop] if buf is None else buf[:n]
        fresh = True  # acc does not hold the original yet
        for scale, delta in active:
            hi = min(stop, delta.numel())  # overlap policy: delta covers leading rows only
            if hi <= start:
                continue
            torch.mul(delta[start:hi], scale, out=tmp[: hi - start])
            if fresh and hi == stop and buf is None:
                torch.add(original[start:stop], tmp[:n], out=acc)
            else:
                if fresh:
                    acc.copy_(original[start:stop])
                acc[: hi - start].add_(tmp[: hi - start])
            fresh = False
        if fresh:
            acc.copy_(original[start:stop])
        if buf is not None:
            target[start:stop].copy_(acc)


@contextmanager
def applied(
    model: torch.nn.Module,
    pairs: Sequence[tuple[ReasoningVector | DeltaSource | str | Path, float]],
    *,
    selection: Selection | None = None,
    embeddings: EmbeddingPolicy | None = None,
) -> Iterator[torch.nn.Module]:
    """Context manager: the model with ``Σ αᵢ·vᵢ`` added inside, bit-exactly restored on exit.

    Example:
        >>> with applied(model, [("vec/", 1.0)]):   # doctest: +SKIP
        ...     model.generate(...)
    """
    iv = InMemoryVectors(model, [v for v, _ in pairs], selection=selection, embeddings=embeddings)
    try:
        iv.set_alphas([a for _, a in pairs])
        yield model
    finally:
        iv.restore()
