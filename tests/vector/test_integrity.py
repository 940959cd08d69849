"""Vectors prove their bytes: an edited, missing or unrecorded shard, an edited family and an index
naming what is not there are one-line errors before anything is used; --no-verify is the escape hatch."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures import Family
from helpers import assert_user_error
from rvec.checkpoint import hashing
from rvec.cli import app
from rvec.errors import VectorFormatError, VectorIntegrityError
from rvec.vector.artifact import read_vector
from rvec.vector.compress import compress
from rvec.vector.extract import extract

runner = CliRunner()


def run(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sharded(qwen_untied: Family, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("integrity") / "vec"
    extract(qwen_untied.sft, qwen_untied.rl, out, max_shard_bytes=60_000)
    assert len(list(out.glob("vector-*.safetensors"))) >= 3
    return out


@pytest.fixture
def vec(sharded: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "vec"
    shutil.copytree(sharded, copy)
    return copy


def flip_last_byte(file: Path, *, keep_mtime: bool = True) -> None:
    """Change one data byte in place, same size; put the mtime back as a careless copy tool would."""
    st = file.stat()
    data = bytearray(file.read_bytes())
    data[-1] ^= 0x01
    file.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_extract_records_and_remembers_every_hash(sharded: Path) -> None:
    manifest = json.loads((sharded / "rvec.json").read_text())
    shards = sorted(p.name for p in sharded.glob("vector-*.safetensors"))
    assert sorted(manifest["files"]) == shards
    assert list(manifest["aux_files"]) == ["lineage.safetensors"]
    # The writer hashed these bytes as it wrote them: verification needs no second read.
    assert all(hashing.known_sha256(sharded / s) == manifest["files"][s] for s in shards)
    assert read_vector(sharded).verified


def test_edited_shard_is_refused_by_apply_anatomy_and_eval(
    vec: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    read_vector(vec)  # verified once: its hashes are remembered
    shard = sorted(vec.glob("vector-*.safetensors"))[1]
    flip_last_byte(shard)
    fragment = f"{shard}: sha256 "
    assert_user_error(
        run("apply", vec, "--to", qwen_untied.target, "-a", "1", "-o", tmp_path / "o", "--no-progress"),
        fragment,
    )
    assert not (tmp_path / "o").exists()
    result = run("anatomy", vec)
    assert_user_error(result, fragment)
    assert "the vector was modified after it was written" in result.stderr and "--no-verify" in result.stderr
    assert_user_error(
        run("eval", qwen_untied.target, "--vector", vec, "--alpha", "1", "--tasks", "gsm8k"), fragment
    )
    assert_user_error(run("compress", vec, "--rank", "2", "-o", tmp_path / "c", "--no-progress"), fragment)
    assert_user_error(run("export-lora", vec, "--rank", "2", "-o", tmp_path / "l", "--no-progress"), fragment)


def test_no_verify_uses_an_edited_vector_and_says_so(vec: Path, qwen_untied: Family, tmp_path: Path) -> None:
    before = read_vector(vec, verify=False).content_hash
    flip_last_byte(sorted(vec.glob("vector-*.safetensors"))[0])
    after = read_vector(vec, verify=False)
    # Unverified, the identity includes the shards' file versions: the eval cache key changes too.
    assert after.content_hash != before
    result = run(
        "apply",
        vec,
        "--to",
        qwen_untied.target,
        "-a",
        "1",
        "-o",
        tmp_path / "o",
        "--no-progress",
        "--no-verify",
    )
    assert result.exit_code == 0, result.output
    provenance = json.loads((tmp_path / "o" / "rvec.json").read_text())
    assert provenance["vectors"][0]["verified"] is False
    assert run("anatomy", vec, "--no-verify").exit_code == 0


def test_missing_and_unrecorded_shards(vec: Path, tmp_path: Path) -> None:
    shards = sorted(vec.glob("vector-*.safetensors"))
    extra = vec / "vector-extra.safetensors"
    shutil.copyfile(shards[0], extra)
    assert_user_error(run("anatomy", vec), f"{extra}: a shard rvec.json does not record")
    extra.unlink()
    shards[-1].unlink()
    assert_user_error(run("anatomy", vec), f"{shards[-1]}: missing, but rvec.json records it")


def test_index_naming_a_missing_shard_or_tensor_is_refused_even_without_verification(vec: Path) -> None:
    index_file = vec / "vector.safetensors.index.json"
    index = json.loads(index_file.read_text())
    name = next(iter(index["weight_map"]))
    index["weight_map"][name] = "vector-00009-of-00009.safetensors"
    index_file.write_text(json.dumps(index))
    for extra in ([], ["--no-verify"]):
        assert_user_error(
            run("anatomy", vec, *extra), "names shard vector-00009-of-00009.safetensors, which is missing"
        )
    index = json.loads(index_file.read_text())
    index["weight_map"].pop(name)
    index["weight_map"]["model.not.there"] = next(iter(index["weight_map"].values()))
    index_file.write_text(json.dumps(index))
    with pytest.raises(
        VectorFormatError, match=r"names 1 tensor\(s\) no shard holds \(e.g. 'model.not.there'\)"
    ):
        read_vector(vec, verify=False)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (
            lambda m: m["family"].update(hidden_size=64),
            "family.hidden_size is 64 but the vector's config says 32",
        ),
        (
            lambda m: m["family"].update(architecture="LlamaForCausalLM"),
            "family.architecture is 'LlamaForCausalLM'",
        ),
        (
            lambda m: (m["family"].update(num_hidden_layers=6), m["config"].update(num_hidden_layers=6)),
            "tensors span 4 blocks but family says num_hidden_layers 6",
        ),
        (
            lambda m: (m["family"].update(vocab_size=200), m["config"].update(vocab_size=200)),
            "model.embed_tokens.weight is (160, 32) but family says vocab 200 × hidden 32",
        ),
    ],
)
def test_edited_family_is_refused(vec: Path, edit, fragment: str) -> None:
    manifest = json.loads((vec / "rvec.json").read_text())
    edit(manifest)
    (vec / "rvec.json").write_text(json.dumps(manifest))
    assert_user_error(run("anatomy", vec), fragment)
    with pytest.raises(VectorIntegrityError):
        read_vector(vec)


def test_memo_detects_an_edit_that_keeps_size_and_mtime(tmp_path: Path) -> None:
    file = tmp_path / "blob.bin"
    file.write_bytes(b"\x00" * 4096)
    first = hashing.sha256_file(file)
    flip_last_byte(file)  # same size, same mtime: only the inode's ctime moved
    assert hashing.sha256_file(file) != first


def test_truncated_shard_is_a_one_line_error_with_and_without_verification(
    vec: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    shard = sorted(vec.glob("vector-*.safetensors"))[0]
    with shard.open("r+b") as f:
        f.truncate(shard.stat().st_size - 100)
    verified = run("anatomy", vec)
    assert_user_error(verified, str(shard))
    assert "--no-verify" in verified.stderr
    assert_user_error(run("anatomy", vec, "--no-verify"), f"{shard}: truncated")
    out = tmp_path / "o"
    for extra in ([], ["--no-verify"]):
        result = run("apply", vec, "--to", qwen_untied.target, "-a", "1", "-o", out, "--no-progress", *extra)
        assert_user_error(result, str(shard))
        assert not out.exists()


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda r: r.update(rank=3), ":A' is F32 (2, 64) in its shard but rvec.json implies F32 (3, 64)"),
        (
            lambda r: r.update(shape=[64, 32]),
            ":A' is F32 (2, 64) in its shard but rvec.json implies F32 (2, 32)",
        ),
    ],
)
def test_factored_record_that_disagrees_with_its_shard_is_a_one_line_error(
    vec: Path, qwen_untied: Family, tmp_path: Path, edit, fragment: str
) -> None:
    """rvec.json is not hashed (the shards are): an edited rank or shape of a factored tensor must
    still be caught against the shard headers, verified or not, before anything is written."""
    factored = compress(vec, tmp_path / "r2", rank=2).vector.path
    name = "model.layers.0.mlp.down_proj.weight"  # (32, 64): A (2, 64), B (32, 2)
    manifest = json.loads((factored / "rvec.json").read_text())
    edit(manifest["tensors"][name])
    (factored / "rvec.json").write_text(json.dumps(manifest))
    out = tmp_path / "o"
    for extra in ([], ["--no-verify"]):
        assert_user_error(run("anatomy", factored, *extra), f"'{name}{fragment}")
        result = run(
            "apply", factored, "--to", qwen_untied.target, "-a", "1", "-o", out, "--no-progress", *extra
        )
        assert_user_error(result, f"'{name}{fragment}")
        assert not out.exists()
