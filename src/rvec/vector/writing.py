"""Write a vector folder whose tensors are dense, low-rank factored or sparse (format version 2).

:func:`write_vector` is the one way a vector folder is written — ``rvec extract`` (dense blocks
streamed as they are computed), ``rvec control``, ``rvec compress``, ``rvec pair`` from LoRA factors
(:mod:`rvec.vector.factored`): sharded safetensors, ``rvec.json`` with exact per-tensor norms, a
README card and the lineage probe, in a folder that appears only when complete. Its reading twin is
:func:`rvec.vector.artifact.read_vector`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from rvec import __version__
from rvec.atomic import atomic_dir
from rvec.checkpoint import hashing
from rvec.checkpoint.dtypes import all_finite, dot
from rvec.checkpoint.reader import DEFAULT_BLOCK_ELEMENTS
from rvec.checkpoint.source import Checkpoint
from rvec.checkpoint.writer import DEFAULT_MAX_SHARD_BYTES, PlannedTensor, ShardedWriter, metadata_allowance
from rvec.errors import InvalidArgumentError, NonFiniteError
from rvec.vector import family
from rvec.vector.artifact import (
    FORMAT_VERSION,
    LINEAGE_FILE,
    MANIFEST,
    VECTOR_PREFIX,
    ReasoningVector,
    read_vector,
)
from rvec.vector.cards import vector_card
from rvec.vector.compat import PROBE_ELEMENTS, PROBE_TENSORS, float_shapes, probe_names, probe_values
from rvec.vector.encodings import Encoding, factored_norm, factored_zero_count, stored_tensors
from rvec.vector.integrity import verify_family
from rvec.vector.manifest import validate_manifest

__all__ = [
    "LINEAGE_FILE_BYTES",
    "Blocks",
    "Dense",
    "Encoded",
    "Factored",
    "Sparse",
    "TensorPlan",
    "plan_of",
    "write_vector",
]

LINEAGE_FILE_BYTES = PROBE_TENSORS * PROBE_ELEMENTS * 4 + 64 * 1024
"""The lineage probe's size at most: float32 values + header."""


@dataclass(frozen=True)
class Dense:
    """``v[name]`` itself: float32, in the tensor's shape."""

    values: np.ndarray


@dataclass(frozen=True)
class Factored:
    """``v[name] = b @ a``: ``a`` (r, in) and ``b`` (out, r), float32, any scale folded in."""

    a: np.ndarray
    b: np.ndarray


@dataclass(frozen=True)
class Sparse:
    """``v[name]`` zero except at the sorted flat positions ``indices`` (int64), which hold ``values``."""

    indices: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Blocks:
    """``v[name]`` as float32 flat blocks in order, computed while they are written (extract).

    Args:
        blocks: the blocks; the writer copies each, so a producer may reuse its buffer.
        after: called once every block is written, for the tensor's extra record fields (e.g.
            ``base_norm``, summed while the blocks were computed).
        non_finite: called instead of raising the generic error when a block holds NaN or Inf (a
            producer that can say which input is damaged); it must raise.
    """

    blocks: Iterable[np.ndarray]
    after: Callable[[], Mapping[str, Any]] | None = None
    non_finite: Callable[[], None] | None = None


Encoded = Dense | Factored | Sparse | Blocks


@dataclass(frozen=True)
class TensorPlan:
    """One tensor of the folder, known before its data: name, shape, encoding and its parameter."""

    name: str
    shape: tuple[int, ...]
    encoding: Encoding
    rank: int | None = None  # factored
    kept: int | None = None  # sparse

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"shape": list(self.shape), "encoding": self.encoding}
        if self.encoding == "factored":
            rec["rank"] = self.rank
        if self.encoding == "sparse":
            rec["kept"] = self.kept
        return rec

    def planned(self) -> list[PlannedTensor]:
        return [PlannedTensor(s.name, s.dtype, s.shape) for s in stored_tensors(self.name, self.record())]


def plan_of(name: str, shape: Sequence[int], tensor: Encoded) -> TensorPlan:
    """The :class:`TensorPlan` an encoded tensor fits (shapes checked)."""
    shape = tuple(int(d) for d in shape)
    if isinstance(tensor, Factored):
        a, b = tensor.a, tensor.b
        if (
            a.ndim != 2
            or b.ndim != 2
            or len(shape) != 2
            or a.shape[0] != b.shape[1]
            or (b.shape[0], a.shape[1]) != shape
        ):
            raise InvalidArgumentError(
                f"{name}: factors A {a.shape} and B {b.shape} do not multiply to {shape}; expected A (r, {shape[-1]}) and B ({shape[0]}, r)"
            )
        return TensorPlan(name, shape, "factored", rank=int(a.shape[0]))
    if isinstance(tensor, Sparse):
        return TensorPlan(name, shape, "sparse", kept=int(tensor.indices.size))
    if isinstance(tensor, Blocks):
        return TensorPlan(name, shape, "dense")
    if tuple(tensor.values.shape) != shape:
        raise InvalidArgumentError(f"{name}: dense values have shape {tensor.values.shape}, expected {shape}")
    return TensorPlan(name, shape, "dense")


def sum_squares(flat: np.ndarray) -> float:
    """``Σ flat²`` of a float32 array."""
    # float32 dot per block summed in float64, as extract does: the error does not grow with size.
    return sum(
        dot(flat[i : i + DEFAULT_BLOCK_ELEMENTS], flat[i : i + DEFAULT_BLOCK_ELEMENTS])
        for i in range(0, flat.size, DEFAULT_BLOCK_ELEMENTS)
    )


def _arrays(plan: TensorPlan, tensor: Encoded) -> list[np.ndarray]:
    """The float32/int64 arrays stored for ``tensor``, in :meth:`TensorPlan.planned` order."""
    if isinstance(tensor, Factored):
        return [np.ascontiguousarray(tensor.a, np.float32), np.ascontiguousarray(tensor.b, np.float32)]
    if isinstance(tensor, Sparse):
        idx = np.ascontiguousarray(tensor.indices, np.int64)
        numel = math.prod(plan.shape)
        if idx.size and (idx[0] < 0 or idx[-1] >= numel or np.any(np.diff(idx) <= 0)):
            raise InvalidArgumentError(
                f"{plan.name}: sparse indices must be strictly increasing within [0, {numel})"
            )
        return [idx, np.ascontiguousarray(tensor.values, np.float32).reshape(-1)]
    return [np.ascontiguousarray(tensor.values, np.float32).reshape(-1)]


def _relative(norm: float, base: float | None) -> float | None:
    """``‖v‖/‖θ_SFT‖`` as extract records it; ``None`` when the SFT norm is unknown."""
    if base is None:
        return None
    return norm / base if base > 0 else (0.0 if norm == 0 else math.inf)


def _measure(plan: TensorPlan, arrays: list[np.ndarray]) -> tuple[float, float]:
    """(‖v‖, fraction of exact zeros) of the stored tensor, computed from its encoding."""
    numel = math.prod(plan.shape)
    if plan.encoding == "factored":
        a, b = arrays[0], arrays[1]
        zeros = factored_zero_count(a, b)
        return factored_norm(a, b), zeros / numel if numel else 1.0
    values = arrays[-1]
    nonzero = int(np.count_nonzero(values))
    return math.sqrt(sum_squares(values)), (numel - nonzero) / numel if numel else 1.0


def write_vector(
    out: str | Path,
    plan: Sequence[TensorPlan],
    tensors: Iterable[tuple[str, Encoded, Mapping[str, Any]]],
    *,
    manifest: Mapping[str, Any],
    summarise: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    lineage: Checkpoint | ReasoningVector | None = None,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
    inputs: Sequence[Path] = (),
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> ReasoningVector:
    """Write a vector folder tensor by tensor (only the tensor, or block, being written is in memory).

    Args:
        out: folder to create (atomically: absent until complete).
        plan: every tensor, in the order ``tensors`` yields them.
        tensors: ``(name, encoded tensor, extra record fields)``; extra fields (``relative_error``…)
            join the tensor's ``rvec.json`` record, except ``base_norm`` (‖θ_SFT‖), which gives ``rel_norm``.
        manifest: top-level ``rvec.json`` fields: ``formula``, ``sources``, ``config`` at least;
            ``kind``, ``format_version``, ``family``, ``files``, ``aux_files`` and ``tensors`` are set here.
        summarise: called with the tensor records once all are written; returns more top-level
            fields (``compress`` puts its overall error there, ``extract`` the donors' hashes).
        lineage: where the lineage probe comes from: the SFT checkpoint, or a vector whose probe is copied.
        overwrite: replace ``out`` if it exists and rvec wrote it (it has an ``rvec.json``).
        overwrite_foreign: replace ``out`` even if rvec did not write it. Neither flag allows the
            working folder, an ancestor of it, home, a filesystem root, or a folder holding an input.
        inputs: what the command read (never replaced, nor a folder holding them).
        max_shard_bytes: shard size limit.

    Returns:
        ReasoningVector: the folder, opened (verified: its hashes are remembered, not re-read).

    Raises:
        InvalidArgumentError: a tensor does not fit its plan.
        NonFiniteError: a tensor holds NaN or Inf (nothing is written).
        OutputExistsError: ``out`` exists and ``overwrite`` is false (``ForeignOutputError``: rvec
            did not write it and ``overwrite_foreign`` is false).
        UnsafeOutputError: ``out`` is a protected place or holds an input.
        OutputError: the filesystem refused the output (read-only, full, permission…).
    """
    planned = [p for t in plan for p in t.planned()]
    records: dict[str, Any] = {}
    needed = sum(p.nbytes for p in planned) + metadata_allowance(len(planned)) + LINEAGE_FILE_BYTES
    with atomic_dir(
        Path(out),
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        inputs=inputs,
        needed_bytes=needed,
    ) as tmp:
        writer = ShardedWriter(tmp, planned, prefix=VECTOR_PREFIX, max_shard_bytes=max_shard_bytes)
        try:
            for expected, (name, tensor, extra) in zip(plan, tensors, strict=True):
                got = plan_of(name, expected.shape, tensor)
                if got != expected:
                    raise InvalidArgumentError(f"{name}: {got} does not match the plan {expected}")
                if isinstance(tensor, Blocks):
                    norm, zero_fraction, extra = _write_blocks(writer, expected, tensor, extra)
                else:
                    norm, zero_fraction = _write_arrays(writer, expected, tensor)
                records[name] = _record(expected, norm, zero_fraction, extra)
            files = writer.finish()
        except BaseException:
            writer.abort()  # the writer thread stops before the temporary folder is removed
            raise
        aux = write_lineage_probe(tmp, lineage, {t.name: t.shape for t in plan})
        full = {
            "kind": "reasoning-vector",
            "format_version": FORMAT_VERSION,
            "dtype": "float32",
            "rvec_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "family": family.family_signature(dict(manifest.get("config") or {})),
            "check": None,
            "skipped_non_float": [],
            **manifest,
            **(summarise(records) if summarise else {}),
            "files": {f: writer.sha256[f] for f in files},
            "aux_files": aux,
            "tensors": records,
        }
        # Checked as a reader will check it, before the folder appears: what a reader would refuse
        # must not be left behind looking complete.
        text = json.dumps(full, indent=2, allow_nan=True) + "\n"
        verify_family(tmp, validate_manifest(tmp / MANIFEST, json.loads(text)))
        (tmp / MANIFEST).write_text(text)
        (tmp / "README.md").write_text(vector_card(full))
    remember_hashes(Path(out), {**full["files"], **aux})  # verifying the output reads nothing again
    return read_vector(out)


def _write_arrays(writer: ShardedWriter, plan: TensorPlan, tensor: Encoded) -> tuple[float, float]:
    """Write a whole encoded tensor; returns its (‖v‖, fraction of exact zeros)."""
    arrays = _arrays(plan, tensor)
    for stored, array in zip(plan.planned(), arrays, strict=True):
        if array.dtype == np.float32 and not all_finite(array):
            raise NonFiniteError(
                f"{plan.name}: NaN or Inf in '{stored.name}'; nothing was written", tensor=plan.name
            )
        if array.size:  # the writer expects no block for a zero-element entry
            writer.write(stored.name, array)
    return _measure(plan, arrays)


def _write_blocks(
    writer: ShardedWriter, plan: TensorPlan, tensor: Blocks, extra: Mapping[str, Any]
) -> tuple[float, float, Mapping[str, Any]]:
    """Write a dense tensor block by block; returns its (‖v‖, zero fraction, extra record fields)."""
    sum_sq, zeros, done = 0.0, 0, 0
    scratch = np.empty(0, np.bool_)
    for block in tensor.blocks:
        if scratch.size < block.size:
            scratch = np.empty(block.size, np.bool_)
        if not all_finite(block, scratch[: block.size]):
            if tensor.non_finite is not None:
                tensor.non_finite()
            raise NonFiniteError(f"{plan.name}: NaN or Inf; nothing was written", tensor=plan.name)
        # float32 dot per block (≈1e-6 relative error, ~9× faster than a float64 norm), summed
        # across blocks in float64 so the error does not grow with the tensor's size.
        sum_sq += dot(block, block)
        zeros += block.size - int(np.count_nonzero(block))
        done += block.size
        writer.write(plan.name, block)
    numel = math.prod(plan.shape)
    if done != numel:
        raise InvalidArgumentError(f"{plan.name}: {done} elements streamed, the shape holds {numel}")
    more = dict(tensor.after()) if tensor.after is not None else {}
    return math.sqrt(sum_sq), (zeros / numel if numel else 1.0), {**extra, **more}


def _record(plan: TensorPlan, norm: float, zero_fraction: float, extra: Mapping[str, Any]) -> dict[str, Any]:
    """A tensor's ``rvec.json`` record."""
    fields = dict(extra)
    base = fields.pop("base_norm", None)
    return {
        **plan.record(),
        "norm": norm,
        "rel_norm": _relative(norm, base),
        "zero_fraction": zero_fraction,
        "module": family.module_type(plan.name),
        "layer": family.layer_of(plan.name),
        **fields,
    }


def remember_hashes(folder: Path, hashes: Mapping[str, str]) -> None:
    """Tell the hash memo what a writer just hashed, so verifying its output reads nothing again."""
    for name, digest in hashes.items():
        hashing.remember(folder / name, digest)


def write_lineage_probe(
    folder: Path, source: Checkpoint | ReasoningVector | None, shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, str]:
    """Write ``lineage.safetensors`` into ``folder`` so ``apply`` can test a target's lineage without
    the SFT: the first elements of a few of the SFT's weights, or a vector's probe copied.

    Returns:
        ``{"lineage.safetensors": sha256}`` for the manifest's ``aux_files``; ``{}`` when there is no probe.
    """
    file = folder / LINEAGE_FILE
    if isinstance(source, ReasoningVector):
        probe = source.lineage_file  # refused if a link out of the vector: never copy what it points at
        if probe is None:
            return {}
        source.lineage_probe()  # a valid header and finite values, or refused before anything is copied
        file.write_bytes(probe.read_bytes())
    elif isinstance(source, Checkpoint):
        names = [n for n in probe_names(float_shapes(source)) if n in shapes]
        save_file(
            probe_values(source, names),
            str(file),
            metadata={"what": "first elements of SFT weights, for lineage checks"},
        )
    else:
        return {}
    return {LINEAGE_FILE: hashlib.sha256(file.read_bytes()).hexdigest()}  # < 1 MB: no memo needed
