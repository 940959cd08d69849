"""Vectors from strangers: an ``rvec.json`` naming files outside its folder, a malformed manifest,
and NaN or Inf in the values with every hash recomputed to match (so verification passes).

Before issue 19: ``aux_files: {"/etc/shadow": …}`` made ``apply`` and ``stats`` hash the file and
print 12 hex digits of its sha256 (and remember the hash); a NaN went through ``compress --rank``
and ``export-lora`` as a ``LinAlgError`` traceback, and into ``eval --vector``'s model silently.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hostile
from fixtures import Family
from helpers import assert_user_error
from rvec.checkpoint import hashing
from rvec.cli import app

runner = CliRunner()


def run(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def clean(qwen_untied: Family, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile-vec") / "vec"
    result = run("extract", "--sft", qwen_untied.sft, "--rl", qwen_untied.rl, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def vec(clean: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(clean, tmp_path / "vec"))


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the vector that must never be opened, hashed or quoted."""
    file = tmp_path / "secret"
    file.write_text("root:$6$hash:19000:0:99999:7:::\n")
    return file


def apply_to(family: Family, vec: Path, out: Path, *extra: str | Path):
    return run("apply", vec, "--to", family.target, "-a", "1", "-o", out, "--no-progress", *extra)


def assert_not_leaked(result, secret: Path) -> None:
    digest = hostile.sha256(secret)
    assert digest[:12] not in result.output, result.output
    assert hashing.known_sha256(secret) is None  # not hashed, so not remembered either


@pytest.mark.parametrize("key", ["aux_files", "files"])
@pytest.mark.parametrize("how", ["absolute", "dotdot"])
def test_manifest_naming_a_file_outside_the_vector_is_refused_unopened(
    key: str, how: str, vec: Path, secret: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    name = str(secret) if how == "absolute" else f"../{secret.name}"
    hostile.manifest_edit(vec, lambda m: m[key].update({name: "0" * 64}))
    for result in (apply_to(qwen_untied, vec, tmp_path / "out"), run("anatomy", vec, "--no-progress")):
        assert_user_error(result, "which is not a file inside")
        assert_not_leaked(result, secret)
    assert not (tmp_path / "out").exists()


def test_a_file_of_the_vector_that_links_out_is_refused_unopened(
    vec: Path, secret: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    (vec / "lineage.safetensors").unlink()
    (vec / "lineage.safetensors").symlink_to(secret)
    for result in (apply_to(qwen_untied, vec, tmp_path / "out"), run("anatomy", vec, "--no-progress")):
        assert_user_error(result, "'lineage.safetensors' is a link to a file outside")
        assert_not_leaked(result, secret)


def test_an_index_in_the_vector_naming_a_file_outside_is_refused(vec: Path, secret: Path) -> None:
    shard = sorted(vec.glob("vector*.safetensors"))[0]
    names = hostile.read_raw(shard)[0]
    weight_map = {n: f"../{secret.name}" for n in names if n != "__metadata__"}
    (vec / "vector.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert_user_error(run("anatomy", vec, "--no-verify", "--no-progress"), "only plain file names")


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda m: m.update(format_version="2"), "format_version '2' is not a version number"),
        (lambda m: m.update(files=["vector.safetensors"]), "'files' is not an object"),
        (lambda m: m.update(tensors=[]), "'tensors' is not an object"),
        (
            lambda m: next(iter(m["tensors"].values())).update(shape=[-160, -32]),
            "is not a list of integers ≥ 0",
        ),
        (lambda m: next(iter(m["tensors"].values())).update(encoding=3), "encoding 3 is not one of"),
        (
            lambda m: next(iter(m["tensors"].values())).update(norm=float("nan")),
            "norm nan is not a finite number",
        ),
        (lambda m: m.update(family=[]), "'family' is not an object"),
        (lambda m: m["files"].update({"vector.safetensors": "abc"}), "is not a sha256"),
    ],
)
def test_malformed_manifest_is_one_line_even_without_verification(vec: Path, edit, fragment: str) -> None:
    hostile.manifest_edit(vec, edit)
    for extra in ([], ["--no-verify"]):
        assert_user_error(run("anatomy", vec, "--no-svd", "--no-progress", *extra), fragment)


# ---- NaN and Inf in the values, hashes recomputed: refused by every verb that reads them ------


@pytest.fixture
def poisoned(vec: Path) -> tuple[Path, str]:
    return vec, hostile.poison_vector(vec, float("nan"))


def test_apply_names_the_vector_and_tensor_holding_nan(
    poisoned: tuple[Path, str], qwen_untied: Family, tmp_path: Path
) -> None:
    vec, name = poisoned
    result = apply_to(qwen_untied, vec, tmp_path / "out")
    assert_user_error(result, f"{vec}: tensor '{name}' holds NaN or Inf")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["anatomy", "VEC", "--no-progress"],
        ["compress", "VEC", "--rank", "2", "-o", "OUT", "--no-progress"],
        ["compress", "VEC", "--density", "0.5", "-o", "OUT", "--no-progress"],
        ["compress", "VEC", "--method", "dare", "--density", "0.5", "-o", "OUT", "--no-progress"],
        ["export-lora", "VEC", "--rank", "2", "-o", "OUT", "--no-progress"],
        ["merge", "VEC", "CLEAN", "--method", "ties", "-o", "OUT", "--no-progress"],
    ],
    ids=["anatomy", "compress-rank", "compress-density", "compress-method", "export-lora", "merge"],
)
def test_every_vector_verb_refuses_nan(
    args: list[str], poisoned: tuple[Path, str], clean: Path, tmp_path: Path
) -> None:
    vec, name = poisoned
    out = tmp_path / "out"
    swap = {"VEC": str(vec), "OUT": str(out), "CLEAN": str(clean)}
    result = run(*(swap.get(a, a) for a in args))
    assert_user_error(result, f"tensor '{name}' holds NaN or Inf")
    assert not out.exists()


def test_inf_in_factors_is_refused_by_apply_and_in_memory(
    clean: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    from rvec.errors import NonFiniteError
    from rvec.vector.artifact import read_vector

    factored = tmp_path / "f"
    assert run("compress", clean, "--rank", "2", "-o", factored, "--no-progress").exit_code == 0
    name = next(
        n
        for n, r in json.loads((factored / "rvec.json").read_text())["tensors"].items()
        if r.get("encoding") == "factored"
    )
    hostile.poison_factors(factored, name, float("inf"))
    assert_user_error(apply_to(qwen_untied, factored, tmp_path / "out"), f"tensor '{name}' holds NaN or Inf")
    v = read_vector(factored)
    try:
        with pytest.raises(NonFiniteError, match=name):
            v.ensure_finite(name)  # what in-memory application checks when it attaches the vector
    finally:
        v.close()


def test_check_refuses_a_lineage_probe_holding_nan(vec: Path, qwen_untied: Family) -> None:
    probe = vec / "lineage.safetensors"
    header, data = hostile.read_raw(probe)
    name = next(k for k in header if k != "__metadata__")
    begin = header[name]["data_offsets"][0]
    blob = bytearray(probe.read_bytes())
    at = len(blob) - len(data) + begin
    blob[at : at + 4] = b"\x00\x00\xc0\x7f"  # float32 NaN
    probe.write_bytes(bytes(blob))
    hostile.manifest_edit(vec, lambda m: m["aux_files"].update({probe.name: hostile.sha256(probe)}))
    result = run("check", "--vector", vec, "--to", qwen_untied.target)
    assert_user_error(result, f"the lineage probe of '{name}' holds NaN or Inf")


def test_eval_with_a_nan_vector_is_refused_before_any_item(
    poisoned: tuple[Path, str], qwen_untied: Family, data_dir: Path, tmp_path: Path
) -> None:
    vec, name = poisoned
    result = run(
        "eval", qwen_untied.target, "--vector", vec, "--alpha", "1", "--tasks", "gsm8k", "--limit", "1",
        "--data-dir", data_dir, "--no-progress", "-o", tmp_path / "e",
    )  # fmt: skip
    assert_user_error(result, f"tensor '{name}' holds NaN or Inf")
    assert not (tmp_path / "e" / "results.json").exists()


def test_a_study_with_a_nan_vector_is_refused(
    poisoned: tuple[Path, str],
    qwen_untied: Family,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vec, name = poisoned
    monkeypatch.chdir(tmp_path)
    study = {
        "name": "nan",
        "vector": str(vec),
        "targets": [str(qwen_untied.target)],
        "controls": {"subtraction": False, "random_seeds": []},
        "conditions": ["plain"],
        "tasks": ["gsm8k"],
        "limit": 1,
        "max_new_tokens": 2,
        "data_dir": str(data_dir),
        "backend": {"name": "hf", "device": "cpu"},
    }
    Path("study.yaml").write_text(json.dumps(study))
    result = run("run", "study.yaml", "--no-progress")
    assert_user_error(result, f"tensor '{name}' holds NaN or Inf")
    assert not list(Path("runs/nan/cells").glob("*.json"))  # no cell was evaluated with it
    assert os.path.isdir(vec)
