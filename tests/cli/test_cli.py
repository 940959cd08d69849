"""CLI surface: help, JSON output of inspect/check/anatomy, the plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fixtures import Family
from rvec.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    ["inspect", "check", "extract", "apply", "anatomy", "compress", "export-lora", "control", "convert"],
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = runner.invoke(app, [command, "-h"])
    assert result.exit_code == 0
    assert "Example" in result.output


def test_check_json_verdict_and_exit_codes(qwen_untied: Family, llama_tied: Family) -> None:
    ok = runner.invoke(
        app,
        [
            "check",
            "--sft",
            str(qwen_untied.sft),
            "--rl",
            str(qwen_untied.rl),
            "--to",
            str(qwen_untied.target),
            "--json",
        ],
    )
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["verdict"] == "compatible"
    assert {p["pair"] for p in report["lineage"]} == {"RL vs SFT", "target vs SFT"}
    assert all(p["cosine"] > 0.95 for p in report["lineage"])
    bad = runner.invoke(
        app,
        [
            "check",
            "--sft",
            str(qwen_untied.sft),
            "--rl",
            str(qwen_untied.rl),
            "--to",
            str(llama_tied.target),
            "--json",
        ],
    )
    assert bad.exit_code == 1
    problems = json.loads(bad.stdout)["problems"]
    assert "architecture: SFT has 'Qwen2ForCausalLM', target has 'LlamaForCausalLM'" in problems


def test_extract_apply_anatomy_round_trip(qwen_untied: Family, tmp_path: Path) -> None:
    vec, vec2 = tmp_path / "vec", tmp_path / "vec2"
    assert (
        runner.invoke(
            app,
            [
                "extract",
                "--sft",
                str(qwen_untied.sft),
                "--rl",
                str(qwen_untied.rl),
                "-o",
                str(vec),
                "--no-progress",
            ],
        ).exit_code
        == 0
    )
    assert (
        runner.invoke(
            app,
            [
                "extract",
                "--sft",
                str(qwen_untied.sft),
                "--rl",
                str(qwen_untied.target),
                "-o",
                str(vec2),
                "--no-progress",
            ],
        ).exit_code
        == 0
    )
    check = runner.invoke(app, ["check", "--vector", str(vec), "--to", str(qwen_untied.target), "--json"])
    assert check.exit_code == 0 and json.loads(check.stdout)["verdict"] == "compatible"
    anatomy = runner.invoke(
        app,
        ["anatomy", str(vec), "--compare", str(vec), "-o", str(tmp_path / "a"), "--json", "--no-progress"],
    )
    assert anatomy.exit_code == 0, anatomy.output
    data = json.loads(anatomy.stdout)
    assert data["overall"]["cosine"] == pytest.approx(1.0)
    assert set(data["per_module"]) == {
        "embed", "attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down", "norm", "lm_head"
    }  # fmt: skip
    assert (tmp_path / "a" / "norms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cross = runner.invoke(app, ["anatomy", str(vec), "--compare", str(vec2), "--no-svd", "--json"])
    assert -1.0 <= json.loads(cross.stdout)["overall"]["cosine"] < 0.99
    applied = runner.invoke(
        app,
        [
            "apply",
            str(vec),
            "--to",
            str(qwen_untied.target),
            "-a",
            "1",
            "-o",
            str(tmp_path / "m"),
            "--json",
            "--no-progress",
        ],
    )
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout)["delta_survival"]["erased"] == 0


def test_norm_matched_random_control_has_v_norms_per_tensor(qwen_untied: Family, tmp_path: Path) -> None:
    from helpers import load_folder

    vec, rnd = tmp_path / "vec", tmp_path / "rnd"
    assert (
        runner.invoke(
            app,
            [
                "extract",
                "--sft",
                str(qwen_untied.sft),
                "--rl",
                str(qwen_untied.rl),
                "-o",
                str(vec),
                "--no-progress",
            ],
        ).exit_code
        == 0
    )
    result = runner.invoke(app, ["control", str(vec), "-o", str(rnd), "--seed", "3"])
    assert result.exit_code == 0, result.output
    v, r = load_folder(vec), load_folder(rnd)
    assert set(v) == set(r)
    for name in v:
        assert float(r[name].double().norm()) == pytest.approx(float(v[name].double().norm()), rel=1e-5)
    shown = runner.invoke(app, ["anatomy", str(vec), "--compare", str(rnd), "--no-svd", "--json"])
    cos = json.loads(shown.stdout)["overall"]["cosine"]
    assert abs(cos) < 0.2
    again = tmp_path / "rnd2"
    assert runner.invoke(app, ["control", str(vec), "-o", str(again), "--seed", "3"]).exit_code == 0
    assert all(torch.equal(r[k], load_folder(again)[k]) for k in r)
    applied = runner.invoke(
        app,
        [
            "apply",
            str(rnd),
            "--to",
            str(qwen_untied.target),
            "-a",
            "1",
            "-o",
            str(tmp_path / "m"),
            "--no-progress",
        ],
    )
    assert applied.exit_code == 0, applied.output
