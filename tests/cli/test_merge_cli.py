"""``rvec merge`` then ``rvec apply MERGED --to BASE --alpha 1`` gives the weights mergekit's
definition gives (numpy, engine/merge_reference.py); ``rvec compress --method``; one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import merge_reference as ref
from fixtures import Family, perturb, save_model
from helpers import assert_user_error, load_folder
from rvec.cli import app
from rvec.vector.apply import apply
from rvec.vector.artifact import read_vector
from rvec.vector.extract import extract
from rvec.vector.inmemory import InMemoryVectors
from rvec.vector.merge import MergedDelta, merge_spec

runner = CliRunner()


@pytest.fixture(scope="module")
def trio(qwen_untied: Family, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three RL fine-tunes of one SFT model and their vectors (float32 models)."""
    root = tmp_path_factory.mktemp("merge-cli")
    sft_state = load_folder(qwen_untied.sft)
    found = {"sft": qwen_untied.sft, "rl1": qwen_untied.rl}
    for i, seed in ((2, 7), (3, 8)):
        found[f"rl{i}"] = save_model(perturb(sft_state, seed, 0.02), qwen_untied.config, root / f"rl{i}")
    for i in (1, 2, 3):
        found[f"v{i}"] = extract(found["sft"], found[f"rl{i}"], root / f"v{i}").path
    return found


def deltas(trio: dict[str, Path], n: int) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    base = load_folder(trio["sft"])
    return base, [
        {k: (t.float() - base[k].float()) for k, t in load_folder(trio[f"rl{i}"]).items()}
        for i in range(1, n + 1)
    ]


def expected_model(trio, method: str, weights, densities, **opts) -> dict[str, np.ndarray]:
    base, ds = deltas(trio, len(weights))
    out = {}
    for name, b in base.items():
        flats = [d[name].numpy().reshape(-1) for d in ds]
        if method == "ram":
            merged = ref.ram(flats, opts.get("epsilon", 1e-5))
        else:
            if method.startswith("ties"):
                flats = [ref.magnitude(f, d) for f, d in zip(flats, densities)]
            elif method.startswith("breadcrumbs"):
                flats = [
                    ref.magnitude_outliers(f, d, opts.get("gamma", 0.01)) for f, d in zip(flats, densities)
                ]
            merged = ref.gta(
                flats,
                weights,
                consensus=method.endswith("ties"),
                normalize=opts.get("normalize", method == "ties"),
            )
        out[name] = (b.float().numpy().reshape(-1) + merged).reshape(tuple(b.shape))
    return out


CASES = [
    ("task_arithmetic", ["--weights", "1,0.7"], [1.0, 0.7], None, {}),
    ("ties", ["--weights", "1,0.7", "--densities", "0.5,0.3"], [1.0, 0.7], [0.5, 0.3], {}),
    ("ties", ["--weights", "1,1,1", "--density", "0.1"], [1.0, 1.0, 1.0], [0.1] * 3, {}),  # sparse output
    ("breadcrumbs", ["--weights", "1,0.5", "--densities", "0.6,0.4", "--gamma", "0.05"], [1.0, 0.5], [0.6, 0.4],
     {"gamma": 0.05}),
    ("breadcrumbs_ties", ["--density", "0.5"], [1.0, 1.0], [0.5, 0.5], {}),
    ("ram", [], [1.0, 1.0, 1.0], None, {}),
]  # fmt: skip


@pytest.mark.parametrize(("method", "flags", "weights", "densities", "opts"), CASES)
def test_merge_then_apply_equals_mergekits_definition(
    trio, tmp_path, method, flags, weights, densities, opts
):
    vecs = [str(trio[f"v{i}"]) for i in range(1, len(weights) + 1)]
    merged = tmp_path / "merged"
    result = runner.invoke(
        app, ["merge", *vecs, "--method", method, *flags, "-o", str(merged), "--json", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    out = tmp_path / "model"
    result = runner.invoke(app, ["apply", str(merged), "--to", str(trio["sft"]), "--alpha", "1", "-o", str(out), "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    got = load_folder(out)
    for name, expected in expected_model(trio, method, weights, densities, **opts).items():
        np.testing.assert_array_equal(got[name].numpy(), expected, err_msg=name)
    manifest = read_vector(merged).manifest
    assert manifest["merge"]["method"] == summary["method"] == method
    assert [i["hash"] for i in manifest["merge"]["inputs"]] == [read_vector(v).content_hash for v in vecs]
    assert manifest["merge"]["per_vector"] == summary["per_vector"]
    if densities and max(densities) <= 0.1:
        assert summary["sparse_tensors"] > 0
        # 3 vectors at density 0.1 keep at most 30% of each tensor: every tensor is smaller sparse.
        assert {t["encoding"] for t in manifest["tensors"].values()} == {"sparse"}
    anatomy = runner.invoke(app, ["anatomy", str(merged), "--json", "--no-svd", "--no-progress"])
    assert anatomy.exit_code == 0, anatomy.output


def test_dare_merge_records_seed_and_keeps_the_stated_fraction(trio, tmp_path) -> None:
    args = ["merge", str(trio["v1"]), str(trio["v2"]), "--method", "dare_linear", "--density", "0.3"]
    a, b = tmp_path / "a", tmp_path / "b"
    for out, seed in ((a, "4"), (b, "4")):
        result = runner.invoke(app, [*args, "--seed", seed, "-o", str(out), "--json", "--no-progress"])
        assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    va, vb = read_vector(a), read_vector(b)
    assert va.manifest["merge"]["seed"] == 4 and va.manifest["merge"]["parameters"]["rescale"] is True
    total = sum(math.prod(s) for s in va.shapes.values())
    expected = sum(math.floor(0.3 * math.prod(s)) for s in va.shapes.values()) / total
    assert summary["kept_fraction"] == [pytest.approx(expected, rel=1e-12)] * 2
    for name in va.shapes:
        np.testing.assert_array_equal(va.read(name), vb.read(name))


def test_compress_methods_keep_mergekits_counts(trio, tmp_path) -> None:
    v = read_vector(trio["v1"])
    for method, extra in (("magnitude", []), ("breadcrumbs", ["--gamma", "0.02"]), ("dare", ["--seed", "3"])):
        out = tmp_path / method
        cmd = ["compress", str(trio["v1"]), "--method", method, "--density", "0.2", *extra, "-o", str(out)]
        result = runner.invoke(app, [*cmd, "--json", "--no-progress"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        c = read_vector(out)
        drop_sq = total_sq = 0.0
        for name, shape in v.shapes.items():
            n = math.prod(shape)
            assert c.manifest["tensors"][name]["kept"] == (
                math.floor(0.2 * n) if method != "magnitude" else max(1, int(0.2 * n))
            )
            flat = v.read(name).reshape(-1)
            got = c.read(name).reshape(-1)
            if method == "magnitude":
                np.testing.assert_array_equal(got, ref.magnitude(flat, 0.2))
            elif method == "breadcrumbs":
                np.testing.assert_array_equal(got, ref.magnitude_outliers(flat, 0.2, 0.02))
            diff = flat.astype(np.float64) - got
            drop_sq += float(diff @ diff)
            total_sq += float(flat.astype(np.float64) @ flat)
        assert summary["relative_error"] == pytest.approx(math.sqrt(drop_sq / total_sq), rel=1e-9)
    # compress --method dare is merge --method dare_linear of the vector alone.
    merged = tmp_path / "merged-dare"
    result = runner.invoke(app, ["merge", str(trio["v1"]), "--method", "dare_linear", "--density", "0.2", "--seed", "3", "-o", str(merged), "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in v.shapes:
        np.testing.assert_array_equal(
            read_vector(tmp_path / "dare").read(name), read_vector(merged).read(name)
        )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--method", "della"], "unknown merge method 'della'"),
        (["--method", "ties", "--weights", "1"], "1 weight values for 2 vectors"),
        (["--method", "ties", "--weights", "1,x"], "--weights '1,x': expected comma-separated numbers"),
        (["--method", "ties", "--density", "0.5", "--densities", "0.5,0.5"], "not both"),
        (["--method", "ram", "--gamma", "0.1"], "ram has no parameter 'gamma'"),
    ],
)
def test_merge_errors_are_one_line(trio, tmp_path, args, fragment) -> None:
    out = tmp_path / "m"
    result = runner.invoke(
        app, ["merge", str(trio["v1"]), str(trio["v2"]), *args, "-o", str(out), "--no-progress"]
    )
    assert_user_error(result, fragment)
    assert not out.exists()


def test_compress_method_errors(trio, tmp_path) -> None:
    base = ["compress", str(trio["v1"]), "-o", str(tmp_path / "c"), "--no-progress"]
    assert_user_error(
        runner.invoke(app, [*base, "--method", "dare", "--rank", "2"]), "--method takes --density D"
    )
    assert_user_error(runner.invoke(app, [*base, "--method", "magnitude", "--density", "0.1", "--gamma", "0.1"]), "--gamma applies to --method breadcrumbs only")  # fmt: skip
    assert_user_error(
        runner.invoke(app, [*base, "--method", "random", "--density", "0.1"]), "--method 'random'"
    )


def test_a_merge_applies_in_memory_as_the_written_model(trio, tmp_path) -> None:
    spec = merge_spec("ties", 2, weights=[1.0, 0.7], densities=[0.5, 0.3])
    merged = MergedDelta([read_vector(trio["v1"]), read_vector(trio["v2"])], spec)
    apply([merged], trio["sft"], tmp_path / "fused", alphas=[1.0])
    expected = load_folder(tmp_path / "fused")
    from transformers import AutoModelForCausalLM  # slow to import: only this test needs it

    model = AutoModelForCausalLM.from_pretrained(trio["sft"], dtype=torch.float32)
    vectors = InMemoryVectors(model, [merged])
    vectors.set_alphas([1.0])
    for name, param in model.named_parameters():
        assert torch.equal(param.data, expected[name]), name
    vectors.restore()
