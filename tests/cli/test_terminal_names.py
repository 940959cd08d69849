"""Names from files and arguments reach the terminal as text: a tensor name or an ``-o`` path
holding control sequences is printed escaped.

Before issue 19: ``inspect`` printed a tensor name's escape sequences raw (a fake red
"rvec: error" line, a cleared screen, a new window title), and ``apply`` printed ``-o`` raw.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

import hostile
from fixtures import Family
from rvec.cli import app

runner = CliRunner()


def assert_escaped(text: str) -> None:
    assert hostile.ESC not in text and "\x07" not in text, repr(text)
    assert "\\x1b" in text, text  # shown, as text


def test_inspect_prints_a_hostile_tensor_name_escaped(qwen_untied: Family, tmp_path: Path) -> None:
    target = Path(shutil.copytree(qwen_untied.target, tmp_path / "t"))
    shard = hostile.largest_tensor_file(target)
    victim = next(k for k in hostile.read_raw(shard)[0] if k != "__metadata__")
    hostile.edit_header(
        shard, lambda h: {(victim + hostile.TERMINAL_ATTACK if k == victim else k): v for k, v in h.items()}
    )
    result = runner.invoke(app, ["inspect", str(target)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert_escaped(result.output)
    assert "rvec: error: fake" in result.output  # the name is there, only harmless


def test_apply_prints_a_hostile_output_path_escaped(qwen_untied: Family, tmp_path: Path) -> None:
    vec = tmp_path / "vec"
    extracted = runner.invoke(
        app, ["extract", "--sft", str(qwen_untied.sft), "--rl", str(qwen_untied.rl), "-o", str(vec)]
    )
    assert extracted.exit_code == 0, extracted.output
    out = tmp_path / f"out{hostile.TERMINAL_ATTACK.replace('/', '')}"
    args = ["apply", str(vec), "--to", str(qwen_untied.target), "-a", "1", "-o", str(out), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert_escaped(result.stderr)
    again = runner.invoke(app, args)  # refused: the output exists; the error line is escaped too
    assert again.exit_code == 1
    assert_escaped(again.stderr)
