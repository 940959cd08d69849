"""``rvec compress``: the recorded error is the SVD tail (rank) or the dropped mass (density); bad settings are one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fixtures import Family
from helpers import assert_user_error
from rvec.cli import app
from rvec.vector.artifact import read_vector
from rvec.vector.compress import compress, kept_count
from rvec.vector.extract import extract

runner = CliRunner()


@pytest.fixture(scope="module")
def vec(qwen_untied: Family, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("comp") / "vec"
    extract(qwen_untied.sft, qwen_untied.rl, out)
    return out


def test_rank_error_equals_the_svd_tail(vec: Path, tmp_path: Path) -> None:
    rank = 5
    result = runner.invoke(
        app, ["compress", str(vec), "--rank", str(rank), "-o", str(tmp_path / "r"), "--json", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    v, r = read_vector(vec), read_vector(tmp_path / "r")
    dropped_sq = total_sq = 0.0
    for name, shape in v.shapes.items():
        rec = r.manifest["tensors"][name]
        dense = torch.from_numpy(v.read(name)).double()
        total_sq += float(dense.square().sum())
        if len(shape) != 2:
            assert rec["encoding"] == "dense" and rec["relative_error"] == 0.0
            assert np.array_equal(r.read(name), v.read(name))
            continue
        s = torch.linalg.svd(dense).S
        tail = float(s[rank:].square().sum().sqrt())
        assert rec["encoding"] == "factored" and rec["rank"] == min(rank, *shape)
        assert rec["relative_error"] == pytest.approx(
            tail / float(s.square().sum().sqrt()), rel=1e-9, abs=1e-12
        )
        dropped_sq += tail**2
        # The stored product is the truncated SVD, up to float32 rounding of the factors.
        u, _, vh = torch.linalg.svd(dense, full_matrices=False)
        best = (u[:, :rank] * s[:rank]) @ vh[:rank]
        np.testing.assert_allclose(r.read(name), best.float().numpy(), atol=1e-6 * float(s[0]))
    assert summary["relative_error"] == pytest.approx(math.sqrt(dropped_sq / total_sq), rel=1e-9)
    assert r.manifest["compression"]["relative_error"] == summary["relative_error"]
    assert r.manifest["compression"]["kept_dense"] == sorted(
        (n for n, s in v.shapes.items() if len(s) != 2), key=list(v.shapes).index
    )
    assert summary["bytes_after"] < summary["bytes_before"]


def test_density_keeps_exactly_the_requested_fraction(vec: Path, tmp_path: Path) -> None:
    density = 0.05
    result = compress(vec, tmp_path / "d", density=density)
    v = read_vector(vec)
    dropped_sq = total_sq = 0.0
    for name, shape in v.shapes.items():
        n = math.prod(shape)
        rec = result.vector.manifest["tensors"][name]
        assert rec["encoding"] == "sparse"
        assert rec["kept"] == math.floor(density * n + 0.5) == result.vector.index[f"{name}:indices"].numel
        original = v.read(name).reshape(-1).astype(np.float64)
        kept = result.vector.read(name).reshape(-1).astype(np.float64)
        idx = np.flatnonzero(kept)
        assert np.array_equal(kept[idx], original[idx])  # kept entries are v's own values
        rest = np.delete(np.abs(original), idx)
        if idx.size and rest.size:
            assert np.abs(original[idx]).min() >= rest.max()  # ... and the largest in magnitude
        dropped_sq += float(np.sum((original - kept) ** 2))
        total_sq += float(np.sum(original**2))
        assert rec["relative_error"] == pytest.approx(
            math.sqrt(float(np.sum((original - kept) ** 2)) / float(np.sum(original**2))), rel=1e-9
        )
    assert result.relative_error == pytest.approx(math.sqrt(dropped_sq / total_sq), rel=1e-9)


def test_kept_count_rounds_half_up() -> None:
    assert [kept_count(0.5, n) for n in (1, 2, 3, 5)] == [1, 1, 2, 3]
    assert kept_count(1.0, 7) == 7 and kept_count(1e-9, 7) == 0


def test_compressing_a_factored_vector_at_its_rank_copies_the_factors(vec: Path, tmp_path: Path) -> None:
    first = compress(vec, tmp_path / "r4", rank=4).vector
    again = compress(first, tmp_path / "r4b", rank=8).vector  # ≥ stored rank: factors copied, exact
    lower = compress(first, tmp_path / "r2", rank=2)
    name = "model.layers.2.self_attn.o_proj.weight"
    assert all(np.array_equal(x, y) for x, y in zip(first.factors(name), again.factors(name)))
    assert again.manifest["tensors"][name]["relative_error"] == 0.0
    # Truncating stored factors (through their QR core) equals truncating their dense product.
    dense = torch.from_numpy(first.read(name)).double()
    s = torch.linalg.svd(dense).S
    expected = float(s[2:].square().sum().sqrt() / s.square().sum().sqrt())
    assert lower.per_tensor[name]["relative_error"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--rank", "33"], "--rank 33: larger than every matrix"),
        (["--rank", "0"], "--rank 0: must be at least 1"),
        (["--density", "0"], "--density 0: outside (0, 1]"),
        (["--density", "1.5"], "--density 1.5: outside (0, 1]"),
        (["--density", "-0.1"], "--density -0.1: outside (0, 1]"),
        (["--density", "nan"], "--density nan: outside (0, 1]"),
        (["--rank", "4", "--density", "0.1"], "pass exactly one of --rank R or --density D"),
        ([], "pass exactly one of --rank R or --density D"),
    ],
)
def test_bad_settings_are_one_line_errors(vec: Path, tmp_path: Path, args: list[str], fragment: str) -> None:
    result = runner.invoke(app, ["compress", str(vec), *args, "-o", str(tmp_path / "out"), "--no-progress"])
    assert_user_error(result, fragment)
    assert not (tmp_path / "out").exists()


def test_cli_prints_a_table_and_the_summary(vec: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["compress", str(vec), "--rank", "2", "-o", str(tmp_path / "r2"), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "relative error" in result.stdout and "rank 2" in result.stdout
    assert "kept dense (not matrices): 21 tensors" in result.stderr
    assert f"wrote {tmp_path / 'r2'}: rank 2, relative error" in result.stderr
