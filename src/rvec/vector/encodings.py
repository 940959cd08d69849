"""How a vector folder stores each tensor ``v[name]``, and how a flat block of it is read back.

Three encodings, recorded per tensor in ``rvec.json`` (``tensors.<name>.encoding``):

* ``dense`` — ``v`` itself, float32, stored under ``name`` (format version 1 knew only this);
* ``factored`` — low-rank factors, float32, ``A`` (r, in) under ``name:A`` and ``B`` (out, r) under
  ``name:B``, with ``v = B @ A`` (any scale folded in); ``rank`` records r;
* ``sparse`` — the flat positions of the kept entries, sorted, int64, under ``name:indices`` and their
  float32 values under ``name:values``; every other entry is 0; ``kept`` records how many.

Reading a block never materialises more than the block: a factored tensor computes only the rows the
block covers, ``B[rows] @ A``; a sparse one bisects its sorted indices on disk and scatters.

Why ``np.einsum`` and not ``B @ A``: OpenBLAS's float32 GEMM gives different bits for a row
depending on which other rows are in the call and on its thread count (measured here: 1 thread vs 2
changed results), so blocks of one apply, the in-memory path and a densified copy would disagree.
``einsum`` accumulates each element over ``k = 0 … r−1`` in one fixed order whatever rows or threads
are involved, so ``v`` has one value per machine: apply, in-memory α and densify agree bit for bit.
It costs about 10 ns per element at r = 32 here (3 GFLOP/s), against 1 ns to read a dense float32.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rvec.checkpoint.dtypes import BY_NAME, F32, DType
from rvec.checkpoint.index import TensorInfo
from rvec.checkpoint.reader import FileReader, Workspace
from rvec.errors import VectorFormatError

Encoding = Literal["dense", "factored", "sparse"]
ENCODINGS: tuple[Encoding, ...] = ("dense", "factored", "sparse")
I64 = BY_NAME["I64"]

# Rows of ``B @ A`` computed per einsum call when a block is densified: bounds the scratch buffer.
_ROWS_PER_CALL_ELEMENTS = 1 << 18


@dataclass(frozen=True)
class StoredTensor:
    """One safetensors entry that holds (part of) an encoded tensor."""

    name: str
    dtype: DType
    shape: tuple[int, ...]


def encoding_of(record: Mapping[str, Any]) -> Encoding:
    """The encoding of a manifest tensor record (``dense`` when absent: format version 1)."""
    enc = record.get("encoding", "dense")
    if enc not in ENCODINGS:
        raise VectorFormatError(
            f"unknown tensor encoding {enc!r}; expected one of {', '.join(ENCODINGS)}; upgrade rvec"
        )
    return enc


def storage_label(record: Mapping[str, Any]) -> str:
    """How a manifest tensor record is stored, for tables: ``dense``, ``rank 32``, ``1,024 kept``."""
    enc = encoding_of(record)
    if enc == "factored":
        return f"rank {record['rank']}"
    return f"{record['kept']:,} kept" if enc == "sparse" else "dense"


def stored_tensors(name: str, record: Mapping[str, Any]) -> list[StoredTensor]:
    """The safetensors entries that ``record`` (a manifest tensor record) is stored as."""
    shape = tuple(int(d) for d in record["shape"])
    enc = encoding_of(record)
    if enc == "dense":
        return [StoredTensor(name, F32, shape)]
    if enc == "factored":
        if len(shape) != 2:
            raise VectorFormatError(
                f"{name}: factored encoding needs a 2-D tensor, the manifest says {shape}"
            )
        rank = int(record["rank"])
        return [
            StoredTensor(f"{name}:A", F32, (rank, shape[1])),
            StoredTensor(f"{name}:B", F32, (shape[0], rank)),
        ]
    kept = int(record["kept"])
    return [StoredTensor(f"{name}:indices", I64, (kept,)), StoredTensor(f"{name}:values", F32, (kept,))]


def check_stored(
    name: str, record: Mapping[str, Any], found: Mapping[str, TensorInfo], where: str
) -> list[TensorInfo]:
    """The stored entries of ``name``, checked against the shard headers in ``found``.

    Raises:
        VectorFormatError: an entry is missing, or has another dtype or shape than the manifest implies.
    """
    infos = []
    for want in stored_tensors(name, record):
        info = found.get(want.name)
        if info is None:
            raise VectorFormatError(
                f"{where}: '{want.name}' is in rvec.json but in no shard; re-run the command that wrote it"
            )
        if info.dtype != want.dtype or info.shape != want.shape:
            raise VectorFormatError(
                f"{where}: '{want.name}' is {info.dtype_name} {info.shape} in its shard but rvec.json implies "
                f"{want.dtype.name} {want.shape}; the vector is inconsistent: re-run the command that wrote it"
            )
        infos.append(info)
    return infos


def lowrank_rows(b_rows: np.ndarray, a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[...] = b_rows @ a`` in float32 with a fixed summation order (see the module docstring).

    Shapes: ``b_rows`` (rows, r), ``a`` (r, in), ``out`` (rows, in).
    """
    if a.shape[0] == 0:
        out.fill(0)
        return out
    return np.einsum("ik,kj->ij", b_rows, a, out=out)


def fill_factored(
    reader: FileReader, a: TensorInfo, b: TensorInfo, start: int, out: np.ndarray, ws: Workspace
) -> np.ndarray:
    """Fill the float32 block ``out`` with ``(B @ A).flat[start : start + out.size]``.

    Reads ``A`` (r·in floats) and the rows of ``B`` the block covers; computes only those rows.
    """
    n = out.size
    rank, cols = a.shape
    if n == 0:
        return out
    if cols == 0:
        out.fill(0)
        return out
    first, last = start // cols, (start + n - 1) // cols + 1  # rows [first, last) cover the block
    a_val = reader.read_into(a, 0, ws.get("factor_a", np.float32, rank * cols)).reshape(rank, cols)
    rows = last - first
    b_val = reader.read_into(b, first * rank, ws.get("factor_b", np.float32, rows * rank)).reshape(rows, rank)
    if start % cols == 0 and n == rows * cols:  # whole rows: straight into the caller's buffer
        lowrank_rows(b_val, a_val, out.reshape(rows, cols))
        return out
    scratch = ws.get("factor_rows", np.float32, rows * cols).reshape(rows, cols)
    lowrank_rows(b_val, a_val, scratch)
    offset = start - first * cols
    out[:] = scratch.reshape(-1)[offset : offset + n]
    return out


class _OnDisk:
    """A sorted int64 array read element by element, for :func:`bisect` without loading it."""

    def __init__(self, reader: FileReader, info: TensorInfo, scratch: np.ndarray) -> None:
        self._reader, self._info, self._scratch = reader, info, scratch

    def __len__(self) -> int:
        return self._info.numel

    def __getitem__(self, i: int) -> int:
        return int(self._reader.read_into(self._info, i, self._scratch)[0])


def fill_sparse(
    reader: FileReader, indices: TensorInfo, values: TensorInfo, start: int, out: np.ndarray, ws: Workspace
) -> np.ndarray:
    """Fill the float32 block ``out`` with the sparse tensor's flat elements ``[start, start + out.size)``.

    Two binary searches over the on-disk indices (≈ 2·log₂ kept reads of 8 bytes) find the kept
    entries inside the block; only those are read.

    Raises:
        VectorFormatError: the stored indices are not sorted or fall outside the tensor.
    """
    n = out.size
    out.fill(0)
    if n == 0 or indices.numel == 0:
        return out
    seq = _OnDisk(reader, indices, np.empty(1, dtype=np.int64))
    lo = bisect.bisect_left(seq, start)  # type: ignore[arg-type]
    hi = bisect.bisect_left(seq, start + n, lo)  # type: ignore[arg-type]
    if hi == lo:
        return out
    idx = reader.read_into(indices, lo, ws.get("sparse_idx", np.int64, hi - lo))
    val = reader.read_into(values, lo, ws.get("sparse_val", np.float32, hi - lo))
    if int(idx.min()) < start or int(idx.max()) >= start + n:
        raise VectorFormatError(
            f"{indices.file}: '{indices.name}' is not sorted; the vector is damaged: re-run rvec compress"
        )
    np.subtract(idx, start, out=idx)
    out[idx] = val
    return out


def factored_norm(a: np.ndarray, b: np.ndarray) -> float:
    """``‖B @ A‖_F`` from r×r Gram matrices, in float64, without forming the product.

    ``‖BA‖²_F = tr(AᵀBᵀBA) = tr((BᵀB)(AAᵀ)) = Σᵢⱼ (BᵀB)ᵢⱼ (AAᵀ)ᵢⱼ`` (both Gram matrices symmetric).
    """
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    sq = float(np.sum((b64.T @ b64) * (a64 @ a64.T)))
    return math.sqrt(max(sq, 0.0))


def factored_zero_count(a: np.ndarray, b: np.ndarray) -> int:
    """Exact zeros of ``B @ A`` as :func:`lowrank_rows` computes it, streamed over row groups."""
    rows, cols = b.shape[0], a.shape[1]
    if rows == 0 or cols == 0:
        return 0
    step = max(1, _ROWS_PER_CALL_ELEMENTS // cols)
    scratch = np.empty((min(step, rows), cols), dtype=np.float32)
    zeros = 0
    for first in range(0, rows, step):
        last = min(rows, first + step)
        block = lowrank_rows(b[first:last], a, scratch[: last - first])
        zeros += block.size - int(np.count_nonzero(block))
    return zeros
