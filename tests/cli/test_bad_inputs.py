"""Bad inputs through the CLI: one line on stderr, exit ≠ 0, no traceback, nothing that looks complete."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from fixtures import Family, perturb, random_state, save_model, tiny_config
from helpers import assert_user_error
from rvec.cli import app

runner = CliRunner()


def run(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def run_fused_apply(family: Family, target: Path, out: Path, *extra: str | Path, alphas=("1",)):
    """``rvec apply --sft --rl --to TARGET -a α… -o OUT --no-progress EXTRA…`` with the family's donors."""
    alpha_args = [arg for a in alphas for arg in ("-a", a)]
    return run(
        "apply",
        "--sft",
        family.sft,
        "--rl",
        family.rl,
        "--to",
        target,
        *alpha_args,
        "-o",
        out,
        "--no-progress",
        *extra,
    )


def only_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def set_element(folder: Path, name: str, index: int, value: float) -> None:
    """Overwrite one element (flat index) of tensor ``name`` in a copied checkpoint."""

    def edit(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        t.view(-1)[index] = value
        return t

    edit_tensor(folder, name, edit)


def edit_tensor(folder: Path, name: str, fn) -> None:
    for file in folder.glob("*.safetensors"):
        tensors = load_file(file)
        if name in tensors:
            tensors[name] = fn(tensors[name])
            save_file(tensors, file, metadata={"format": "pt"})
            return
    raise AssertionError(name)


def drop_tensor(folder: Path, name: str) -> None:
    for file in folder.glob("*.safetensors"):
        tensors = load_file(file)
        if name in tensors:
            del tensors[name]
            save_file(tensors, file, metadata={"format": "pt"})
    index = folder / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"].pop(name)
    index.write_text(json.dumps(data))


def test_shape_mismatch(qwen_untied: Family, tmp_path: Path) -> None:
    rl = copy_model(qwen_untied.rl, tmp_path / "rl")
    edit_tensor(rl, "model.layers.1.mlp.up_proj.weight", lambda t: t[:-1])
    result = run("extract", "--sft", qwen_untied.sft, "--rl", rl, "-o", tmp_path / "vec", "--no-progress")
    assert_user_error(result, "model.layers.1.mlp.up_proj.weight: shape")
    assert only_dirs(tmp_path) == ["rl"]


def test_missing_tensor(qwen_untied: Family, tmp_path: Path) -> None:
    rl = copy_model(qwen_untied.rl, tmp_path / "rl")
    drop_tensor(rl, "model.layers.2.self_attn.q_proj.bias")
    result = run("extract", "--sft", qwen_untied.sft, "--rl", rl, "-o", tmp_path / "vec", "--no-progress")
    assert_user_error(result, "missing in RL donor: model.layers.2.self_attn.q_proj.bias")
    assert only_dirs(tmp_path) == ["rl"]


def test_different_architecture(qwen_untied: Family, llama_tied: Family, tmp_path: Path) -> None:
    result = run(
        "extract", "--sft", qwen_untied.sft, "--rl", llama_tied.rl, "-o", tmp_path / "vec", "--no-progress"
    )
    assert_user_error(result, "architecture: SFT has 'Qwen2ForCausalLM', RL has 'LlamaForCausalLM'")
    assert not (tmp_path / "vec").exists()


def test_unrelated_target_is_refused_by_lineage(qwen_untied: Family, tmp_path: Path) -> None:
    stranger = save_model(
        random_state(tiny_config("qwen2", tied=False), seed=77),
        tiny_config("qwen2", tied=False),
        tmp_path / "t",
    )
    vec = tmp_path / "vec"
    assert (
        run("extract", "--sft", qwen_untied.sft, "--rl", qwen_untied.rl, "-o", vec, "--no-progress").exit_code
        == 0
    )
    result = run("apply", vec, "--to", stranger, "-a", "1", "-o", tmp_path / "out", "--no-progress")
    assert_user_error(result, "look unrelated")
    assert not (tmp_path / "out").exists()
    forced = run(
        "apply", vec, "--to", stranger, "-a", "1", "-o", tmp_path / "out", "--no-progress", "--no-lineage"
    )
    assert forced.exit_code == 0, forced.output


def test_vocab_mismatch_without_policy(qwen_untied: Family, tmp_path: Path) -> None:
    config = tiny_config("qwen2", tied=False, vocab=176)
    state = perturb(random_state(tiny_config("qwen2", tied=False), seed=1), seed=5, scale=0.05)
    for k in ("model.embed_tokens.weight", "lm_head.weight"):
        state[k] = torch.cat([state[k], torch.zeros(16, 32)])
    target = save_model(state, config, tmp_path / "target")
    result = run_fused_apply(qwen_untied, target, tmp_path / "out")
    assert_user_error(result, "pass --embeddings overlap")
    assert not (tmp_path / "out").exists()


def test_corrupted_safetensors_header(qwen_untied: Family, tmp_path: Path) -> None:
    sft = copy_model(qwen_untied.sft, tmp_path / "sft")
    shard = sorted(sft.glob("*.safetensors"))[1]
    raw = bytearray(shard.read_bytes())
    raw[9:13] = b"\x00\x01\x02\x03"
    shard.write_bytes(bytes(raw))
    result = run("extract", "--sft", sft, "--rl", qwen_untied.rl, "-o", tmp_path / "vec", "--no-progress")
    assert_user_error(result, "corrupted safetensors header")
    assert not (tmp_path / "vec").exists()


def test_truncated_shard(qwen_untied: Family, tmp_path: Path) -> None:
    target = copy_model(qwen_untied.target, tmp_path / "target")
    shard = sorted(target.glob("*.safetensors"))[-1]
    shard.write_bytes(shard.read_bytes()[:-64])
    result = run_fused_apply(qwen_untied, target, tmp_path / "out")
    assert_user_error(result, "truncated")
    assert not (tmp_path / "out").exists()


def test_missing_shard_listed_in_index(qwen_untied: Family, tmp_path: Path) -> None:
    target = copy_model(qwen_untied.target, tmp_path / "target")
    sorted(target.glob("*.safetensors"))[0].unlink()
    result = run("inspect", target)
    assert_user_error(result, "is missing; re-download it")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_donor(qwen_untied: Family, tmp_path: Path, value: float) -> None:
    rl = copy_model(qwen_untied.rl, tmp_path / "rl")
    set_element(rl, "model.layers.3.mlp.gate_proj.weight", 3, value)
    result = run("extract", "--sft", qwen_untied.sft, "--rl", rl, "-o", tmp_path / "vec", "--no-progress")
    assert_user_error(result, "model.layers.3.mlp.gate_proj.weight: the RL donor")
    assert only_dirs(tmp_path) == ["rl"]


def test_output_exists_without_overwrite(qwen_untied: Family, tmp_path: Path) -> None:
    (tmp_path / "vec").mkdir()
    (tmp_path / "vec" / "keep.txt").write_text("mine")
    result = run(
        "extract", "--sft", qwen_untied.sft, "--rl", qwen_untied.rl, "-o", tmp_path / "vec", "--no-progress"
    )
    assert_user_error(result, "already exists; pass --overwrite")
    assert (tmp_path / "vec" / "keep.txt").read_text() == "mine"


def test_failure_in_the_middle_of_writing_leaves_nothing(qwen_untied: Family, tmp_path: Path) -> None:
    from rvec.vector.apply import apply

    calls = []

    def interrupt(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 10:  # Ctrl-C after some shards are on disk
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        apply(
            [_vector(qwen_untied, tmp_path)],
            qwen_untied.target,
            tmp_path / "out",
            alphas=[1.0],
            max_shard_bytes=10_000,
            on_progress=interrupt,
        )
    assert not (tmp_path / "out").exists()
    assert only_dirs(tmp_path) == ["vec"]


def _vector(family: Family, tmp_path: Path) -> Path:
    from rvec.vector.extract import extract

    extract(family.sft, family.rl, tmp_path / "vec")
    return tmp_path / "vec"


def test_unknown_hub_id_offline(tmp_path: Path) -> None:
    result = run("inspect", "nobody-here/no-such-model")
    assert_user_error(result, "the Hugging Face Hub is unreachable")


def test_pickled_weights_refused_without_flag(qwen_untied: Family, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(qwen_untied.target / "config.json", folder / "config.json")
    state = {}
    for file in qwen_untied.target.glob("*.safetensors"):
        state.update(load_file(file))
    torch.save(state, folder / "pytorch_model.bin")
    result = run_fused_apply(qwen_untied, folder, tmp_path / "out")
    assert_user_error(result, "pass --allow-pickle")
    ok = run_fused_apply(qwen_untied, folder, tmp_path / "out", "--allow-pickle")
    assert ok.exit_code == 0, ok.output
    out = {}
    for file in (tmp_path / "out").glob("*.safetensors"):
        out.update(load_file(file))
    sft, rl = {}, {}
    for f in qwen_untied.sft.glob("*.safetensors"):
        sft.update(load_file(f))
    for f in qwen_untied.rl.glob("*.safetensors"):
        rl.update(load_file(f))
    assert all(torch.equal(out[k], state[k] + (rl[k] - sft[k])) for k in state)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--layers", "3-1"], "range '3-1' is reversed"),
        (["--schedule", "cubic:1"], "expected linear:START:END"),
        (["--include", "("], "invalid regular expression"),
        (["--dtype", "int8"], "expected float32, bfloat16 or float16"),
        (["--embeddings", "truncate"], "expected one of apply, skip, overlap"),
        (["--include", "no-such-tensor"], "matches no tensor"),
    ],
)
def test_bad_apply_arguments(qwen_untied: Family, tmp_path: Path, args: list[str], fragment: str) -> None:
    result = run_fused_apply(qwen_untied, qwen_untied.target, tmp_path / "out", *args)
    assert_user_error(result, fragment)
    assert not (tmp_path / "out").exists()


def test_alpha_count_must_match_vectors(qwen_untied: Family, tmp_path: Path) -> None:
    result = run_fused_apply(qwen_untied, qwen_untied.target, tmp_path / "out", alphas=("1", "2"))
    assert_user_error(result, "1 vectors but 2 --alpha values")


def test_non_finite_target_stops_apply_on_a_worker_thread(qwen_untied: Family, tmp_path: Path) -> None:
    target = copy_model(qwen_untied.target, tmp_path / "target")
    set_element(target, "model.layers.2.self_attn.o_proj.weight", -1, float("inf"))
    result = run_fused_apply(qwen_untied, target, tmp_path / "out")
    assert_user_error(result, "model.layers.2.self_attn.o_proj.weight: the target")
    assert "holds NaN or Inf; the checkpoint is damaged" in result.stderr
    assert only_dirs(tmp_path) == ["target"]
