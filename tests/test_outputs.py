"""Hostile output paths and failing filesystems through the CLI: one ``rvec: error:`` line, exit 1,
inputs intact, no partial and no half output left (docs/safe-outputs.md lists every case)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures import Family
from helpers import assert_user_error
from mounts import not_writable, read_only, tmpfs
from rvec.cli import app

runner = CliRunner()


def run(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` (hidden ones too) with its size: what must survive a refused command."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def workspace(qwen_untied: Family, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``D/`` holding a vector ``vec`` and a target ``T``, as the working folder."""
    work = tmp_path / "D"
    work.mkdir()
    shutil.copytree(qwen_untied.target, work / "T")
    extracted = run(
        "extract", "--sft", qwen_untied.sft, "--rl", qwen_untied.rl, "-o", work / "vec", "--no-progress"
    )
    assert extracted.exit_code == 0, extracted.output
    monkeypatch.chdir(work)
    return work


def apply_to(out: str | Path, *flags: str):
    return run("apply", "vec", "--to", "T", "-a", "1", "-o", out, "--no-progress", *flags)


@pytest.mark.parametrize(
    ("out", "fragment"),
    [
        (".", "is the working folder; choose another -o"),
        ("..", "is an ancestor of the working folder"),
        ("T", "is an input of this command"),
        ("vec", "is an input of this command"),
        ("here", "is the working folder"),  # a symlink to "."
        ("to-target", "is an input of this command"),  # a symlink to an input
    ],
)
@pytest.mark.parametrize("flags", [("--overwrite",), ("--overwrite", "--overwrite-foreign")])
def test_overwrite_never_takes_the_working_folder_or_an_input(
    workspace: Path, out: str, fragment: str, flags: tuple[str, ...]
) -> None:
    (workspace / "here").symlink_to(".")
    (workspace / "to-target").symlink_to("T")
    before = tree(workspace.parent)
    result = apply_to(out, *flags)
    assert_user_error(result, fragment)
    assert tree(workspace.parent) == before


def test_overwrite_never_takes_home(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = workspace.parent / "home"
    home.mkdir()
    (home / ".bashrc").write_text("mine")
    monkeypatch.setenv("HOME", str(home))
    assert_user_error(apply_to(home, "--overwrite", "--overwrite-foreign"), "is the home folder")
    assert (home / ".bashrc").read_text() == "mine"


def test_overwrite_never_takes_a_folder_holding_an_input(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.chdir(outside)
    before = tree(workspace)
    result = run(
        "apply", workspace / "vec", "--to", workspace / "T", "-a", "1", "-o", workspace, "--overwrite"
    )
    assert_user_error(result, "holds an input of this command")
    assert tree(workspace) == before


def test_overwrite_never_takes_a_mount_point(workspace: Path) -> None:
    with tmpfs(workspace / "mnt", size="4m") as mount:
        (mount / "rvec.json").write_text('{"kind": "rvec-model", "rvec_version": "0"}')
        assert_user_error(apply_to(mount, "--overwrite"), "is a filesystem root")
        assert os.listdir(mount) == ["rvec.json"]


def test_overwrite_replaces_only_what_rvec_wrote(workspace: Path) -> None:
    foreign = workspace / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    assert_user_error(
        apply_to("notes", "--overwrite"), "was not written by rvec (no rvec.json); pass --overwrite-foreign"
    )
    assert (foreign / "thesis.tex").read_text() == "years of work"
    assert apply_to("out").exit_code == 0
    stamp = (workspace / "out" / "rvec.json").stat().st_mtime_ns
    assert apply_to("out", "--overwrite").exit_code == 0  # rvec's own output: replaced
    assert (workspace / "out" / "rvec.json").stat().st_mtime_ns != stamp
    forced = apply_to("notes", "--overwrite-foreign")
    assert forced.exit_code == 0, forced.output
    assert (foreign / "rvec.json").is_file() and not (foreign / "thesis.tex").exists()
    assert sorted(os.listdir(workspace)) == ["T", "notes", "out", "vec"]  # nothing beside


def test_overwriting_a_file_leaves_nothing_beside(workspace: Path) -> None:
    (workspace / "out").write_text("a file")
    assert_user_error(apply_to("out", "--overwrite"), "was not written by rvec")
    assert (workspace / "out").read_text() == "a file"
    assert apply_to("out", "--overwrite-foreign").exit_code == 0
    assert (workspace / "out" / "model.safetensors").is_file()
    assert sorted(os.listdir(workspace)) == ["T", "out", "vec"]


@pytest.mark.parametrize("command", ["extract", "control", "convert"])
def test_every_writing_command_guards_its_output(
    command: str, workspace: Path, qwen_untied: Family, smollm2_gguf: Path
) -> None:
    (workspace / "g").mkdir()
    try:
        os.link(smollm2_gguf, workspace / "g" / "m.gguf")  # a second name, not a copy of 80 MB
    except OSError:
        shutil.copy(smollm2_gguf, workspace / "g" / "m.gguf")
    args = {
        "extract": ["extract", "--sft", qwen_untied.sft, "--rl", qwen_untied.rl, "-o", ".", "--overwrite"],
        "control": ["control", "vec", "-o", "vec", "--overwrite"],
        "convert": ["convert", "g/m.gguf", "-o", "g", "--overwrite-foreign", "--no-progress"],
    }[command]
    fragment = {"extract": "is the working folder", "control": "is an input", "convert": "holds an input"}[
        command
    ]
    before = tree(workspace)
    assert_user_error(run(*args), fragment)
    assert tree(workspace) == before


def test_output_whose_parent_is_a_file(workspace: Path) -> None:
    (workspace / "file").write_text("x")
    assert_user_error(apply_to("file/out"), "a part of the path is a file, not a folder; choose another -o")
    assert (workspace / "file").read_text() == "x"


def test_read_only_filesystem(workspace: Path) -> None:
    ro = workspace / "ro"
    ro.mkdir()
    with read_only(ro):
        assert_user_error(apply_to(ro / "out"), "read-only filesystem; choose an -o on a writable filesystem")
        assert os.listdir(ro) == []


def test_permission_denied(workspace: Path) -> None:
    locked = workspace / "locked"
    locked.mkdir()
    with not_writable(locked):
        result = apply_to(locked / "out")
        assert_user_error(result, "choose an -o you may write to")
        assert os.listdir(locked) == []


def test_the_free_space_check_counts_the_copied_tokenizer(workspace: Path) -> None:
    """Shards (~200 kB) and metadata fit the 3 MB disk; with the target's 2.9 MB merges.txt they do not."""
    (workspace / "T" / "merges.txt").write_bytes(b"m" * 2_900_000)
    with tmpfs(workspace / "disk", size="3m") as disk:
        assert_user_error(apply_to(disk / "out"), "free space or choose another -o")
        assert os.listdir(disk) == []


@pytest.mark.parametrize(
    ("files", "stage"),
    [(4, "while writing shards"), (5, "while copying the tokenizer")],
)
def test_disk_full_in_the_middle_of_writing(workspace: Path, files: int, stage: str) -> None:
    """A tmpfs that runs out of inodes: ENOSPC after the free-space check passed, mid-write."""
    extra = ["--max-shard-size", "40KB"] if files == 4 else []
    with tmpfs(workspace / "disk", size="8m", nr_inodes=files) as disk:
        result = apply_to(disk / "out", *extra)
        assert_user_error(result, "out: no space left on the device")
        assert os.listdir(disk) == [], stage
    assert sorted(os.listdir(workspace)) == ["T", "disk", "vec"]


def eval_tiny(model: str | Path, *extra: str | Path):
    return run("eval", model, "--tasks", "gsm8k", "--limit", "1", "--no-progress", *extra)


def test_eval_on_a_folder_without_tokenizer(workspace: Path) -> None:
    bare = workspace / "bare"
    bare.mkdir()
    for file in (workspace / "T").iterdir():
        if not file.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(file, bare / file.name)
    assert_user_error(eval_tiny(bare), "bare: no tokenizer files (none of tokenizer.json, ")


def test_eval_output_that_is_not_an_eval_folder(workspace: Path) -> None:
    (workspace / "results").mkdir()
    (workspace / "results" / "results.json").write_text("someone else's")
    assert_user_error(eval_tiny("T", "-o", "results"), "holds files rvec did not write")
    assert_user_error(eval_tiny("T", "-o", "."), "holds files rvec did not write")
    (workspace / "file").write_text("x")
    assert_user_error(eval_tiny("T", "-o", "file/e"), "a part of the path is a file, not a folder")
    assert (workspace / "results" / "results.json").read_text() == "someone else's"


def test_eval_output_on_a_read_only_filesystem_fails_before_the_model_loads(workspace: Path) -> None:
    ro = workspace / "ro"
    ro.mkdir()
    with read_only(ro):
        assert_user_error(eval_tiny("T", "-o", ro), "read-only filesystem")
        assert_user_error(eval_tiny("T", "-o", ro / "e"), "read-only filesystem")


def test_run_resume_into_a_folder_that_is_not_a_run(workspace: Path) -> None:
    study = workspace / "study.yaml"
    study.write_text(f"name: s\nvector: vec\ntargets: [{workspace / 'T'}]\ntasks: [gsm8k]\n")
    (workspace / "mine").mkdir()
    (workspace / "mine" / "report.md").write_text("my report")
    assert_user_error(run("run", study, "-o", "mine", "--resume"), "holds files rvec did not write")
    assert_user_error(run("run", study, "-o", "mine"), "pass --resume to continue it")
    assert os.listdir(workspace / "mine") == ["report.md"]


def test_anatomy_output_never_takes_an_input_or_a_foreign_folder(workspace: Path) -> None:
    before = tree(workspace / "vec")
    for flags in ((), ("--overwrite",), ("--overwrite", "--overwrite-foreign")):
        result = run("anatomy", "vec", "--like", "T", "-o", "vec", "--no-progress", *flags)
        assert_user_error(result, "is an input of this command (vec)")
        assert_user_error(run("anatomy", "vec", "-o", ".", "--no-progress", *flags), "is the working folder")
    assert tree(workspace / "vec") == before
    (workspace / "plots").mkdir()
    (workspace / "plots" / "mine.png").write_text("mine")
    result = run("anatomy", "vec", "-o", "plots", "--overwrite", "--no-progress")
    assert_user_error(result, "plots: exists but was not written by rvec")
    assert os.listdir(workspace / "plots") == ["mine.png"]
