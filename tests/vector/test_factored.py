"""Factored and sparse vectors: every reader gets the same float32 values as from their dense product."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM

from fixtures import Family
from helpers import load_folder
from rvec.checkpoint.reader import Workspace
from rvec.vector.anatomy import measure_anatomy
from rvec.vector.apply import apply
from rvec.vector.artifact import read_vector
from rvec.vector.compress import compress
from rvec.vector.extract import extract
from rvec.vector.factored import write_factored_vector
from rvec.vector.inmemory import InMemoryVectors, applied
from rvec.vector.writing import Dense, TensorPlan, write_vector

RANK = 3


@pytest.fixture(scope="module")
def vec(qwen_untied: Family, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fact") / "vec"
    extract(qwen_untied.sft, qwen_untied.rl, out)
    return out


@pytest.fixture(scope="module")
def factored(vec: Path, qwen_untied: Family, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random rank-3 factors for every matrix of the family, the real deltas for its 1-D tensors,
    and one matrix left out: the base makes it an exact zero (as for the tensors LoRA did not train)."""
    v = read_vector(vec)
    g = np.random.default_rng(0)
    factors, dense = {}, {}
    for name, shape in v.shapes.items():
        if name == "model.layers.1.mlp.down_proj.weight":
            continue
        if len(shape) == 2:
            scale = 1e-3 / math.sqrt(RANK)
            a = g.standard_normal((RANK, shape[1]), dtype=np.float32) * np.float32(scale)
            b = g.standard_normal((shape[0], RANK), dtype=np.float32)
            factors[name] = (a, b)
        else:
            dense[name] = v.read(name)
    out = tmp_path_factory.mktemp("fact") / "factored"
    write_factored_vector(
        out,
        factors=factors,
        dense=dense,
        base=qwen_untied.sft,  # config, the zero tensor, ‖θ_SFT‖ for rel_norm, the lineage probe
        sources=v.manifest["sources"],
        extra={"recipe": {"what": "test"}},
    )
    return out


@pytest.fixture(scope="module")
def densified(factored: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same vector with every tensor stored dense: its values read back through the reader."""
    v = read_vector(factored)
    plan = [TensorPlan(n, s, "dense") for n, s in v.shapes.items()]
    out = tmp_path_factory.mktemp("fact") / "dense"
    tensors = ((n, Dense(v.read(n)), {}) for n in v.shapes)
    manifest = {"formula": "densified", "sources": v.manifest["sources"], "config": v.config}
    write_vector(out, plan, tensors, manifest=manifest, lineage=v)
    return out


def test_factored_values_are_the_product_of_the_factors(factored: Path) -> None:
    v = read_vector(factored)
    manifest = json.loads((factored / "rvec.json").read_text())
    assert manifest["format_version"] == 2 and manifest["recipe"] == {"what": "test"}
    name = "model.layers.0.mlp.up_proj.weight"
    a, b = v.factors(name)
    assert (
        v.manifest["tensors"][name]["encoding"] == "factored" and v.manifest["tensors"][name]["rank"] == RANK
    )
    # torch's GEMM sums the r products in another order than rvec's fixed-order einsum: ≤ a few ulps.
    reference = (torch.from_numpy(b) @ torch.from_numpy(a)).numpy()
    np.testing.assert_allclose(v.read(name), reference, rtol=1e-5, atol=1e-9)
    zero = v.read("model.layers.1.mlp.down_proj.weight")
    assert v.encoding("model.layers.1.mlp.down_proj.weight") == "sparse" and not zero.any()


def test_any_block_of_a_factored_tensor_equals_the_whole_products_slice(factored: Path) -> None:
    v = read_vector(factored)
    name = "model.embed_tokens.weight"  # (160, 32)
    whole = v.read(name).reshape(-1)
    ws = Workspace(64)
    for start, stop in [(0, 1), (5, 37), (31, 33), (32, 96), (100, 5119), (5000, 5120)]:
        block = v.read_delta_into(name, start, np.empty(stop - start, np.float32), ws)
        assert np.array_equal(block, whole[start:stop]), (start, stop)


def test_norms_come_exactly_from_the_factors(factored: Path, vec: Path) -> None:
    v = read_vector(factored)
    source = read_vector(vec)
    for name, rec in v.manifest["tensors"].items():
        expected = float(np.linalg.norm(v.read(name).astype(np.float64)))
        assert rec["norm"] == pytest.approx(expected, rel=1e-6), name
        base = source.manifest["tensors"][name]["norm"] / source.manifest["tensors"][name]["rel_norm"]
        assert rec["rel_norm"] == pytest.approx(rec["norm"] / base, rel=1e-12)
    encodings = Counter(t.encoding for t in measure_anatomy(v, svd=False).tensors)
    assert encodings == {"factored": 29, "dense": 21, "sparse": 1}


def test_apply_of_factored_equals_apply_of_its_dense_product(
    factored: Path, densified: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    apply([factored], qwen_untied.target, tmp_path / "f", alphas=[0.7])
    apply([densified], qwen_untied.target, tmp_path / "d", alphas=[0.7])
    got, want = load_folder(tmp_path / "f"), load_folder(tmp_path / "d")
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)  # bit-exact: the same float32 product


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_in_memory_factored_equals_on_disk_apply(
    factored: Path, qwen_untied: Family, qwen_bf16: Family, tmp_path: Path, dtype: torch.dtype
) -> None:
    target = qwen_untied.target if dtype == torch.float32 else qwen_bf16.target  # stored as it runs
    apply([factored], target, tmp_path / "out", alphas=[-1.3])
    written = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=dtype).state_dict()
    model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype)
    before = {k: t.clone() for k, t in model.state_dict().items()}
    with applied(model, [(factored, -1.3)]):
        now = model.state_dict()
        assert all(torch.equal(now[k], written[k]) for k in written)
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)


def test_in_memory_keeps_factored_tensors_encoded(factored: Path, qwen_untied: Family) -> None:
    model = AutoModelForCausalLM.from_pretrained(qwen_untied.target)
    iv = InMemoryVectors(model, [factored])
    dense_deltas = [d for slot in iv._slots for _, d, _ in slot.deltas if isinstance(d, torch.Tensor)]
    # Only the 21 one-dimensional tensors are held as float32 rows; the matrices stay as factors.
    assert len(dense_deltas) == 21 and all(d.ndim == 1 and d.numel() <= 64 for d in dense_deltas)


def test_sparse_apply_equals_dense_apply_of_the_masked_vector(
    vec: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    sparse = compress(vec, tmp_path / "sparse", density=0.1).vector
    v = read_vector(vec)
    plan = [TensorPlan(n, s, "dense") for n, s in v.shapes.items()]

    stored = {}
    for shard in sparse.index.files:
        stored.update(load_file(str(shard)))

    def masked():
        for name in v.shapes:
            flat = v.read(name).reshape(-1)
            mask = np.zeros(flat.size, dtype=bool)
            mask[stored[f"{name}:indices"]] = True
            yield name, Dense(np.where(mask, flat, np.float32(0)).reshape(v.shapes[name])), {}

    manifest = {"formula": "masked", "sources": v.manifest["sources"], "config": v.config}
    write_vector(tmp_path / "masked", plan, masked(), manifest=manifest, lineage=v)
    apply([sparse], qwen_untied.target, tmp_path / "s", alphas=[1.0])
    apply([tmp_path / "masked"], qwen_untied.target, tmp_path / "m", alphas=[1.0])
    got, want = load_folder(tmp_path / "s"), load_folder(tmp_path / "m")
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_format_version_1_folders_still_read_and_apply(
    vec: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    """A folder as rvec wrote it before encodings: format_version 1, no ``encoding``, no ``aux_files``."""
    import shutil

    old = tmp_path / "v1"
    shutil.copytree(vec, old)
    manifest = json.loads((old / "rvec.json").read_text())
    manifest["format_version"] = 1
    manifest.pop("aux_files")
    for rec in manifest["tensors"].values():
        rec.pop("encoding")
    (old / "rvec.json").write_text(json.dumps(manifest))
    v1 = read_vector(old)
    assert v1.verified and all(v1.encoding(n) == "dense" for n in v1.shapes)
    assert v1.content_hash == read_vector(vec).content_hash  # same shards, same identity (eval caches)
    apply([old], qwen_untied.target, tmp_path / "a", alphas=[1.0])
    apply([vec], qwen_untied.target, tmp_path / "b", alphas=[1.0])
    got, want = load_folder(tmp_path / "a"), load_folder(tmp_path / "b")
    assert all(torch.equal(got[k], want[k]) for k in want)
