"""Hub sources against a local folder laid out exactly like the Hugging Face cache (offline)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from typer.testing import CliRunner

from fixtures import Family
from rvec.checkpoint.source import resolve
from rvec.cli import app
from rvec.vector.extract import extract

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put_in_hub_cache(model: Path, repo_id: str, *, commit: str = COMMIT, branch: str = "main") -> Path:
    """models--org--name/{blobs,refs,snapshots}: weights as sha256-named blobs, snapshot links to them."""
    repo = Path(os.environ["HF_HUB_CACHE"]) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / branch).write_text(commit)
    for file in model.iterdir():
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def test_hub_id_resolves_from_cache_with_commit(qwen_untied: Family) -> None:
    put_in_hub_cache(qwen_untied.sft, "acme/tiny-sft")
    ckpt = resolve("acme/tiny-sft")
    assert ckpt.kind == "hub" and ckpt.revision == COMMIT and ckpt.repo_id == "acme/tiny-sft"
    assert len(ckpt.index) == len(resolve(qwen_untied.sft).index)
    by_commit = resolve(f"acme/tiny-sft@{COMMIT}")
    assert by_commit.path == ckpt.path


def test_extract_from_hub_ids_records_revisions_and_blob_hashes(qwen_untied: Family, tmp_path: Path) -> None:
    put_in_hub_cache(qwen_untied.sft, "acme/m-sft")
    put_in_hub_cache(qwen_untied.rl, "acme/m-grpo", commit="f" * 40)
    vec = extract("acme/m-sft", "acme/m-grpo@main", tmp_path / "vec")
    sources = vec.manifest["sources"]
    assert sources["sft"]["repo_id"] == "acme/m-sft" and sources["sft"]["revision"] == COMMIT
    assert sources["rl"]["revision"] == "f" * 40
    for name, digest in sources["rl"]["sha256"].items():
        assert digest == hashlib.sha256((qwen_untied.rl / name).read_bytes()).hexdigest()


def test_unknown_revision_offline_is_a_clear_error(qwen_untied: Family) -> None:
    put_in_hub_cache(qwen_untied.sft, "acme/r-sft")
    result = CliRunner().invoke(app, ["inspect", "acme/r-sft@v9.9", "--json"])
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "rvec: error: acme/r-sft@v9.9: not a local path, the Hugging Face Hub is unreachable"
    )


def test_inspect_hub_id_json_from_headers(qwen_untied: Family) -> None:
    put_in_hub_cache(qwen_untied.target, "acme/t")
    result = CliRunner().invoke(app, ["inspect", "acme/t", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["family"]["architecture"] == "Qwen2ForCausalLM" and data["source"]["revision"] == COMMIT
    assert {t["name"] for t in data["tensors"]} == set(resolve(qwen_untied.target).index.names)
