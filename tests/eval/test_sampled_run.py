"""A sampled, thinking-aware run through the runner and the CLI on a tiny real model: results.json's
names, per-sample records, lengths, the cache, reproducibility, and the one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from helpers import assert_user_error
from rvec.cli import app
from rvec.errors import InvalidArgumentError
from rvec.eval.lengths import length_summary
from rvec.eval.overrides import RunOverrides, apply_overrides
from rvec.eval.presets import get_preset
from rvec.eval.runner import evaluate
from rvec.eval.sampling import cell_pass_at_k
from rvec.eval.types import GenerateRequest
from rvec.model.hf.backend import HFBackend

SAMPLED = RunOverrides(max_new_tokens=8, samples=3, temperature=1.0, top_p=0.95)


@pytest.fixture(scope="module")
def tiny(llama_tied) -> HFBackend:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(llama_tied.target, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(llama_tied.target)
    return HFBackend(model, tokenizer, fingerprint="tiny", batch_size=4, progress=False)


def run(lm: HFBackend, data_dir: Path, out: Path | None, tasks: list[str], seed: int = 0, **kwargs):
    preset = apply_overrides(get_preset("reasoning"), kwargs.pop("overrides", SAMPLED))
    return evaluate(
        lm, tasks=tasks, preset=preset, limit=2, data_dir=data_dir, out_dir=out, seed=seed, progress=False
    )


def test_a_sampled_run_names_its_metrics_and_records_every_sample(
    tiny: HFBackend, data_dir: Path, tmp_path: Path
) -> None:
    result = run(tiny, data_dir, tmp_path / "out", ["math500"])
    records = result.samples["math500"]
    assert [(r.doc_id, r.sample) for r in records] == [
        (d, j) for d in dict.fromkeys(r.doc_id for r in records) for j in range(3)
    ]
    assert all(r.n_generated_tokens <= 8 for r in records)

    document = json.loads((tmp_path / "out" / "results.json").read_text())
    scores = document["results"]["math500"]
    assert {"math_verify,answer", "avg@3", "pass@1", "pass@2", "pass@3"} <= set(scores)
    groups: dict[str, list[bool]] = {}
    for r in records:
        groups.setdefault(r.doc_id, []).append(r.correct)
    assert scores["pass@2"] == pytest.approx(cell_pass_at_k(groups, k=2)["mean"])
    assert "avg@3_stderr" not in json.dumps(scores)  # no per-record stderr for a cell-level metric
    assert document["n-samples"]["math500"] == {"original": 500, "effective": 2}
    assert document["rvec"]["sampling"]["samples"] == 3
    assert document["rvec"]["sampling"]["keys"]["math500"]["samples_per_item"] == 3
    assert document["rvec"]["lengths"]["math500"] == length_summary([r.n_generated_tokens for r in records])
    assert document["rvec"]["preset"]["sampling"] == {"samples": 3, "temperature": 1.0, "top_p": 0.95}
    lines = (tmp_path / "out" / "samples" / "math500.jsonl").read_text().splitlines()
    assert [json.loads(line)["sample"] for line in lines] == [0, 1, 2, 0, 1, 2]

    again = run(tiny, data_dir, tmp_path / "out", ["math500"])  # resumed from the cache: nothing sent
    assert [r.response for r in again.samples["math500"]] == [r.response for r in records]
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["rvec"]["requests"]["generated_requests"] == 0


def test_samples_do_not_depend_on_the_other_tasks_and_follow_the_seed(
    tiny: HFBackend, data_dir: Path
) -> None:
    alone = [r.response for r in run(tiny, data_dir, None, ["math500"]).samples["math500"]]
    beside = run(tiny, data_dir, None, ["aime24", "math500"]).samples["math500"]
    assert [r.response for r in beside] == alone
    assert [r.response for r in run(tiny, data_dir, None, ["math500"], seed=1).samples["math500"]] != alone


def test_a_greedy_run_is_unchanged_by_the_new_fields(tiny: HFBackend, data_dir: Path, tmp_path: Path) -> None:
    run(tiny, data_dir, tmp_path / "g", ["gsm8k"], overrides=RunOverrides(max_new_tokens=4))
    document = json.loads((tmp_path / "g" / "results.json").read_text())
    assert document["rvec"]["sampling"] is None
    assert not any("@" in metric for metric in document["results"]["gsm8k"])
    assert "sample" not in json.loads(
        (tmp_path / "g" / "samples" / "gsm8k.jsonl").read_text().splitlines()[0]
    )
    assert set(document["rvec"]["lengths"]["gsm8k"]) == {"n", "mean", "median", "p90"}


def test_chat_template_switches_reach_the_template(tiny: HFBackend) -> None:
    tokenizer = tiny.tokenizer
    saved = tokenizer.chat_template
    try:
        tokenizer.chat_template = (
            "{% for m in messages %}{{ m['content'] }}{% endfor %}"
            "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}"
        )
        turns = ({"role": "user", "content": "Q"},)
        assert tiny.render(GenerateRequest(turns, None, (), 4)) == "Q"
        off = GenerateRequest(turns, None, (), 4, template_args=(("enable_thinking", False),))
        assert tiny.render(off) == "Q<think></think>"
    finally:
        tokenizer.chat_template = saved


@pytest.mark.parametrize("tag", ["</thinké>", "<|im_end|>"])
def test_a_think_tag_the_tokenizer_cannot_encode_is_refused_before_generating(
    tiny: HFBackend, data_dir: Path, tag: str
) -> None:
    overrides = RunOverrides(max_new_tokens=4, think=True, think_end_tag=tag)
    with pytest.raises(InvalidArgumentError) as err:
        run(tiny, data_dir, None, ["math500"], overrides=overrides)
    assert str(err.value).startswith(f"think end tag {tag!r} does not survive hf/float32's tokenizer")


# ------------------------------------------------------------------------------- CLI, one line each
def cli(model: Path, data_dir: Path, *args: str):
    base = [
        "eval",
        str(model),
        "--data-dir",
        str(data_dir),
        "--device",
        "cpu",
        "--no-progress",
        "--limit",
        "1",
    ]
    return CliRunner().invoke(app, [*base, *args])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["--tasks", "math500", "--samples", "0", "--temperature", "0.6"],
            "samples 0: draw at least 1 sample",
        ),
        (["--tasks", "math500", "--samples", "4"], "temperature 0 with 4 samples"),
        (["--tasks", "sciq", "--preset", "lm-eval", "--think"], "sciq is scored by log-likelihood"),
        (
            ["--tasks", "sciq", "--preset", "lm-eval", "--samples", "2", "--temperature", "1"],
            "sciq is scored by log-likelihood under preset",
        ),
        (["--tasks", "math500", "--chat-template-arg", "enable_thinking"], "expected NAME=VALUE"),
    ],
)
def test_bad_sampling_and_thinking_flags_are_one_line(
    tmp_path: Path, data_dir: Path, args: list[str], fragment: str
) -> None:
    # the model folder does not exist: each refusal comes before any load
    assert_user_error(cli(tmp_path / "no-model", data_dir, *args), fragment)


def test_a_think_tag_the_tokenizer_cannot_encode_is_one_line(llama_tied, data_dir: Path) -> None:
    result = cli(
        llama_tied.target,
        data_dir,
        "--tasks",
        "math500",
        "--preset",
        "reasoning",
        "--think",
        "--think-end-tag",
        "</thinké>",
    )
    assert_user_error(result, "think end tag '</thinké>' does not survive")
