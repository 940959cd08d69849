"""``rvec pair`` end to end on a tiny random Llama (real TRL training, real files): the two donors,
their vector, the log, the manifest, and resuming after a real SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from fixtures import random_state, save_model, tiny_config
from rvec.cli import app
from rvec.defaults import DEFAULT_SEED
from rvec.pair.recipe import PairRecipe
from rvec.pair.workflow import make_pair

# A random tiny model never answers correctly, so GRPO would see zero-variance groups and learn
# nothing: full-FT SFT on level 1 teaches it the "Answer: N" shape just well enough that the format
# reward is sometimes 1 and sometimes 0 (measured: 12-25% per step), which is what GRPO needs.
TINY = dict(
    seed=0,  # the runs these tests were tuned on
    levels=(1,),
    sft_steps=80,
    sft_lr=5e-3,
    sft_lora_rank=0,
    sft_batch_size=4,
    grpo_steps=6,
    prompts_per_step=2,
    num_generations=4,
    max_completion_length=32,
    format_reward=1.0,
    calibration_prompts=4,
    save_steps=2,
    eval_items=4,
)


def tiny_init(folder: Path, *, chat_template: bool = True) -> Path:
    config = tiny_config("llama", tied=True)
    config.max_position_embeddings = 512  # character-level prompts of chat turns are ~200 tokens
    save_model(random_state(config, seed=1), config, folder, shards=1)
    if not chat_template:
        (folder / "chat_template.jinja").unlink(missing_ok=True)
        cfg = json.loads((folder / "tokenizer_config.json").read_text())
        cfg.pop("chat_template", None)
        (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture(scope="module")
def init(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_init(tmp_path_factory.mktemp("pair") / "init")


@pytest.fixture(scope="module")
def pair(init: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pair") / "pair"
    make_pair(PairRecipe(init=str(init), **TINY), out)
    return out


def weights(folder: Path) -> dict[str, np.ndarray]:
    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def test_pair_writes_two_ordinary_donors_of_one_initialisation(pair: Path, init: Path) -> None:
    from transformers import AutoModelForCausalLM

    for name in ("sft", "rl"):
        AutoModelForCausalLM.from_pretrained(pair / name)  # loads as an ordinary HF folder
        assert (pair / name / "chat_template.jinja").is_file()
    base, sft, rl = weights(init), weights(pair / "sft"), weights(pair / "rl")
    assert set(sft) == set(rl) == set(base)
    assert all(sft[k].shape == rl[k].shape == base[k].shape for k in base)
    assert any(not np.array_equal(sft[k], base[k]) for k in base)
    assert any(not np.array_equal(rl[k], sft[k]) for k in base)


def test_grpo_started_from_the_sft_weights(pair: Path) -> None:
    # GRPO is rank-8 LoRA on top of θ_SFT: rl − sft is low rank in every matrix, while sft − init
    # (rank-16 SFT) is not within rank 8. Had GRPO started from the init, rl − sft would carry SFT's delta.
    base, sft, rl = (
        weights(pair / ".." / "init") if False else None,
        weights(pair / "sft"),
        weights(pair / "rl"),
    )
    del base
    rank = PairRecipe(init="x").grpo_lora_rank
    changed = [k for k in sft if sft[k].ndim == 2 and not np.array_equal(rl[k], sft[k])]
    assert changed
    for k in changed:
        delta = rl[k].astype(np.float64) - sft[k].astype(np.float64)
        s = np.linalg.svd(delta, compute_uv=False)
        assert s[rank:].max(initial=0.0) <= 1e-5 * s[0], k


def test_vector_is_rl_minus_sft(pair: Path) -> None:
    sft, rl = weights(pair / "sft"), weights(pair / "rl")
    from rvec.vector.artifact import read_vector

    v = read_vector(pair / "vector")
    for name in v.shapes:
        np.testing.assert_allclose(v.read(name), rl[name] - sft[name], rtol=0, atol=1e-6)


def test_log_and_manifest(pair: Path) -> None:
    rows = [json.loads(line) for line in (pair / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["phase"] == "sft"] == list(range(1, 81))
    grpo = [r for r in rows if r["phase"] == "grpo"]
    assert [r["step"] for r in grpo] == list(range(1, 7))
    assert all("accuracy" in r and "loss" in r and r["step_seconds"] > 0 for r in grpo)
    manifest = json.loads((pair / "rvec.json").read_text())
    assert manifest["kind"] == "reasoning-pair"
    assert manifest["recipe"] == json.loads((pair / "recipe.json").read_text())["recipe"]
    from rvec.checkpoint.hashing import sha256_file

    assert manifest["rl"]["sha256"] == {p.name: sha256_file(p) for p in (pair / "rl").glob("*.safetensors")}
    assert set(manifest["held_out"]["models"]) == {"init", "sft", "rl"}
    assert set(manifest["calibration"]["weights"]) == {"1"}
    assert (pair / "curves.png").stat().st_size > 10_000
    assert not (pair / ".work").exists()


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from transformers import TrainerCallback
    from rvec.pair.recipe import PairRecipe
    from rvec.pair.workflow import make_pair

    out = Path(sys.argv[2])

    class KillInGrpo(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if (out / "sft").is_dir() and state.global_step == 3:  # checkpoint-2 of GRPO is on disk
                os.kill(os.getpid(), signal.SIGKILL)

    recipe = PairRecipe.model_validate_json(sys.argv[1])
    make_pair(recipe, out, callbacks=[KillInGrpo()])
    """
)


def test_resume_after_sigkill_ends_like_an_uninterrupted_run(pair: Path, init: Path, tmp_path: Path) -> None:
    recipe = PairRecipe(init=str(init), **TINY)  # the recipe of the uninterrupted `pair`
    whole = pair
    cut = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-c", KILLER, recipe.model_dump_json(), str(cut)], env=env)
    assert run.returncode == -9
    assert (cut / "sft").is_dir() and not (cut / "rl").exists()
    assert (cut / ".work" / "grpo" / "checkpoint-2").is_dir()
    make_pair(recipe, cut, resume=True)
    a, b = weights(whole / "rl"), weights(cut / "rl")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (cut / "log.jsonl").read_text().splitlines()]
    assert steps == [*range(1, 81), *range(1, 7)]  # the killed step 3 was logged once, not twice


runner = CliRunner()


def run_cli(*args: str):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stderr.strip().splitlines()


def test_bad_inputs_are_one_line_errors(init: Path, tmp_path: Path) -> None:
    cases = {
        "unknown task": ["--init", str(init), "--task", "sqaud", "-o", str(tmp_path / "a")],
        "resume nothing": ["--init", str(init), "-o", str(tmp_path / "b"), "--resume"],
        "bad levels": ["--init", str(init), "--levels", "1,x", "-o", str(tmp_path / "c")],
        "zero steps": ["--init", str(init), "--sft-steps", "0", "-o", str(tmp_path / "d")],
    }
    for name, args in cases.items():
        code, lines = run_cli("pair", *args, "--device", "cpu", "--no-progress")
        assert code == 1, name
        assert len(lines) == 1 and lines[0].startswith("rvec: error:"), (name, lines)


def test_init_without_chat_template_is_refused(tmp_path: Path) -> None:
    bare = tiny_init(tmp_path / "bare", chat_template=False)
    code, lines = run_cli(
        "pair", "--init", str(bare), "-o", str(tmp_path / "p"), "--device", "cpu", "--no-progress"
    )
    assert code == 1 and len(lines) == 1
    assert "no chat template" in lines[0]


def test_resume_refuses_a_folder_of_another_recipe(init: Path, tmp_path: Path) -> None:
    out = tmp_path / "p"
    out.mkdir()
    (out / "recipe.json").write_text(json.dumps({"recipe": PairRecipe(init=str(init), seed=1).to_json()}))
    code, lines = run_cli(
        "pair", "--init", str(init), "-o", str(out), "--resume", "--device", "cpu", "--no-progress"
    )
    assert code == 1 and len(lines) == 1
    assert "another recipe" in lines[0] and f"seed: 1 → {DEFAULT_SEED}" in lines[0]
    code, lines = run_cli("pair", "--init", str(init), "-o", str(out), "--device", "cpu", "--no-progress")
    assert code == 1 and "--resume" in lines[0]


def test_worked_fraction_mixes_worked_and_bare_solutions() -> None:
    from rvec.pair.data import mix_worked_solutions, training_set

    arith = training_set("arith")
    items = arith.items(2000, seed=0)
    mixed = mix_worked_solutions(items, arith, worked_fraction=0.5, seed=0)
    assert mixed == mix_worked_solutions(items, arith, worked_fraction=0.5, seed=0)  # seeded
    bare = [m for m, it in zip(mixed, items, strict=True) if m.solution != it.solution]
    assert 900 < len(bare) < 1100
    for item in bare:
        assert item.solution == f"Answer: {item.doc.fields['answer']}"
        assert arith.reward(item.doc, item.solution) == 1.0  # a bare answer is a correct answer
    assert mix_worked_solutions(items, arith, worked_fraction=1.0, seed=0) == items


def test_sft_only_run(init: Path, tmp_path: Path) -> None:
    recipe = PairRecipe(init=str(init), **{**TINY, "grpo_steps": 0, "sft_steps": 4})
    result = make_pair(recipe, tmp_path / "p")
    assert (tmp_path / "p" / "sft").is_dir() and not (tmp_path / "p" / "rl").exists()
    assert result.manifest["rl"] is None and result.manifest["vector"] is None
    assert set(result.manifest["held_out"]["models"]) == {"init", "sft"}
    assert result.manifest["held_out"]["rl_beats_sft"] is None


def test_step_rates_total_every_kept_step(tmp_path: Path) -> None:
    from rvec.pair.logbook import step_rates

    rows = [
        {"phase": "sft", "step": 1, "step_seconds": 2.0},
        {"phase": "sft", "step": 2, "step_seconds": 4.0},
        {"phase": "grpo", "step": 1, "step_seconds": 10.0, "completion_length": 20},
        {"phase": "grpo", "step": 2, "step_seconds": 30.0, "completion_length": 40},
    ]
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n{torn line")
    rates = step_rates(log, completions_per_step=4)
    assert rates == {
        "sft_seconds_per_step": 3.0,
        "sft_step_seconds_total": 6.0,
        "grpo_seconds_per_step": 20.0,
        "grpo_step_seconds_total": 40.0,
        "grpo_generated_tokens_per_second": (20 + 40) * 4 / 40.0,
    }
