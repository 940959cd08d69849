"""Tensor dtypes without torch: safetensors names, numpy storage, float32 conversion.

Why the streaming engine (inspect, check, extract, apply, stats) does not use torch: importing it
costs about 1.1 s per command, which was a third of an ``apply`` on a 0.5B model
(docs/benchmarks.md). Safetensors data is raw little-endian bytes; numpy reads it into reused
buffers and does the float32 arithmetic. bfloat16 and float8 come from ``ml_dtypes`` (the numpy
dtypes JAX uses): their casts round to nearest, ties to even, and give torch's bits exactly
(tests/checkpoint/test_dtypes.py). ``torch`` is imported only on the paths that hold a live model or
pickled weights (:func:`to_torch`, :func:`from_torch`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ml_dtypes
import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DType:
    """One tensor dtype: its safetensors header name, numpy storage type and torch name."""

    name: str  # as in a safetensors header: "BF16"
    numpy: np.dtype[Any]  # the numpy dtype of its values (ml_dtypes for bfloat16 and float8)
    is_floating_point: bool
    torch_name: str  # attribute of the torch module: "bfloat16"

    @property
    def numpy_native(self) -> bool:
        """Whether numpy itself has this dtype (torch can then share its memory directly)."""
        return self.numpy.type.__module__ == "numpy"

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @property
    def torch(self) -> torch.dtype:
        """The torch dtype (imports torch)."""
        return getattr(importlib.import_module("torch"), self.torch_name)

    def __str__(self) -> str:
        return self.torch_name


F64 = DType("F64", np.dtype(np.float64), True, "float64")
F32 = DType("F32", np.dtype(np.float32), True, "float32")
F16 = DType("F16", np.dtype(np.float16), True, "float16")
BF16 = DType("BF16", np.dtype(ml_dtypes.bfloat16), True, "bfloat16")
F8_E4M3 = DType("F8_E4M3", np.dtype(ml_dtypes.float8_e4m3fn), True, "float8_e4m3fn")
F8_E5M2 = DType("F8_E5M2", np.dtype(ml_dtypes.float8_e5m2), True, "float8_e5m2")

# Every dtype a safetensors header may name that rvec reads, by that name.
BY_NAME: dict[str, DType] = {
    d.name: d
    for d in (
        F64,
        F32,
        F16,
        BF16,
        DType("I64", np.dtype(np.int64), False, "int64"),
        DType("I32", np.dtype(np.int32), False, "int32"),
        DType("I16", np.dtype(np.int16), False, "int16"),
        DType("I8", np.dtype(np.int8), False, "int8"),
        DType("U8", np.dtype(np.uint8), False, "uint8"),
        DType("BOOL", np.dtype(np.bool_), False, "bool"),
        F8_E4M3,
        F8_E5M2,
    )
}
_BY_TORCH_NAME = {d.torch_name: d for d in BY_NAME.values()}

# The output dtypes users may ask for, by their canonical (config.json) names.
FLOAT_NAMES: dict[str, DType] = {"float32": F32, "bfloat16": BF16, "float16": F16}

# Other spellings of those names, accepted by every command and study field that takes a dtype.
FLOAT_ALIASES: dict[str, str] = {
    "fp32": "float32",
    "f32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "f16": "float16",
    "half": "float16",
}


def parse_float_dtype(text: str) -> DType:
    """A float dtype users named: canonical name or alias, any case, ``torch.`` prefix allowed.

    Raises:
        InvalidArgumentError: any other name.

    Example:
        >>> parse_float_dtype("BF16").torch_name
        'bfloat16'
    """
    key = text.strip().lower().removeprefix("torch.")
    found = FLOAT_NAMES.get(FLOAT_ALIASES.get(key, key))
    if found is None:
        from rvec.errors import InvalidArgumentError

        raise InvalidArgumentError(
            f"dtype '{text}': expected float32, bfloat16 or float16 (or fp32, bf16, fp16)"
        )
    return found


def parse_output_dtype(text: str | None) -> DType | None:
    """A dtype option that may be left to a default: ``None`` or ``auto`` → ``None`` (the caller's
    default: the target's dtype, the device's…), else :func:`parse_float_dtype`.

    Raises:
        InvalidArgumentError: any other name.
    """
    if text is None or text.strip().lower() == "auto":
        return None
    return parse_float_dtype(text)


def coerce(dtype: DType | str | Any) -> DType:
    """A :class:`DType` from itself, a safetensors or torch name, or a ``torch.dtype`` (no torch import)."""
    if isinstance(dtype, DType):
        return dtype
    text = str(dtype).removeprefix("torch.")
    found = BY_NAME.get(text) or _BY_TORCH_NAME.get(text)
    if found is None:
        raise ValueError(f"unsupported tensor dtype {dtype!r}")
    return found


def to_float32(raw: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Widen ``raw`` (any :class:`DType`'s numpy array) into the float32 buffer ``out`` of the same
    length; exact for every float dtype but float64, which rounds to nearest like ``torch.Tensor.float``."""
    if raw.dtype == BF16.numpy:
        # bf16 is float32's top half: widened as integers, then one shift in place, 2-3× faster than
        # ml_dtypes' cast (measured 0.26 against 0.46-0.83 ns an element), bit for bit the same. Not
        # left_shift(..., dtype=uint32): that casts through a buffer, a fifth slower.
        bits = out.view(np.uint32)
        np.copyto(bits, raw.view(np.uint16))
        np.left_shift(bits, 16, out=bits)
        return out
    np.copyto(out, raw, casting="unsafe")
    return out


def from_float32(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Round the float32 array ``x`` to ``out``'s dtype, into ``out``: nearest, ties to even; beyond
    the range is ±Inf (float8: ml_dtypes' overflow rule), NaN stays NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        np.copyto(out, x, casting="unsafe")
    return out


def all_finite(x: np.ndarray, scratch: np.ndarray | None = None) -> bool:
    """Whether every element of the float array ``x`` is finite.

    Args:
        scratch: a bool buffer of ``x``'s length for the mask, so streaming loops do not allocate
            (and page-fault) a fresh one per block.
    """
    return bool(np.isfinite(x, out=scratch).all())


def dot(x: np.ndarray, y: np.ndarray) -> float:
    """``Σ xᵢ·yᵢ`` of two 1-D float arrays, as a Python float.

    Why not ``np.dot``: it calls OpenBLAS, whose threads then busy-wait for more work and took a
    core from the streaming workers (5% of an apply's CPU samples). ``einsum`` runs numpy's own
    loop, as fast here and more accurate in float32 (1.6e-7 vs 9.5e-7 relative on 1M elements).
    """
    return float(np.einsum("i,i->", x, y))


def same_width_uint(dtype: DType) -> np.dtype[Any]:
    """The unsigned integer dtype of ``dtype``'s width: views for bit-exact comparison and for torch."""
    return np.dtype(f"u{dtype.itemsize}")


def to_torch(raw: np.ndarray, dtype: DType) -> torch.Tensor:
    """A torch tensor sharing the memory of ``raw`` (values of ``dtype``; imports torch)."""
    import torch

    raw = np.ascontiguousarray(raw)
    if dtype.numpy_native:
        return torch.from_numpy(raw)
    return torch.from_numpy(raw.view(same_width_uint(dtype))).view(dtype.torch)


def from_torch(tensor: torch.Tensor) -> np.ndarray:
    """The values of a CPU tensor as a numpy array of the matching dtype (shared memory when contiguous)."""
    dtype = coerce(tensor.dtype)
    tensor = tensor.detach().contiguous()
    if dtype.numpy_native:
        return tensor.numpy()
    import torch

    return tensor.view(getattr(torch, same_width_uint(dtype).name)).numpy().view(dtype.numpy)
