"""Properties of the vector arithmetic over drawn data (hypothesis): apply ∘ extract gives back the
RL donor, the result is linear in α, and a factored vector reads as its dense product — each
within the float32 rounding the docs promise (docs/vector-format.md), on real files.

Each example writes real checkpoints, so the counts are small (tests/fuzzing.py: PROPERTY).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from fixtures import Family
from fuzzing import PROPERTY
from rvec.vector.apply import apply
from rvec.vector.artifact import read_vector
from rvec.vector.compress import compress
from rvec.vector.extract import extract

pytestmark = pytest.mark.fuzz

U = 2.0**-24  # float32 unit roundoff
SCALES = st.sampled_from([1e-6, 1e-3, 1.0, 1e3])


def numpy_folder(folder: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for file in sorted(folder.glob("*.safetensors")):
        if file.name != "lineage.safetensors":
            out.update(load_file(file))
    return out


def fine_tune(base: Path, out: Path, seed: int, scale: float) -> Path:
    """A copy of ``base`` with every tensor moved by seeded noise of ``scale`` (float32)."""
    shutil.copytree(base, out)
    rng = np.random.default_rng(seed)
    for file in sorted(out.glob("*.safetensors")):
        tensors = load_file(file)
        moved = {k: (v + rng.standard_normal(v.shape) * scale).astype(np.float32) for k, v in tensors.items()}
        save_file(moved, file, metadata={"format": "pt"})
    return out


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), scale=SCALES)
def test_apply_of_extract_gives_back_the_rl_donor(qwen_untied: Family, seed: int, scale: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rl = fine_tune(qwen_untied.sft, Path(tmp) / "rl", seed, scale)
        extract(qwen_untied.sft, rl, Path(tmp) / "v", lineage=False)  # large noise: unrelated by design
        apply([Path(tmp) / "v"], qwen_untied.sft, Path(tmp) / "out", alphas=[1.0])
        sft, want, got = numpy_folder(qwen_untied.sft), numpy_folder(rl), numpy_folder(Path(tmp) / "out")
    for name, w in want.items():
        s, g = sft[name].astype(np.float64), got[name].astype(np.float64)
        # fl(s + fl(w − s)): one rounding of the difference, one of the sum.
        bound = 2 * U * (np.abs(w) + np.abs(w - s)) + np.finfo(np.float32).tiny
        assert np.all(np.abs(g - w) <= bound), name


@pytest.fixture(scope="module")
def vec(qwen_untied: Family, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("props") / "v"
    extract(qwen_untied.sft, qwen_untied.rl, out)
    return out


@PROPERTY
@given(alpha=st.floats(-8, 8, allow_nan=False).filter(lambda a: a != 0))
def test_apply_is_linear_in_alpha(vec: Path, qwen_untied: Family, alpha: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        apply([vec], qwen_untied.target, Path(tmp) / "out", alphas=[alpha])
        got = numpy_folder(Path(tmp) / "out")
    v, target = numpy_folder(vec), numpy_folder(qwen_untied.target)
    for name, t in target.items():
        t64, av = t.astype(np.float64), np.float64(np.float32(alpha)) * v[name].astype(np.float64)
        # fl(t + fl(α·v)), against the exact t + α·v
        bound = 2 * U * (np.abs(t64) + 2 * np.abs(av)) + np.finfo(np.float32).tiny
        assert np.all(np.abs(got[name].astype(np.float64) - (t64 + av)) <= bound), name


@PROPERTY
@given(rank=st.integers(1, 12))
def test_a_factored_vector_reads_as_its_dense_product(vec: Path, rank: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        compress(vec, Path(tmp) / "f", rank=rank)
        factored = read_vector(Path(tmp) / "f")
        try:
            names = [n for n in factored.shapes if factored.encoding(n) == "factored"]
            assert names
            for name in names:
                a, b = (x.astype(np.float64) for x in factored.factors(name))
                exact = b @ a
                got = factored.read_delta(name, 0, exact.size).astype(np.float64).reshape(exact.shape)
                # a float32 sum of a.shape[0] products per entry
                bound = (a.shape[0] + 1) * U * (np.abs(b) @ np.abs(a)) + np.finfo(np.float32).tiny
                assert np.all(np.abs(got - exact) <= bound), name
        finally:
            factored.close()
