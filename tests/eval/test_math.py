"""MATH-500 and AIME 2024 on the real data: loading, prompts under every preset (pinned bytes),
answer extraction, lm-eval's normalisers, math-verify's verdicts against a fixture of real answers."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from rvec.eval.data import DataSource
from rvec.eval.lm_eval_math import (
    INVALID_ANSWER,
    aime_exact_match,
    hendrycks_strip,
    last_boxed_only_string,
    minerva_answer,
    minerva_gold,
    normalize_final_answer,
    sympy_equiv,
)
from rvec.eval.math_answers import (
    FINAL_ANSWER_PATTERN,
    extract_math_answer,
    last_boxed,
    math_verify_answer,
    math_verify_equal,
)
from rvec.eval.presets import get_preset
from rvec.eval.tasks import expand_task_names, get_task
from rvec.eval.types import Response

LM_EVAL, LM_EVAL_CHAT, REASONING = get_preset("lm-eval"), get_preset("lm-eval-chat"), get_preset("reasoning")
CASES = Path(__file__).parent / "data" / "math_verify_cases.jsonl"
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


# ------------------------------------------------------------------------------------ loading
def test_math500_rows_and_fields(source: DataSource) -> None:
    docs = get_task("math500").docs(source)
    assert len(docs) == 500 and [d.doc_id for d in docs[:3]] == ["0", "1", "2"]
    assert set(docs[0].fields) == {"problem", "solution", "answer", "subject", "level"}
    assert docs[0].fields["problem"].startswith("Convert the point $(0,3)$ in rectangular coordinates")
    assert docs[0].fields["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    levels = Counter(d.fields["level"] for d in docs)
    assert [levels[i] for i in range(1, 6)] == [43, 90, 105, 128, 134]
    assert len({d.fields["subject"] for d in docs}) == 7


def test_aime24_rows_and_fields(source: DataSource) -> None:
    task = get_task("aime24")
    docs = task.docs(source)
    assert len(docs) == 30 and docs[-1].doc_id == "29"
    assert {"id", "problem", "solution", "answer", "url"} <= set(docs[0].fields)
    assert docs[0].fields["problem"].startswith("Every morning Aya goes for a $9$-kilometer-long walk")
    assert [task.gold(d) for d in docs[:8]] == ["204", "113", "371", "385", "110", "104", "721", "025"]
    assert task.lm_eval_gold(docs[7]) == "25"  # lm-eval's AIME data holds the integer 25
    assert expand_task_names("math500,aime24") == ["math500", "aime24"]


def test_lm_eval_gold_from_the_solution_equals_the_answer_column(source: DataSource) -> None:
    # lm-eval's minerva_math500 takes its gold from the solution's last box; on all 500 items that
    # normalises to the same string as the answer column rvec's math-verify verdict uses.
    for doc in get_task("math500").docs(source):
        assert minerva_gold(doc.fields["solution"]) == normalize_final_answer(doc.fields["answer"]), (
            doc.doc_id
        )


# ------------------------------------------------------------------------------------ prompts
def test_lm_eval_math500_prompt_bytes(source: DataSource) -> None:
    task = get_task("math500")
    request = task.request(task.docs(source, limit=1)[0], LM_EVAL)
    prompt = request.prompt
    assert request.messages is None and (request.stop, request.max_new_tokens) == (("Problem:",), 256)
    assert prompt.startswith(
        "Problem:\nFind the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.\n\nSolution: The "
        "expressions inside each square root must be non-negative."
    )
    assert "Problem:\nTerrell usually lifts" in prompt and "30n&=480\\\\\n\\Rightarrow\\qquad n" in prompt
    assert prompt.endswith(
        "Final Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.\n\n"
        "Problem:\nConvert the point $(0,3)$ in rectangular coordinates to polar coordinates.  Enter your "
        "answer in the form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$\n\nSolution:"
    )
    assert prompt.count("\n\nSolution: ") == 4 and prompt.count("I hope it is correct.\n\nProblem:\n") == 4
    assert len(prompt) == 1974
    assert hashlib.sha256(prompt.encode()).hexdigest() == (
        "ac82040a5a5363bfb08d65a0cf04e0a82ad1c89fc5bd0c197d3fded175468f35"
    )


def test_lm_eval_chat_math500_is_multiturn(source: DataSource) -> None:
    task = get_task("math500")
    request = task.request(task.docs(source, limit=1)[0], LM_EVAL_CHAT)
    assert [m["role"] for m in request.messages] == ["user", "assistant"] * 4 + ["user"]
    assert request.messages[0]["content"].startswith("Problem:\nFind the domain") and request.messages[0][
        "content"
    ].endswith("\n\nSolution:")
    assert request.messages[1]["content"].startswith("The expressions inside each square root")
    assert request.messages[-1]["content"].endswith("$0 \\le \\theta < 2 \\pi.$\n\nSolution:")


def test_lm_eval_aime24_prompt(source: DataSource) -> None:
    task = get_task("aime24")
    doc = task.docs(source, limit=1)[0]
    request = task.request(doc, LM_EVAL)
    assert request.prompt == "Question: " + doc.fields["problem"] + "\nAnswer:"
    assert (
        request.stop == ("Question:", "</s>", "<|im_end|>", "<|eot_id|>") and request.max_new_tokens == 32768
    )


@pytest.mark.parametrize(
    ("name", "field"), [("math500", "problem"), ("aime24", "problem"), ("gsm8k", "question")]
)
def test_reasoning_prompt_is_the_problem_then_the_boxed_instruction(
    source: DataSource, name: str, field: str
) -> None:
    task = get_task(name)
    doc = task.docs(source, limit=1)[0]
    request = task.request(doc, REASONING)
    assert request.messages == ({"role": "user", "content": doc.fields[field] + "\n" + INSTRUCTION},)
    assert (request.prompt, request.stop, request.max_new_tokens) == (None, (), 32768)


# ------------------------------------------------------------------------------------ extraction
def test_last_boxed_takes_the_last_complete_box() -> None:
    assert last_boxed("a \\boxed{1} then \\boxed{\\frac{1}{2}} done") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}") == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert last_boxed("\\fbox{7} and \\boxed {8}") == "8"
    assert last_boxed("\\boxed{5} but then \\boxed{\\frac{1}{") == "5"  # the last box was cut off
    assert last_boxed("no box at all") is None


def test_extract_falls_back_to_the_preset_pattern() -> None:
    minerva = "So $x=2$.\nFinal Answer: The final answer is $\\frac{1}{2}$. I hope it is correct."
    assert extract_math_answer(minerva, FINAL_ANSWER_PATTERN) == "\\frac{1}{2}"
    assert extract_math_answer("The final answer is: 24.", FINAL_ANSWER_PATTERN) == "24"
    assert extract_math_answer("the final answer is 3 \\boxed{4}", FINAL_ANSWER_PATTERN) == "4"  # box first
    assert extract_math_answer("The final answer is 24.") is None  # no pattern: boxes only
    assert extract_math_answer("I think 24.", FINAL_ANSWER_PATTERN) is None


def test_lm_eval_minerva_extraction_and_normalisation() -> None:
    text = "We get 3.\nFinal Answer: The final answer is $[2,5)$. I hope it is correct.\nProblem"
    assert minerva_answer(text) == "$[2,5)$" and normalize_final_answer("$[2,5)$") == "[2,5)"
    assert minerva_answer("Final Answer: The final answer is $24$. ") == "$24$"  # cut before "I hope"
    assert minerva_answer("Final Answer: The final answer is $24$") == INVALID_ANSWER  # no ". " before it
    assert minerva_answer("The answer is 24.") == INVALID_ANSWER
    cases = {
        "\\text{(C)}": "(C)",
        "5.4 \\text{ cents}": "5.4",
        "\\$32,\\!348": "32348",
        "10,080": "10080",
        "0,1": "0,1",  # a bare tuple keeps its comma (lm-eval 3.1)
        "\\left( 3, \\frac{\\pi}{2} \\right)": "\\left(3,\\frac{\\pi}{2}\\right)",  # "ft" spared in \left
        "x = \\frac12": "\\frac{1}{2}",
        "\\sqrt[3]8": "\\sqrt[3]{8}",
        "90^\\circ": "90",
        "15\\mbox{ cm}^2": "15",
        "2\\pi cm": "2\\pi",
    }
    assert {k: normalize_final_answer(k) for k in cases} == cases
    assert last_boxed_only_string("\\boxed 5$ and \\boxed{6}") == "\\boxed 5"  # lm-eval's quirk, kept


def test_lm_eval_sympy_equivalence() -> None:
    assert sympy_equiv("0.5", "\\frac{1}{2}") and sympy_equiv("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}")
    assert sympy_equiv("(1,2)", "(1,2)")  # identical strings: sympy cannot parse a tuple
    assert not sympy_equiv("[2,5)", "[2,5]") and not sympy_equiv("x", "y") and not sympy_equiv("", "")


def test_lm_eval_aime_exact_match() -> None:
    assert aime_exact_match("The answer is $204$.", "204") == (True, "204")
    assert aime_exact_match("204", "204") == (True, "204")
    assert aime_exact_match("The answer is 204.", "204")[0] is False  # the whole response is compared
    assert aime_exact_match("so \\boxed{025}", "25") == (False, "025")  # no integer normalisation
    assert hendrycks_strip("\\dfrac{1}{2}") == hendrycks_strip("0.5") == "\\frac{1}{2}"
    assert hendrycks_strip("k = 3") == "3" and hendrycks_strip("50\\%") == "50"
    with pytest.raises(ValueError):
        hendrycks_strip("x/2")  # lm-eval falls back to plain equality here


# ------------------------------------------------------------------------------------ scoring
def test_math500_metrics_and_primary_per_preset(source: DataSource) -> None:
    task = get_task("math500")
    doc = task.docs(source, limit=3)[2]  # gold \frac{14}{3}
    minerva = Response(
        text=" 2+5/3+1.\nFinal Answer: The final answer is $\\frac{14}{3}$. I hope it is correct."
    )
    lm = task.score(doc, minerva, preset=LM_EVAL)
    assert lm.metrics == {"math_verify,answer": 1.0, "exact_match,none": 1.0, "math_verify,none": 1.0}
    assert (lm.primary, lm.extracted, lm.gold) == ("exact_match,none", "\\frac{14}{3}", "\\frac{14}{3}")
    boxed = Response(text="So the sum is \\boxed{\\dfrac{14}{3}}.")
    ours = task.score(doc, boxed, preset=REASONING)
    assert (ours.primary, ours.extracted, ours.metrics["math_verify,answer"]) == (
        "math_verify,answer",
        "\\dfrac{14}{3}",
        1.0,
    )
    assert ours.metrics["exact_match,none"] == 0.0  # no Minerva sentence
    assert task.score(doc, Response(text="\\boxed{\\frac{3}{14}}"), preset=REASONING).metrics == {
        "math_verify,answer": 0.0,
        "exact_match,none": 0.0,
        "math_verify,none": 0.0,
    }


def test_aime24_metrics(source: DataSource) -> None:
    task = get_task("aime24")
    doc = task.docs(source, limit=8)[7]  # answer "025"
    scored = task.score(doc, Response(text="Thus $m+n = \\boxed{25}$."), preset=LM_EVAL)
    assert scored.metrics == {"math_verify,answer": 1.0, "exact_match,none": 1.0}
    assert (scored.primary, scored.gold) == ("exact_match,none", "25")
    padded = task.score(doc, Response(text="\\boxed{025}"), preset=REASONING)
    assert padded.metrics == {"math_verify,answer": 1.0, "exact_match,none": 0.0}


def test_gsm8k_under_reasoning_records_both_verdicts(source: DataSource) -> None:
    task = get_task("gsm8k")
    doc = task.docs(source, limit=1)[0]  # gold 18
    agree = task.score(doc, Response(text="She makes \\boxed{18} dollars."), preset=REASONING)
    assert (
        agree.primary == "acc,strict"
        and agree.metrics["acc,strict"] == agree.metrics["math_verify,answer"] == 1.0
    )
    # A worked box: the strict regex wants a bare number in it; math-verify takes the last side.
    differ = task.score(
        doc, Response(text="The total is \\boxed{16 - 3 - 4 = 9 \\cdot 2 = 18}"), preset=REASONING
    )
    assert differ.metrics["math_verify,answer"] == 1.0 and differ.metrics["acc,strict"] == 0.0
    assert "math_verify,answer" not in task.score(doc, Response(text="\\boxed{18}"), preset=LM_EVAL).metrics


# ------------------------------------------------------------------------------------ math-verify fixture
def _cases() -> list[dict]:
    return [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines()]


def test_fixture_golds_are_the_real_math500_answers(source: DataSource) -> None:
    rows = source.math500()
    cases = _cases()
    assert len(cases) >= 90
    for case in cases:
        assert rows[int(case["doc_id"])]["answer"] == case["gold"], case
    kinds = {c["kind"] for c in cases}
    assert {
        "fraction",
        "dfrac",
        "radical",
        "interval",
        "tuple",
        "degrees",
        "text",
        "units",
        "matrix",
    } <= kinds
    assert {"percentage", "scientific notation", "equation", "base", "thousands"} <= kinds


@pytest.mark.parametrize("case", _cases(), ids=lambda c: f"{c['doc_id']}:{c['prediction']}")
def test_math_verify_verdicts_match_the_fixture(case: dict) -> None:
    assert math_verify_equal(case["gold"], case["prediction"]) is case["math_verify"]
    # The same verdict through extraction from a response's last box.
    text = f"Some reasoning, \\boxed{{0}} first. So the answer is $\\boxed{{{case['prediction']}}}$."
    assert math_verify_answer(text, case["gold"]) == (case["math_verify"], case["prediction"])


def test_where_math_verify_and_a_human_grader_differ_is_marked() -> None:
    cases = _cases()
    differ = [c for c in cases if c["human"] != c["math_verify"]]
    assert all(c["note"] for c in differ)
    # Six answers a grader accepts and math-verify rejects (percent signs, e-notation, an inequality
    # for an interval, a unit word outside \text{}, a matrix as nested lists), one the other way round.
    assert sorted((c["doc_id"], c["human"]) for c in differ) == [
        ("176", True),
        ("179", False),
        ("248", True),
        ("266", True),
        ("307", True),
        ("459", True),
        ("67", True),
    ]


# ------------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize("preset", ["lm-eval", "reasoning"])
def test_rvec_eval_runs_the_math_tasks_on_a_tiny_model(
    preset: str, llama_tied, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rvec eval --tasks math500,aime24,gsm8k --preset …`` through the HF backend, greedy. The preset
    keeps its name, prompts and scoring; only its token budgets shrink to 16 (up to 32,768 otherwise)."""
    from typer.testing import CliRunner

    from rvec.cli import app
    from rvec.eval import presets

    base = presets.get_preset(preset)
    short = {k: v.model_copy(update={"max_new_tokens": 16}) for k, v in base.tasks.items()}
    monkeypatch.setitem(presets.PRESETS, preset, base.model_copy(update={"tasks": short}))
    tasks = "math500,aime24" + (",gsm8k" if preset == "reasoning" else "")
    args = ["eval", str(llama_tied.target), "--tasks", tasks, "--preset", preset, "--limit", "2"]
    args += ["--data-dir", str(data_dir), "--device", "cpu", "--batch-size", "2", "--no-progress"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "run" / "results.json").read_text())
    primary = "exact_match,none" if preset == "lm-eval" else "math_verify,answer"
    assert document["configs"]["math500"]["primary_metric"] == primary
    assert document["configs"]["aime24"]["preset"] == f"{preset}@{base.version}"
    assert set(document["results"]["math500"]) >= {
        "exact_match,none",
        "math_verify,none",
        "math_verify,answer",
    }
    assert document["n-samples"]["math500"] == {"original": 500, "effective": 2}
    assert document["n-samples"]["aime24"] == {"original": 30, "effective": 2}
    disagreements = document["rvec"]["disagreements"]
    if preset == "lm-eval":
        assert set(disagreements) == {"math500"} and disagreements["math500"]["n"] == 2
        assert disagreements["math500"]["metrics"] == ["exact_match,none", "math_verify,none"]
    else:
        assert set(disagreements) == {"gsm8k"}
        assert disagreements["gsm8k"]["metrics"] == ["acc,strict", "math_verify,answer"]
        # the printout says it too
        assert "gsm8k: acc,strict and math_verify,answer disagree on" in " ".join(result.stdout.split())
    assert document["rvec"]["think"] is None
