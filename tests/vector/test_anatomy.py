"""``rvec anatomy``: every figure against a direct numpy computation on real vector folders built here
(known rank, sparsity and subspaces), the three encodings of one vector alike, aggregates recomputed
from the per-tensor records, and the command line (JSON, folder, one-line errors, no torch)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fixtures import Family
from helpers import assert_user_error
from rvec.checkpoint.source import resolve
from rvec.cli import app
from rvec.vector.anatomy import anatomy
from rvec.vector.compress import compress
from rvec.vector.factored import write_factored_vector
from rvec.vector.family import CLASS_ORDER, module_class, module_type

runner = CliRunner()
EPS32 = float(np.finfo(np.float32).eps)


# ----------------------------------------------------------------------------- independent maths
def direct_sigma(x: np.ndarray) -> np.ndarray:
    """LAPACK's singular values of ``x`` in float64, with the documented float32 noise floor applied."""
    s = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    s[s <= s[0] * max(x.shape) * EPS32] = 0.0
    return s


def direct_effective_rank(x: np.ndarray) -> float:
    s = direct_sigma(x)
    p = s[s > 0] / s.sum()
    return math.exp(-sum(pi * math.log(pi) for pi in p))


def direct_energy_rank(x: np.ndarray) -> int:
    s = direct_sigma(x)
    total, running = float(np.sum(s**2)), 0.0
    for k, value in enumerate(s, start=1):
        running += value**2
        if running >= 0.9 * total:
            return k
    return len(s)


def theta(family: Family) -> dict[str, np.ndarray]:
    ckpt = resolve(family.target)
    return {t.name: ckpt.read(t.name).astype(np.float32) for t in ckpt.index}


def read_all(folder: Path) -> dict[str, np.ndarray]:
    from rvec.vector.artifact import read_vector

    v = read_vector(folder)
    return {n: v.read(n) for n in v.shapes}


# ----------------------------------------------------------------------------- vectors
def known_vector(family: Family, out: Path) -> dict[str, np.ndarray]:
    """Matrices of rank 1–4 whose rows are zero (30%), tiny (30%: non-zero but below θ's rounding)
    or ordinary; 1-D tensors half tiny, half ordinary. Written dense; returns the values."""
    rng = np.random.default_rng(0)
    values = {}
    for i, (name, t) in enumerate(sorted(theta(family).items())):
        if t.ndim == 2:
            m, n = t.shape
            r = 1 + i % 4
            b = rng.standard_normal((m, r))
            scale = rng.choice([0.0, 1e-12, 1e-2], size=m, p=[0.3, 0.3, 0.4])
            x = ((b * scale[:, None]) @ rng.standard_normal((r, n))).astype(np.float32)
        else:
            x = (t * np.where(np.arange(t.size) % 2 == 0, 1e-9, 1e-2)).astype(np.float32)
        values[name] = x
    write_factored_vector(out, factors={}, dense=values, base=family.target)
    return values


def factored_vector(family: Family, out: Path, *, sign: float = 1.0, seed: int = 1) -> None:
    """Rank-3 factors on every matrix, dense 1-D tensors; ``sign`` −1 gives the negative vector."""
    rng = np.random.default_rng(seed)
    factors, dense = {}, {}
    for name, t in sorted(theta(family).items()):
        if t.ndim == 2:
            a = rng.standard_normal((3, t.shape[1])).astype(np.float32) * 1e-2
            b = rng.standard_normal((t.shape[0], 3)).astype(np.float32) * sign
            factors[name] = (a, b)
        else:
            dense[name] = rng.standard_normal(t.shape).astype(np.float32) * 1e-3 * sign
    write_factored_vector(out, factors=factors, dense=dense, base=family.target)


@pytest.fixture(scope="module")
def encodings(qwen_untied: Family, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One vector three ways: factored, its dense copy, its sparse copy; and a second vector."""
    root = tmp_path_factory.mktemp("anatomy")
    factored_vector(qwen_untied, root / "factored")
    write_factored_vector(
        root / "dense", factors={}, dense=read_all(root / "factored"), base=qwen_untied.target
    )
    compress(root / "factored", root / "sparse", density=1.0)
    factored_vector(qwen_untied, root / "other", seed=2)
    return {k: root / k for k in ("factored", "dense", "sparse", "other")}


# ----------------------------------------------------------------------------- figures
@pytest.mark.parametrize("family_name", ["qwen_untied", "qwen_bf16"], ids=["float32", "bfloat16"])
def test_ranks_and_moved_fraction_equal_direct_numpy(
    family_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    family: Family = request.getfixturevalue(family_name)  # θ stored float32, or bf16 widened exactly
    values = known_vector(family, tmp_path / "vec")
    target = theta(family)
    data = anatomy(tmp_path / "vec", like=family.target, top_k=4).to_dict()["per_tensor"]
    assert set(data) == set(values)
    for name, x in values.items():
        rec, t = data[name], target[name]
        assert rec["moved"] == int(np.count_nonzero((t + x) != t)), name
        assert rec["moved_fraction"] == rec["moved"] / x.size
        assert rec["nonzero_fraction"] == pytest.approx(np.count_nonzero(x) / x.size, abs=1e-12)
        assert rec["base_norm"] == pytest.approx(float(np.linalg.norm(t.astype(np.float64))), rel=1e-9)
        if x.ndim == 2:
            assert np.count_nonzero(direct_sigma(x)) <= 4  # the construction: rank 1–4
            assert rec["effective_rank"] == pytest.approx(direct_effective_rank(x), rel=1e-6), name
            assert rec["energy_rank"] == direct_energy_rank(x), name
            assert rec["max_rank"] == min(x.shape)
        else:
            assert rec["effective_rank"] is None and rec["k"] is None
    # Tiny entries are non-zero yet below θ's float32 rounding: moved < non-zero somewhere.
    assert any(r["moved_fraction"] < r["nonzero_fraction"] for r in data.values())


def test_dense_factored_and_sparse_encodings_give_equal_figures(
    qwen_untied: Family, encodings: dict[str, Path]
) -> None:
    runs = {
        kind: anatomy(encodings[kind], like=qwen_untied.target, compare=encodings["other"], top_k=4).to_dict()
        for kind in ("factored", "dense", "sparse")
    }
    per = {kind: run["per_tensor"] for kind, run in runs.items()}
    assert {r["encoding"] for r in per["sparse"].values()} == {"sparse"}
    assert {r["encoding"] for r in per["factored"].values()} == {"factored", "dense"}
    for name, ref in per["factored"].items():
        for kind in ("dense", "sparse"):
            rec = per[kind][name]
            assert rec["moved"] == ref["moved"], (kind, name)  # the same float32 values, bit for bit
            assert rec["energy_rank"] == ref["energy_rank"] and rec["k"] == ref["k"], (kind, name)
            for key in ("norm", "rel_norm", "effective_rank", "overlap_left", "overlap_right", "cosine"):
                if ref[key] is None:
                    assert rec[key] is None, (kind, name, key)
                else:
                    assert rec[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-9), (kind, name, key)
    assert per["factored"]["model.layers.0.mlp.up_proj.weight"]["effective_rank"] <= 3


@pytest.mark.parametrize("factored", [False, True], ids=["dense", "factored"])
def test_overlap_is_one_inside_the_targets_top_subspace_and_zero_orthogonal_to_it(
    qwen_untied: Family, tmp_path: Path, factored: bool
) -> None:
    k = 4
    names = [
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.embed_tokens.weight",
    ]
    target = theta(qwen_untied)
    results = {}
    for label, cols in (("inside", slice(0, k)), ("orthogonal", slice(k, 2 * k))):
        factors, dense = {}, {}
        for name in names:  # gate (64×32), down (32×64: the transposed route), embedding (160×32)
            u, _, vt = np.linalg.svd(target[name].astype(np.float64), full_matrices=False)
            d = np.array([4.0, 3.0, 2.0, 1.0]) * 1e-2
            b, a = (u[:, cols] * d).astype(np.float32), vt[cols].astype(np.float32)
            if factored:
                factors[name] = (a, b)
            else:
                dense[name] = (u[:, cols] * d) @ vt[cols]
        write_factored_vector(tmp_path / label, factors=factors, dense=dense, base=qwen_untied.target)
        results[label] = anatomy(tmp_path / label, like=qwen_untied.target, top_k=k).to_dict()["per_tensor"]
    for name in names:
        inside, outside = results["inside"][name], results["orthogonal"][name]
        assert inside["k"] == outside["k"] == k
        assert inside["overlap_left"] == pytest.approx(1.0, abs=1e-5)
        assert inside["overlap_right"] == pytest.approx(1.0, abs=1e-5)
        assert outside["overlap_left"] == pytest.approx(0.0, abs=1e-5)
        assert outside["overlap_right"] == pytest.approx(0.0, abs=1e-5)
        m, n = target[name].shape
        assert inside["random_left"] == k / m and inside["random_right"] == k / n
        assert inside["effective_rank"] == pytest.approx(
            direct_effective_rank(np.diag([4.0, 3, 2, 1])), rel=1e-5
        )


def test_cosine_with_itself_is_one_and_with_its_negative_minus_one(
    qwen_untied: Family, encodings: dict[str, Path], tmp_path: Path
) -> None:
    factored_vector(qwen_untied, tmp_path / "negative", sign=-1.0)
    for other, expected in ((encodings["factored"], 1.0), (tmp_path / "negative", -1.0)):
        data = anatomy(encodings["dense"], compare=other, svd=False).to_dict()
        assert data["overall"]["cosine"] == pytest.approx(expected, abs=1e-9)
        groups = [*data["per_layer"].values(), *data["per_module"].values(), *data["per_tensor"].values()]
        assert all(g["cosine"] == pytest.approx(expected, abs=1e-6) for g in groups if g["norm"] > 0)
        assert data["not_compared"] == {"only_in_vector": [], "only_in_compare": []}


def test_aggregates_recomputed_from_the_per_tensor_records(
    qwen_untied: Family, encodings: dict[str, Path]
) -> None:
    data = anatomy(encodings["dense"], like=qwen_untied.target, compare=encodings["other"], top_k=4).to_dict()
    tensors = data["per_tensor"]

    def check(group: dict, members: list[dict]) -> None:
        numel = sum(math.prod(r["shape"]) for r in members)
        norm = math.sqrt(sum(r["norm"] ** 2 for r in members))
        base = math.sqrt(sum(r["base_norm"] ** 2 for r in members))
        assert group["tensors"] == len(members) and group["numel"] == numel
        assert group["norm"] == pytest.approx(norm, rel=1e-12)
        assert group["rel_norm"] == pytest.approx(norm / base, rel=1e-12)
        assert group["moved_fraction"] == pytest.approx(sum(r["moved"] for r in members) / numel, rel=1e-12)
        for key in ("effective_rank", "energy_rank", "overlap_left", "overlap_right", "random_left"):
            weighted = [(r["norm"], r[key]) for r in members if r[key] is not None]
            if weighted:
                expected = sum(w * x for w, x in weighted) / sum(w for w, _ in weighted)
                assert group[key] == pytest.approx(expected, rel=1e-12), key
            else:
                assert group[key] is None, key
        dots = sum(r["cosine"] * r["norm"] * r["compare_norm"] for r in members)
        other = math.sqrt(sum(r["compare_norm"] ** 2 for r in members))
        assert group["cosine"] == pytest.approx(dots / (norm * other), rel=1e-5)

    check(data["overall"], list(tensors.values()))
    for layer, group in data["per_layer"].items():
        check(group, [r for r in tensors.values() if r["layer"] == int(layer)])
    for module, group in data["per_module"].items():
        check(group, [r for r in tensors.values() if r["module"] == module])
    for layer, row in data["per_layer_module"].items():
        for module, group in row.items():
            check(group, [r for r in tensors.values() if r["layer"] == int(layer) and r["module"] == module])
    assert list(data["per_module"]) == [m for m in CLASS_ORDER if m in data["per_module"]]


def test_without_like_relative_norms_come_from_the_manifest(encodings: dict[str, Path]) -> None:
    data = anatomy(encodings["dense"], svd=False).to_dict()
    manifest = json.loads((encodings["dense"] / "rvec.json").read_text())["tensors"]
    for name, rec in data["per_tensor"].items():
        assert rec["rel_norm"] == pytest.approx(manifest[name]["rel_norm"], rel=1e-12)
        assert rec["moved"] is None and rec["effective_rank"] is None and rec["cosine"] is None
    assert data["settings"]["rel_norm_reference"] == "sft (rvec.json)"


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("model.embed_tokens.weight", "embed"),
        ("lm_head.weight", "lm_head"),
        ("model.layers.3.self_attn.q_proj.weight", "attn.q"),
        ("model.layers.3.self_attn.k_proj.bias", "attn.k"),
        ("model.layers.3.self_attn.qkv_proj.weight", "attn.qkv"),
        ("model.layers.3.self_attn.o_proj.weight", "attn.o"),
        ("model.layers.3.self_attn.q_norm.weight", "norm"),
        ("model.layers.3.mlp.gate_up_proj.weight", "mlp.gate_up"),
        ("model.layers.3.mlp.down_proj.weight", "mlp.down"),
        ("transformer.h.2.attn.c_proj.weight", "attn.o"),
        ("transformer.h.2.mlp.c_proj.weight", "mlp.down"),
        ("gpt_neox.layers.1.mlp.dense_h_to_4h.weight", "mlp.up"),
        ("model.layers.0.input_layernorm.weight", "norm"),
        ("model.layers.0.mlp.router.weight", "mlp.other"),
    ],
)
def test_module_classes_refine_the_recorded_module_type(name: str, cls: str) -> None:
    assert module_class(name) == cls
    coarse = {"embed": "embeddings", "lm_head": "embeddings", "attn": "attention", "mlp": "mlp"}
    assert module_type(name) == coarse.get(cls.split(".")[0], cls)


# ----------------------------------------------------------------------------- command line
def test_cli_json_and_output_folder(qwen_untied: Family, encodings: dict[str, Path], tmp_path: Path) -> None:
    vec, out = str(encodings["dense"]), tmp_path / "anatomy"
    common = ["--like", str(qwen_untied.target), "--compare", str(encodings["other"]), "--top-k", "4"]
    shown = runner.invoke(app, ["anatomy", vec, *common, "--json", "--no-progress"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["kind"] == "rvec-anatomy" and data["settings"]["top_k"] == 4
    assert set(data["definitions"]) >= {"moved_fraction", "effective_rank", "overlap_left", "cosine"}
    written = runner.invoke(app, ["anatomy", vec, *common, "-o", str(out), "--no-progress"])
    assert written.exit_code == 0, written.output
    files = {p.name for p in out.iterdir()}
    assert files == {"anatomy.json", "anatomy.md", "rvec.json", "norms.png", "rel_norm.png", "moved.png",
                     "rank.png", "overlap.png", "cosine.png"}  # fmt: skip
    assert json.loads((out / "anatomy.json").read_text())["per_tensor"] == data["per_tensor"]
    assert (out / "overlap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| mlp.gate |" in (out / "anatomy.md").read_text()
    table = runner.invoke(app, ["anatomy", vec, "--no-svd", "--no-progress"])
    assert table.exit_code == 0 and "overall: ‖v‖" in table.stdout
    again = runner.invoke(app, ["anatomy", vec, "--no-svd", "-o", str(out), "--no-progress"])
    assert_user_error(again, "already exists; pass --overwrite")
    replaced = runner.invoke(
        app, ["anatomy", vec, "--no-svd", "-o", str(out), "--overwrite", "--no-progress"]
    )
    assert replaced.exit_code == 0 and not (out / "moved.png").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["{missing}"], "not an rvec vector folder (no rvec.json)"),
        (["{vec}", "--like", "{llama}"], "does not fit"),
        (["{vec}", "--like", "{missing}"], "no such folder or file"),
        (["{vec}", "-o", "{vec}"], "is an input of this command"),
        (["{vec}", "--top-k", "0"], "--top-k 0: must be at least 1"),
    ],
    ids=["missing-folder", "other-family", "missing-like", "output-onto-vector", "top-k-0"],
)
def test_cli_bad_inputs_are_one_line(
    args: list[str], fragment: str, encodings: dict[str, Path], llama_tied: Family, tmp_path: Path
) -> None:
    values = {
        "vec": str(encodings["dense"]),
        "llama": str(llama_tied.target),
        "missing": str(tmp_path / "nope"),
    }
    before = sorted(p.name for p in encodings["dense"].iterdir())
    result = runner.invoke(app, ["anatomy", *(a.format(**values) for a in args), "--no-progress"])
    assert_user_error(result, fragment)
    assert sorted(p.name for p in encodings["dense"].iterdir()) == before


def test_anatomy_never_imports_torch(qwen_untied: Family, encodings: dict[str, Path], tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from rvec.cli.app import app\n"
        "try:\n"
        f"    app(['anatomy', {str(encodings['factored'])!r}, '--like', {str(qwen_untied.target)!r},"
        f" '--compare', {str(encodings['other'])!r}, '--top-k', '4', '-o', {str(tmp_path / 'a')!r}, '--no-progress'])\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stdout + done.stderr
