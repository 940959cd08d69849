"""Answer extraction and scoring on real rows of each dataset, with crafted responses."""

from __future__ import annotations

import random
import re

import pytest

from rvec.eval.data import DataSource
from rvec.eval.presets import get_preset
from rvec.eval.scoring import (
    BBH_SUBTASKS,
    INVALID,
    LM_EVAL_FILTERS,
    bbh_extract,
    bbh_normalize,
    extract_choice_letter,
    extract_last_number,
    extract_strict_number,
    is_refusal,
    lm_eval_regex,
    numbers_equal,
)
from rvec.eval.tasks import get_task
from rvec.eval.types import Response

LM_EVAL = get_preset("lm-eval")
PAPER = get_preset("paper")


# ------------------------------------------------------------------------------------ GSM8K
def _with_commas(gold: str) -> str:
    return f"{int(gold):,}" if re.fullmatch(r"\d+", gold) else gold


def test_gsm8k_right_answers_in_every_format_score(source: DataSource) -> None:
    task = get_task("gsm8k")
    for doc in task.docs(source, limit=30):
        gold = task.gold(doc)
        cases = {
            f"Step one. Step two. The answer is {gold}.": {"exact_match,strict-match", "acc,strict"},
            f"Reasoning...\n#### {_with_commas(gold)}": {"acc,strict", "acc,last-number"},
            f"So the total is \\boxed{{{gold}}}": {"acc,strict", "acc,last-number"},
            f"She ends up with ${_with_commas(gold)}.00 in total": {"acc,last-number"},
        }
        for text, must_pass in cases.items():
            scored = task.score(doc, Response(text=text))
            for metric in must_pass:
                assert scored.metrics[metric] == 1.0, (doc.doc_id, text, metric, scored)
        wrong = str(int(gold) + 1)
        scored = task.score(doc, Response(text=f"The answer is {wrong}."), preset=LM_EVAL)
        assert not any(scored.metrics.values()), (doc.doc_id, scored)


def test_gsm8k_primary_metric_follows_the_preset(source: DataSource) -> None:
    task = get_task("gsm8k")
    doc = task.docs(source, limit=1)[0]  # gold 18
    text = "Janet sells 9 eggs at $2 each, so she makes $18 a day."
    assert task.score(doc, Response(text=text)).primary == "acc,last-number"
    assert task.score(doc, Response(text=text)).metrics["acc,last-number"] == 1.0
    lm = task.score(doc, Response(text=text), preset=LM_EVAL)
    assert lm.primary == "exact_match,strict-match"
    assert lm.extracted == INVALID
    assert lm.metrics["exact_match,flexible-extract"] == 1.0  # "$18" minus "$"


def test_lm_eval_gsm8k_filters_behave_like_lm_eval() -> None:
    strict, s_group = LM_EVAL_FILTERS["gsm8k"]["strict-match"]
    flexible, f_group = LM_EVAL_FILTERS["gsm8k"]["flexible-extract"]
    text = "We get 1,234 apples. The answer is 1,234. Then 7 more"
    # The greedy class swallows the full stop; exact_match's ignore-regex "\\.$" removes it later.
    assert lm_eval_regex(text, strict, group_select=s_group) == "1,234."
    assert lm_eval_regex(text, flexible, group_select=f_group) == "7"
    assert lm_eval_regex("no digits here", strict, group_select=s_group) == INVALID
    assert lm_eval_regex("costs $5.", flexible, group_select=f_group) == "$5."


def test_numbers_and_strict_extraction() -> None:
    assert extract_last_number("first 3, then 1,000, then $2,500.50.") == "2500.50"
    assert extract_last_number("no number") is None
    assert extract_strict_number("#### 12 and later the answer is 15") == "15"
    assert extract_strict_number("**The final answer is: $\\boxed{-4}$**") == "-4"
    assert numbers_equal("18.00", "18") and numbers_equal("4.333", "4.33") and numbers_equal("1/4", "0.25")
    assert not numbers_equal("4.3", "4.33") and not numbers_equal(None, "1") and not numbers_equal("x", "1")


def test_gsm_plus_numeric_and_fraction_golds(source: DataSource) -> None:
    task = get_task("gsm-plus:integer-decimal-fraction-conversion")
    for doc in task.docs(source):
        gold = task.gold(doc)
        assert task.score(doc, Response(text=f"The answer is {gold}.")).metrics["acc,last-number"] == 1.0


# ------------------------------------------------------------------------------------ critical thinking
REFUSALS = [
    "We don't know how many inches the other women wear, so the average cannot be determined.",
    "There is not enough information to answer this question.",
    "The problem does not specify the price of the second item.",
    "This question is unanswerable as stated.",
    "Reasoning... #### None",
]
ANSWERS = ["The average is 3.5 inches. The answer is 3.5.", "She makes 18 dollars a day.", "#### 42"]


def test_refusal_detection() -> None:
    assert all(is_refusal(t) for t in REFUSALS)
    assert not any(is_refusal(t) for t in ANSWERS)


def test_critical_thinking_scores_refusals_on_real_rows(source: DataSource) -> None:
    task = get_task("gsm-plus:critical-thinking")
    for doc in task.docs(source, limit=5):
        assert task.gold(doc) == "None"
        refused = task.score(doc, Response(text=REFUSALS[1]), preset=LM_EVAL)
        answered = task.score(doc, Response(text=f"The answer is {doc.fields['seed_answer']}."))
        assert (refused.primary, refused.metrics["acc,refusal"]) == ("acc,refusal", 1.0)
        assert answered.metrics["acc,refusal"] == 0.0


# ------------------------------------------------------------------------------------ SciQ
def test_choice_letter_extraction() -> None:
    assert extract_choice_letter("I think it's B. Final answer: C") == "C"
    assert extract_choice_letter("The answer is (D).") == "D"
    assert extract_choice_letter("**Answer:** a") is None
    assert extract_choice_letter("Looking at the options, B fits best.") == "B"
    assert extract_choice_letter("no letter here") is None


def test_sciq_letter_scoring_on_real_rows(source: DataSource) -> None:
    task = get_task("sciq")
    for doc in task.docs(source, limit=20):
        request = task.request(doc, PAPER)
        user = request.messages[-1]["content"]
        gold_letter = next(line[0] for line in user.splitlines() if line[3:] == task.gold(doc))
        wrong_letter = next(x for x in "ABCD" if x != gold_letter)
        assert task.score(doc, Response(text=f"The answer is {gold_letter}.")).metrics["acc,letter"] == 1.0
        assert task.score(doc, Response(text=f"**{gold_letter}**")).metrics["acc,letter"] == 1.0
        assert task.score(doc, Response(text=f"Answer: ({wrong_letter})")).metrics["acc,letter"] == 0.0


def test_sciq_loglikelihood_acc_and_acc_norm(source: DataSource) -> None:
    task = get_task("sciq")
    doc = task.docs(source, limit=1)[0]  # choices: antioxidants, Oxygen, residues, oxidants (gold 3)
    # Summed log-likelihood favours the short "Oxygen"; per character the gold wins.
    lls = (-30.0, -9.0, -20.0, -10.0)
    scored = task.score(doc, Response(loglikelihoods=lls, continuation_lengths=(13, 7, 9, 9)), preset=LM_EVAL)
    assert scored.metrics == {"acc,none": 0.0, "acc_norm,none": 1.0}
    assert (scored.extracted, scored.gold) == ("Oxygen", "oxidants")


# ------------------------------------------------------------------------------------ BBH
MINUS = "\u2212"  # typographic minus, as models sometimes write it


def _messy(subtask: str, target: str) -> str:
    if re.fullmatch(r"\([A-Z]\)", target):
        return f"Thus, the answer is **{target[1]}**"
    if subtask in ("word_sorting",):
        return "the answer is: " + ", ".join(target.split())
    if subtask == "dyck_languages":
        return "So the answer is " + target.replace(" ", "")
    if subtask in ("object_counting", "multistep_arithmetic_two"):
        return "So The Answer Is " + target.replace("-", MINUS) + " ."
    return f"The answer is: {target.lower()}"


@pytest.mark.parametrize("subtask", BBH_SUBTASKS)
def test_bbh_each_subtask_right_messy_and_wrong(source: DataSource, subtask: str) -> None:
    task = get_task(f"bbh:{subtask}")
    rng = random.Random(0)
    for doc in task.docs(source, limit=3):
        target = task.gold(doc)
        clean = task.score(
            doc, Response(text=f"Let's think step by step.\nStuff. So the answer is {target}.")
        )
        assert clean.metrics == {"exact_match,get-answer": 1.0, "acc,normalized": 1.0}, (doc.doc_id, clean)
        messy = task.score(doc, Response(text="Reasoning first.\n" + _messy(subtask, target)))
        assert messy.metrics["acc,normalized"] == 1.0, (doc.doc_id, _messy(subtask, target), messy)
        wrong = task.wrong_answer(doc, rng)
        scored = task.score(doc, Response(text=f"So the answer is {wrong}."))
        assert scored.metrics == {"exact_match,get-answer": 0.0, "acc,normalized": 0.0}, (wrong, target)


def test_bbh_extraction_details() -> None:
    assert bbh_extract("The answer is (A). Wait, no: the answer is (C).\nMore text") == "(C)"
    assert bbh_extract("no statement") is None
    assert bbh_normalize("date_understanding", "(B) 12/25/1937") == "(B)"
    assert bbh_normalize("word_sorting", "Apple, banana,  cherry.") == "apple banana cherry"
    assert bbh_normalize("dyck_languages", "] ) }") == "])}"
    assert bbh_normalize("object_counting", "eight") == "8"
    pattern, _ = LM_EVAL_FILTERS["bbh"]["get-answer"]
    # lm-eval's lookahead drops the final character, whatever it is.
    assert lm_eval_regex("so the answer is False", pattern) == "Fals"
