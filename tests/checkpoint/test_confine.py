"""Files a checkpoint's own metadata names stay inside its folder: shard names in
``*.safetensors.index.json`` (``..``, absolute, a link out), weight files and tokenizer files that
are links out. Before issue 19, an index mapping tensors to ``../../../../etc/passwd`` or
``/etc/shadow`` was accepted (the files were stat'ed) and a vector was written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hostile
from fixtures import Family
from helpers import assert_user_error
from rvec.checkpoint.source import resolve
from rvec.cli import app
from rvec.errors import CorruptCheckpointError

runner = CliRunner()


def extract(family: Family, rl: Path, out: Path):
    return runner.invoke(
        app, ["extract", "--sft", str(family.sft), "--rl", str(rl), "-o", str(out), "--no-progress"]
    )


@pytest.fixture
def rl(qwen_untied: Family, tmp_path: Path) -> Path:
    return Path(shutil.copytree(qwen_untied.rl, tmp_path / "rl"))


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/shadow", "..", "sub/model.safetensors", ""])
def test_index_naming_a_file_outside_the_folder_is_refused(
    name: str, rl: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    hostile.index_names(rl, name)
    result = extract(qwen_untied, rl, tmp_path / "vec")
    assert_user_error(result, "only plain file names inside the folder are allowed")
    assert not (tmp_path / "vec").exists()
    assert_user_error(runner.invoke(app, ["inspect", str(rl)]), "only plain file names")


def test_index_naming_a_link_out_of_the_folder_is_refused(
    rl: Path, qwen_untied: Family, tmp_path: Path
) -> None:
    """A shard that is a link to a real, valid shard outside the folder: read before, refused now."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shard = sorted(rl.glob("*.safetensors"))[0]
    shutil.move(shard, outside / shard.name)
    (rl / shard.name).symlink_to(outside / shard.name)
    result = extract(qwen_untied, rl, tmp_path / "vec")
    assert_user_error(result, "is a link to a file outside")
    assert not (tmp_path / "vec").exists()


def test_tokenizer_file_linking_out_is_not_copied_into_an_output(qwen_untied: Family, tmp_path: Path) -> None:
    target = Path(shutil.copytree(qwen_untied.target, tmp_path / "t"))
    secret = tmp_path / "secret.txt"
    secret.write_text("key=hunter2")
    (target / "merges.txt").symlink_to(secret)
    result = runner.invoke(
        app,
        [
            "apply",
            "--sft",
            str(qwen_untied.sft),
            "--rl",
            str(qwen_untied.rl),
            "--to",
            str(target),
            "-a",
            "1",
            "-o",
            str(tmp_path / "out"),
            "--no-progress",
        ],
    )
    assert_user_error(result, "'merges.txt' is a link to a file outside")
    assert not (tmp_path / "out").exists()


def test_links_inside_the_folder_and_hub_snapshot_links_to_blobs_are_allowed(tmp_path: Path) -> None:
    from rvec.checkpoint.confine import member
    from rvec.errors import UnsafeNameError

    repo = tmp_path / "models--org--m"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "blobs" / "0123").write_text("{}")
    (snapshot / "config.json").symlink_to(os.path.relpath(repo / "blobs" / "0123", snapshot))
    assert member(snapshot, "config.json", listed_in="test").read_text() == "{}"
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "real.json").write_text("{}")
    (folder / "alias.json").symlink_to("real.json")
    assert member(folder, "alias.json", listed_in="test").is_file()
    (folder / "loop.json").symlink_to("loop.json")
    with pytest.raises(UnsafeNameError):
        member(folder, "loop.json", listed_in="test")


@pytest.mark.parametrize("name", [None, 3, ["a"], "a\0b", "x" * 256, "a/b", ".", ".."])
def test_only_plain_names_are_members(name: object, tmp_path: Path) -> None:
    from rvec.checkpoint.confine import member
    from rvec.errors import UnsafeNameError

    with pytest.raises(UnsafeNameError, match="only plain file names"):
        member(tmp_path, name, listed_in="index.json")


def test_index_that_is_not_a_map_of_names_is_one_line(rl: Path, qwen_untied: Family) -> None:
    index = next(rl.glob("*.index.json"))
    for text in ('{"weight_map": ["a"]}', '{"weight_map": {"a": 3}}', "[1]", "\xff"):
        index.write_bytes(text.encode("latin-1"))
        with pytest.raises(CorruptCheckpointError, match=r"weight_map|invalid JSON"):
            _ = resolve(str(rl)).index
