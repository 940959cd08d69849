"""Where a study may write: its ``name`` and ``output:`` come from a file anyone may have written, so
they keep the run folder inside the working folder; only ``-o``, typed by the user, places it
elsewhere. Nothing is created until the config is valid and every source resolves.

Before issue 19: ``name: ../../outside/x`` or an absolute ``output:`` created the run folder
(cells/, study.yaml, a random control) outside the working folder before the run failed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures import Family
from helpers import assert_user_error
from rvec.cli import app
from rvec.study.validation import inside_working_folder, plain_folder_name

runner = CliRunner()


def study(family: Family, data_dir: Path, **overrides: object) -> dict:
    raw = {
        "name": "placed",
        "donors": {"sft": str(family.sft), "rl": str(family.rl)},
        "targets": [str(family.target)],
        "controls": {"subtraction": False, "random_seeds": [0]},
        "conditions": ["plain"],
        "tasks": ["gsm8k"],
        "limit": 1,
        "max_new_tokens": 2,
        "data_dir": str(data_dir),
        "backend": {"name": "hf", "device": "cpu"},
    }
    raw.update(overrides)
    return raw


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder ``tmp/work`` (the current one), with ``tmp/`` around it to escape to."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def run_file(raw: dict, *extra: str):
    Path("study.yaml").write_text(json.dumps(raw))
    return runner.invoke(app, ["run", "study.yaml", "--no-progress", *extra])


def everything_under(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"name": "../../outside/x"}, "name: '../../outside/x' is not a plain folder name"),
        ({"name": ".."}, "name: '..' is not a plain folder name"),
        ({"output": "OUTSIDE"}, "leaves the working folder"),
        ({"output": "../outside"}, "leaves the working folder"),
        ({"output": "~/outside"}, "leaves the working folder"),
    ],
    ids=["name-dotdot", "name-parent", "output-absolute", "output-dotdot", "output-home"],
)
def test_study_file_cannot_place_its_run_outside_the_working_folder(
    override: dict, fragment: str, work: Path, qwen_untied: Family, data_dir: Path
) -> None:
    outside = work.parent / "outside"
    raw = study(
        qwen_untied, data_dir, **{k: str(outside) if v == "OUTSIDE" else v for k, v in override.items()}
    )
    before = everything_under(work.parent)
    assert_user_error(run_file(raw), fragment)
    assert everything_under(work.parent) == before | {Path("work/study.yaml")}  # nothing created


def test_minus_o_may_place_the_run_anywhere(work: Path, qwen_untied: Family, data_dir: Path) -> None:
    out = work.parent / "elsewhere" / "run"
    result = run_file(study(qwen_untied, data_dir), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "report.md").is_file()
    assert not (work / "runs").exists()


def test_a_source_that_does_not_resolve_creates_nothing(
    work: Path, qwen_untied: Family, data_dir: Path, tmp_path: Path
) -> None:
    """The target's shard index names a file outside its folder: refused before runs/ exists."""
    target = Path(shutil.copytree(qwen_untied.target, tmp_path / "target"))
    shard = sorted(target.glob("*.safetensors"))[0]
    (target / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"model.norm.weight": "../../../../etc/passwd", "x": shard.name}})
    )
    raw = study(qwen_untied, data_dir, targets=[str(target)])
    assert_user_error(run_file(raw), "only plain file names inside the folder")
    assert not (work / "runs").exists()


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("runs/a", True),
        ("a", True),
        ("./a/b", True),
        ("/tmp/a", False),
        ("../a", False),
        ("a/../../b", False),
        ("~/a", False),
        (".", False),
        ("", False),
        ("a\x1b[2J", False),
    ],
)
def test_inside_working_folder(text: str, ok: bool) -> None:
    assert inside_working_folder(text) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("demo", True),
        ("paper-qwen2.5-7b", True),
        ("a/b", False),
        ("..", False),
        (".hidden", False),
        ("x\n", False),
    ],
)
def test_plain_folder_name(name: str, ok: bool) -> None:
    assert plain_folder_name(name) is ok
