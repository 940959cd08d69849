"""The torch-free dtype layer: numpy conversions must give torch's bits exactly, edge values included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rvec.checkpoint.dtypes import (
    BF16,
    F16,
    F32,
    F64,
    all_finite,
    coerce,
    from_float32,
    from_torch,
    to_float32,
    to_torch,
)

# Values where rounding to a 16-bit float is decided: ties (even and odd), the largest finite
# values, overflow to ±Inf, subnormals, signed zeros, and the infinities themselves.
_EDGES = np.array(
    [
        0.0,
        -0.0,
        1.0,
        -1.0,
        1.00390625,
        1.01171875,
        1.0 + 2**-8,
        1.0 + 3 * 2**-8,
        3.3895314e38,
        -3.3895314e38,
        3.4028235e38,
        65504.0,
        65520.0,
        -65520.0,
        1e-40,
        -1e-40,
        1.4e-45,
        6e-8,
        3e-8,
        np.inf,
        -np.inf,
    ],
    dtype=np.float32,
)


def _values() -> np.ndarray:
    rng = np.random.default_rng(0)
    random_bits = rng.integers(0, 2**32, 200_000, dtype=np.uint32).view(np.float32)
    finite = random_bits[np.isfinite(random_bits)]
    return np.concatenate([_EDGES, finite, (rng.standard_normal(100_000) * 0.02).astype(np.float32)])


@pytest.mark.parametrize("dtype", [BF16, F16])
def test_rounding_from_float32_matches_torch_bit_for_bit(dtype) -> None:
    x = _values()
    ours = from_float32(x, np.empty(x.size, dtype.numpy))
    theirs = from_torch(torch.from_numpy(x).to(dtype.torch))
    assert np.array_equal(ours.view(np.uint16), theirs.view(np.uint16))


def test_bfloat16_nan_stays_nan() -> None:
    nan_payloads = np.array([0x7F800001, 0x7FFFFFFF, 0xFFFFFFFF, 0x7FC00000], dtype=np.uint32).view(
        np.float32
    )
    out = from_float32(nan_payloads, np.empty(4, BF16.numpy))
    assert torch.isnan(to_torch(out, BF16)).all()


@pytest.mark.parametrize("dtype", [BF16, F16, F32, F64])
def test_widening_to_float32_matches_torch(dtype) -> None:
    source = torch.from_numpy(_values()).to(dtype.torch)
    raw = from_torch(source)
    ours = to_float32(raw, np.empty(raw.size, np.float32))
    assert np.array_equal(ours.view(np.uint32), source.float().numpy().view(np.uint32))


def test_bfloat16_widening_is_exact_for_every_bit_pattern() -> None:
    """All 65,536 bf16 patterns (subnormals, ±0, ±Inf, NaN payloads) widen like torch, bit for bit."""
    raw = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(BF16.numpy)
    ours = to_float32(raw, np.empty(raw.size, np.float32))
    theirs = torch.from_numpy(raw.view(np.int16).copy()).view(torch.bfloat16).float().numpy()
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))
    strided = to_float32(raw[::3], np.empty(raw[::3].size, np.float32))
    assert np.array_equal(strided.view(np.uint32), theirs[::3].view(np.uint32))


def test_coerce_and_names() -> None:
    assert coerce(torch.bfloat16) is BF16 and coerce("BF16") is BF16 and coerce("float32") is F32
    assert BF16.torch == torch.bfloat16 and BF16.itemsize == 2 and str(BF16) == "bfloat16"
    assert F32.numpy_native and not BF16.numpy_native
    with pytest.raises(ValueError, match="unsupported"):
        coerce("complex64")


def test_all_finite() -> None:
    x = np.ones(10, np.float32)
    assert all_finite(x) and all_finite(x[:0])
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[7] = bad
        assert not all_finite(y)


def test_torch_round_trip_shares_bits() -> None:
    t = torch.randn(64).to(torch.bfloat16)
    assert torch.equal(to_torch(from_torch(t), BF16), t)


@pytest.mark.parametrize(
    "name", ["bf16", "BFloat16", "torch.bfloat16", "fp16", "half", "fp32", "float", "f32"]
)
def test_apply_eval_and_studies_share_one_dtype_alias_table(name: str) -> None:
    """``apply --dtype bf16`` worked while ``eval --dtype bf16`` was refused: one table serves both."""
    from rvec.checkpoint.dtypes import parse_output_dtype
    from rvec.model.hf.loading import pick_dtype
    from rvec.model.hf.settings import HFSettings

    dtype = parse_output_dtype(name)
    assert dtype is not None
    assert pick_dtype(name, "cpu") == dtype.torch
    assert HFSettings(dtype=name).dtype == dtype.torch_name
