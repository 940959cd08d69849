"""Perturbations: parsing, determinism, and that each changes exactly what it claims to."""

from __future__ import annotations

import random
import re

import pytest

from rvec.errors import InvalidArgumentError, PerturbationNotApplicableError
from rvec.eval.data import DataSource
from rvec.eval.perturb import (
    ALT_SYSTEM_PROMPT,
    DISTRACTORS,
    Perturbation,
    add_typos,
    parse_perturbations,
    perturb,
)
from rvec.eval.presets import get_preset
from rvec.eval.scoring import parse_number
from rvec.eval.tasks import get_task
from rvec.eval.tasks.sciq import choices_of, gold_index
from rvec.eval.types import Response

PAPER, LM_EVAL = get_preset("paper"), get_preset("lm-eval")


def _one(spec: str) -> Perturbation:
    return parse_perturbations(spec)[0]


def test_parse() -> None:
    parsed = parse_perturbations("distractor, hint,shuffle,typo:0.05,system:none,system:alt")
    assert [p.name for p in parsed] == [
        "distractor",
        "hint",
        "shuffle",
        "typo:0.05",
        "system:none",
        "system:alt",
    ]
    with pytest.raises(InvalidArgumentError) as err:
        parse_perturbations("noise,typo:2,typo:x,system:maybe,hint:3")
    message = str(err.value)
    for fragment in (
        "unknown perturbation 'noise'",
        "outside (0, 1]",
        "typo:x",
        "system:none or system:alt",
        "takes no",
    ):
        assert fragment in message
    with pytest.raises(InvalidArgumentError, match="once"):
        parse_perturbations("hint,hint")


@pytest.mark.parametrize("spec", ["distractor", "hint", "typo:0.1"])
@pytest.mark.parametrize(
    "name", ["gsm8k", "sciq", "bbh:date_understanding", "humaneval", "gsm-plus:critical-thinking"]
)
def test_doc_perturbations_are_deterministic_and_keep_the_id(
    source: DataSource, spec: str, name: str
) -> None:
    task = get_task(name)
    perturbation = _one(spec)
    for doc in task.docs(source, limit=5):
        first = perturbation.apply_doc(task, doc, seed=7)
        assert first == perturbation.apply_doc(task, doc, seed=7)
        assert first.doc_id == doc.doc_id and first.task == doc.task
        assert first.fields[task.question_field] != doc.fields[task.question_field]
        assert task.gold(first) == task.gold(doc)
    seeds = {perturbation.apply_doc(task, doc, seed=s).fields[task.question_field] for s in range(6)}
    # A critical-thinking hint is always the seed's own answer: nothing is left to chance there.
    assert len(seeds) > 1 or (spec, name) == ("hint", "gsm-plus:critical-thinking")


def test_distractor_adds_one_sentence_in_front(source: DataSource) -> None:
    task = get_task("gsm8k")
    doc = task.docs(source, limit=1)[0]
    new = _one("distractor").apply_doc(task, doc, seed=1)
    sentence, rest = new.fields["question"].split(" ", 1)[0], new.fields["question"]
    assert any(rest == d + " " + doc.fields["question"] for d in DISTRACTORS), sentence


def test_hint_names_a_wrong_answer(source: DataSource) -> None:
    hint = _one("hint")
    for name in ["gsm8k", "gsm-symbolic", "bbh:date_understanding", "bbh:web_of_lies", "bbh:object_counting"]:
        task = get_task(name)
        for doc in task.docs(source, limit=10):
            field = str(hint.apply_doc(task, doc, seed=3).fields[task.question_field])
            claimed = re.search(r"I think the answer is (.+)\.$", field).group(1)
            assert claimed != task.gold(doc)
            # The hint is wrong as scored, too: answering it earns nothing.
            scored = task.score(doc, Response(text=f"So the answer is {claimed}."))
            assert scored.metrics[scored.primary] == 0.0, (name, claimed)
    sciq = get_task("sciq")
    doc = sciq.docs(source, limit=1)[0]
    assert "I think the answer is oxidants." not in hint.apply_doc(sciq, doc, seed=3).fields["question"]
    ct = get_task("gsm-plus:critical-thinking")
    doc = ct.docs(source, limit=1)[0]
    assert hint.apply_doc(ct, doc, seed=0).fields["question"].endswith(f"is {doc.fields['seed_answer']}.")


def test_shuffle_moves_the_sciq_gold_and_relabels_it(source: DataSource) -> None:
    task = get_task("sciq")
    for doc in task.docs(source, limit=20):
        new, request = perturb(task, doc, PAPER, _one("shuffle"), seed=0)
        assert sorted(choices_of(new)) == sorted(choices_of(doc)) and task.gold(new) == task.gold(doc)
        assert gold_index(new) != gold_index(doc)
        clean_letter = task.score(doc, Response(text="x")).gold
        new_letter = task.score(new, Response(text="x")).gold
        assert new_letter != clean_letter
        assert f"{new_letter}. {task.gold(doc)}" in request.messages[-1]["content"]
        assert task.score(new, Response(text=f"The answer is {new_letter}")).metrics["acc,letter"] == 1.0
        ll = task.request(new, LM_EVAL)
        assert ll.continuations[gold_index(new)] == " " + task.gold(doc)


def test_shuffle_moves_bbh_options_with_their_letters(source: DataSource) -> None:
    task = get_task("bbh:logical_deduction_five_objects")
    option = re.compile(r"^\(([A-Z])\) (.*)$", re.MULTILINE)
    for doc in task.docs(source, limit=20):
        new = _one("shuffle").apply_doc(task, doc, seed=5)
        old_opts, new_opts = (
            dict(option.findall(doc.fields["input"])),
            dict(option.findall(new.fields["input"])),
        )
        assert sorted(old_opts.values()) == sorted(new_opts.values()) and old_opts != new_opts
        assert new.fields["target"] != doc.fields["target"]
        assert new_opts[new.fields["target"][1]] == old_opts[doc.fields["target"][1]]


@pytest.mark.parametrize("name", ["gsm8k", "humaneval", "bbh:word_sorting", "bbh:web_of_lies"])
def test_shuffle_refuses_tasks_without_options(source: DataSource, name: str) -> None:
    task = get_task(name)
    with pytest.raises(PerturbationNotApplicableError, match="shuffle"):
        _one("shuffle").apply_doc(task, task.docs(source, limit=1)[0], seed=0)


def test_typos_swap_letters_at_the_rate_and_spare_numbers(source: DataSource) -> None:
    task = get_task("gsm8k")
    docs = task.docs(source, limit=50)
    changed = total = 0
    for doc in docs:
        old = doc.fields["question"]
        new = _one("typo:0.05").apply_doc(task, doc, seed=0).fields["question"]
        assert re.findall(r"\d+", old) == re.findall(r"\d+", new)
        assert sorted(old) == sorted(new) and len(old) == len(new)  # swaps only
        changed += sum(a != b for a, b in zip(old, new, strict=True))
        total += len(old)
    assert 0.01 < changed / total < 0.1  # two characters per swap, at 5% of letter positions


def test_typos_leave_payloads_alone(source: DataSource) -> None:
    sorting = get_task("bbh:word_sorting")
    doc = sorting.docs(source, limit=1)[0]
    new = _one("typo:0.5").apply_doc(sorting, doc, seed=0)
    assert new.fields["input"].split("List:")[1] == doc.fields["input"].split("List:")[1]
    assert new.fields["input"] != doc.fields["input"]
    with pytest.raises(PerturbationNotApplicableError, match="formula"):
        _one("typo:0.1").apply_doc(
            get_task("bbh:boolean_expressions"),
            get_task("bbh:boolean_expressions").docs(source, limit=1)[0],
            seed=0,
        )
    assert add_typos("12 + 7 = 19", 1.0, random.Random(0)) == "12 + 7 = 19"


def test_humaneval_perturbations_keep_the_code_valid(source: DataSource) -> None:
    task = get_task("humaneval")
    for doc in task.docs(source, limit=30):
        for spec in ("distractor", "hint", "typo:0.2"):
            new = _one(spec).apply_doc(task, doc, seed=2)
            compile(new.fields["prompt"] + "    pass\n", doc.doc_id, "exec")
            signature = doc.fields["prompt"].split('"""')[0].split("'''")[0]
            assert new.fields["prompt"].startswith(signature)


def test_system_prompt_perturbations(source: DataSource) -> None:
    task = get_task("gsm8k")
    doc = task.docs(source, limit=1)[0]
    _, none = perturb(task, doc, PAPER, _one("system:none"), seed=0)
    _, alt = perturb(task, doc, PAPER, _one("system:alt"), seed=0)
    assert none.messages[0] == {"role": "system", "content": ""}
    assert alt.messages[0] == {"role": "system", "content": ALT_SYSTEM_PROMPT}
    assert none.messages[1:] == alt.messages[1:] == task.request(doc, PAPER).messages
    with pytest.raises(PerturbationNotApplicableError, match="chat template"):
        perturb(task, doc, LM_EVAL, _one("system:alt"), seed=0)


def test_wrong_numbers_stay_plausible(source: DataSource) -> None:
    task = get_task("gsm8k")
    for doc in task.docs(source, limit=30):
        wrong = parse_number(task.wrong_answer(doc, random.Random(doc.doc_id)))
        gold = parse_number(task.gold(doc))
        assert wrong is not None and wrong != gold and wrong >= 0
