"""Thinking models, scoring side: the answer after the closing tag, unclosed blocks scored wrong and
counted, per-sample records, refusals; through the real runner with responses from its cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fixtures import make_tokenizer
from rvec.errors import InvalidArgumentError
from rvec.eval.cache import CacheKey, ResponseCache, request_digest
from rvec.eval.data import DataSource
from rvec.eval.plan import check_thinking_tasks
from rvec.eval.presets import get_preset
from rvec.eval.results import sample_filename
from rvec.eval.runner import evaluate
from rvec.eval.tasks import get_task
from rvec.eval.thinking import ThinkSettings, split_think, think_record, think_summary
from rvec.eval.types import Response
from rvec.model.hf.backend import HFBackend

THINK = ThinkSettings()


# ------------------------------------------------------------------------------------ splitting
def test_the_answer_is_read_after_the_last_closing_tag() -> None:
    split = split_think("<think>try 3</think> no </think>\n  The answer is \\boxed{4}.", "</think>")
    assert split.closed
    assert split.thinking == "<think>try 3</think> no "
    assert split.answer == "The answer is \\boxed{4}."
    assert (split.chars_inside, split.chars_outside) == (24, 24)


def test_an_unclosed_block_has_no_answer_and_a_closed_empty_one_has_an_empty_answer() -> None:
    text = "<think>so the answer is \\boxed{4} but wait"
    unclosed = split_think(text, "</think>")
    assert (unclosed.closed, unclosed.thinking, unclosed.answer) == (False, text, "")
    empty = split_think("<think>hm</think>   ", "</think>")
    assert (empty.closed, empty.answer, empty.chars_inside) == (True, "", 9)


def test_records_count_characters_and_tokens_with_a_real_tokenizer(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    make_tokenizer(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    split = split_think("ab c</think> 12", "</think>")
    assert think_record(split) == {
        "closed": True,
        "chars_inside": 4,
        "chars_outside": 2,
        "tokens_inside": None,
        "tokens_outside": None,
    }
    # The character-level tokenizer of the fixtures: one token per character.
    assert (
        think_record(split, count)["tokens_inside"] == 4 and think_record(split, count)["tokens_outside"] == 2
    )
    records = [think_record(split), think_record(split_think("never closed", "</think>"))]
    summary = think_summary(records, THINK)
    assert summary == {
        "end_tag": "</think>",
        "n": 2,
        "unclosed": 1,
        "mean_chars_inside": (4 + 12) / 2,
        "mean_chars_outside": 1.0,
        "mean_tokens_inside": None,
        "mean_tokens_outside": None,
    }


# ------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("tag", ["", "   "])
def test_an_empty_think_tag_is_one_line(tag: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        ThinkSettings(end_tag=tag)
    assert str(err.value) == (
        f"think end tag {tag!r} is empty; pass the tag that closes the model's reasoning, e.g. '</think>'"
    )


def test_thinking_on_a_log_likelihood_task_is_refused_in_one_line() -> None:
    preset = get_preset("lm-eval").model_copy(update={"think": THINK})
    with pytest.raises(InvalidArgumentError) as err:
        check_thinking_tasks(["gsm8k", "sciq"], preset)
    assert str(err.value) == (
        "sciq is scored by log-likelihood under preset 'lm-eval', which cannot think "
        "(think end tag '</think>'); drop thinking or evaluate generative tasks only"
    )
    check_thinking_tasks(["gsm8k", "sciq"], get_preset("lm-eval"))  # thinking off: accepted
    check_thinking_tasks(["sciq"], get_preset("paper").model_copy(update={"think": THINK}))  # generated


# ------------------------------------------------------------------------------------ runner
@pytest.fixture(scope="module")
def tiny_backend(llama_tied) -> HFBackend:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(llama_tied.target, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(llama_tied.target)
    return HFBackend(model, tokenizer, fingerprint="tiny", batch_size=2, progress=False)


def test_the_runner_refuses_before_generating(tiny_backend: HFBackend, data_dir: Path) -> None:
    preset = get_preset("lm-eval").model_copy(update={"think": THINK})
    with pytest.raises(InvalidArgumentError, match="sciq is scored by log-likelihood"):
        evaluate(tiny_backend, tasks=["sciq"], preset=preset, limit=1, data_dir=data_dir, progress=False)


TEXTS = [
    # closed, right: the answer after the tag is boxed and right
    "<think>polar: r = 3, theta = pi/2</think>\n\nSo \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.",
    # never closed: the right answer sits inside the reasoning; scored wrong and counted
    "<think>the sum telescopes to \\boxed{p - q} hmm, let me check again",
    # closed, wrong after the tag, though the reasoning held the right value
    "<think>2 + 5/3 + 1 = 14/3</think> The answer is \\boxed{\\frac{13}{3}}.",
]


def test_thinking_through_the_runner(tiny_backend: HFBackend, data_dir: Path, tmp_path: Path) -> None:
    preset = get_preset("reasoning").model_copy(update={"think": THINK})
    task = get_task("math500")
    docs = task.docs(DataSource(data_dir), limit=3)
    # The responses come from the run's own cache, keyed as the runner keys them: nothing generated.
    key = CacheKey(
        "tiny", f"{tiny_backend.name}:{tiny_backend.identity}", "reasoning@1", "plain", "math500", None, 1234
    )
    entry = ResponseCache(tmp_path / "out" / "cache").open(key)
    for doc, text in zip(docs, TEXTS, strict=True):
        entry.put(
            doc.doc_id, request_digest(task.request(doc, preset)), Response(text=text, n_generated_tokens=9)
        )
    entry.close()

    result = evaluate(
        tiny_backend,
        tasks=["math500"],
        preset=preset,
        limit=3,
        data_dir=data_dir,
        out_dir=tmp_path / "out",
        progress=False,
    )
    records = result.samples["math500"]
    assert [r.correct for r in records] == [True, False, False]
    assert records[1].metrics == {"math_verify,answer": 0.0, "exact_match,none": 0.0, "math_verify,none": 0.0}
    assert records[1].extracted is None and records[2].extracted == "\\frac{13}{3}"
    assert records[1].response == TEXTS[1]  # the full text is kept; only scoring reads after the tag
    assert result.scores["math500"]["math_verify,answer"] == pytest.approx(1 / 3)

    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["rvec"]["requests"]["generated_requests"] == 0
    assert document["rvec"]["think"]["math500"]["unclosed"] == 1
    summary = document["rvec"]["think"]["math500"]
    # The fixtures' tokenizer has one token per character: tokens equal characters here.
    inside = [len("<think>polar: r = 3, theta = pi/2"), len(TEXTS[1]), len("<think>2 + 5/3 + 1 = 14/3")]
    assert summary["mean_tokens_inside"] == pytest.approx(sum(inside) / 3)
    lines = (tmp_path / "out" / "samples" / sample_filename("math500")).read_text().splitlines()
    think = [json.loads(line)["think"] for line in lines]
    assert [t["closed"] for t in think] == [True, False, True]
    assert think[0]["chars_inside"] == len("<think>polar: r = 3, theta = pi/2")
    assert think[1]["chars_outside"] == 0


def test_paper_sciq_drops_its_log_likelihood_report_when_thinking(
    tiny_backend: HFBackend, data_dir: Path
) -> None:
    from rvec.eval.plan import plan_units

    thinking = get_preset("paper").model_copy(update={"think": THINK})
    source = DataSource(data_dir)
    units, _ = plan_units([get_task("sciq")], ["sciq"], thinking, "plain", [], source, 1, 0)
    plain, _ = plan_units([get_task("sciq")], ["sciq"], get_preset("paper"), "plain", [], source, 1, 0)
    assert units[0].aux is None and plain[0].aux is not None
