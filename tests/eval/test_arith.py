"""The ``arith`` task: seeded generator, disjoint splits, verifier, levels, and one scorer for eval
and for GRPO's reward."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from rvec.errors import InvalidArgumentError
from rvec.eval.data import DataSource
from rvec.eval.presets import PRESETS
from rvec.eval.tasks.arith import LEVELS, arith_metrics, generate_problem, problems, split_of
from rvec.eval.tasks.registry import expand_task_names, get_task
from rvec.eval.types import Response
from rvec.pair.data import training_set


def take(split: str, seed: int, n: int, levels=LEVELS):
    return list(itertools.islice(problems(split, seed=seed, levels=levels), n))


def test_generator_is_deterministic_per_seed() -> None:
    assert take("train", 3, 200) == take("train", 3, 200)
    assert [p.question for p in take("train", 3, 50)] != [p.question for p in take("train", 4, 50)]


def test_train_and_test_never_share_an_item() -> None:
    train = {p.skeleton for seed in range(3) for p in take("train", seed, 3000)}
    test = {p.skeleton for p in take("test", 0, 3000)}
    assert len(test) == 3000 and not train & test
    assert all(split_of(s) == "train" for s in train) and all(split_of(s) == "test" for s in test)


def test_eval_items_come_from_the_test_split_and_are_stable() -> None:
    docs = get_task("arith").docs(DataSource(None))
    assert len(docs) == 1000 and len({d.doc_id for d in docs}) == 1000
    train = {p.question for p in take("train", 0, 5000)}
    assert not {d.fields["question"] for d in docs} & train
    assert [d.doc_id for d in docs[:8]] == ["1-0", "2-0", "3-0", "4-0", "1-1", "2-1", "3-1", "4-1"]
    assert get_task("arith").docs(DataSource(None), limit=8) == docs[:8]
    level3 = get_task("arith:3").docs(DataSource(None), limit=5)
    assert [d.fields for d in level3] == [d.fields for d in docs if d.fields["level"] == 3][:5]


@pytest.mark.parametrize("level", LEVELS)
def test_level_is_the_number_of_steps(level: int) -> None:
    rng = random.Random(level)
    for _ in range(200):
        p = generate_problem(rng, level=level)
        assert len(p.steps) == level
        lines = p.solution.splitlines()
        assert lines[-1] == f"Answer: {p.answer}"
        for step in p.steps:  # every written step is true arithmetic
            a, op, b, eq, c = step.split()
            assert eq == "=" and {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[
                op
            ] == int(c)
        assert int(p.steps[-1].split()[-1]) == p.answer and p.answer >= 0


def test_unknown_level_and_split_are_one_line_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="level 7"):
        generate_problem(random.Random(0), level=7)
    with pytest.raises(InvalidArgumentError, match="split 'dev'"):
        next(problems("dev", seed=0))


def test_verifier_accepts_the_gold_and_rejects_perturbed_answers() -> None:
    for p in take("test", 1, 100):
        gold = str(p.answer)
        assert arith_metrics(p.solution, gold)[0] == {"acc,answer": 1.0, "acc,strict": 1.0}
        for wrong in (p.answer + 1, p.answer - 1, p.answer * 10):
            text = re.sub(r"Answer: \d+$", f"Answer: {wrong}", p.solution)
            assert arith_metrics(text, gold)[0] == {"acc,answer": 0.0, "acc,strict": 0.0}
        # the last "Answer:" wins over numbers after it; without the marker, the last number counts
        assert arith_metrics(f"Answer: {p.answer} (steps 1 2 3)", gold)[0]["acc,answer"] == 1.0
        assert arith_metrics(f"so it is {p.answer}.", gold)[0] == {"acc,answer": 1.0, "acc,strict": 0.0}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_arith_is_an_eval_task_under_every_preset(preset: str) -> None:
    task = get_task("arith")
    doc = task.docs(DataSource(None), limit=1)[0]
    request = task.request(doc, PRESETS[preset])
    text = request.prompt if request.prompt is not None else request.messages[-1]["content"]
    assert doc.fields["question"] in text
    scored = task.score(doc, Response(text=doc.fields["solution"]), preset=PRESETS[preset])
    assert scored.primary == "acc,answer" and scored.metrics["acc,answer"] == 1.0
    assert expand_task_names("arith,arith:4") == ["arith", "arith:4"]


def test_grpo_reward_is_the_eval_scorer() -> None:
    training = training_set("arith")
    task = get_task("arith")
    for item in training.items(40, seed=0):
        for text in (item.solution, item.solution.replace("Answer:", "Answer: 1"), "no idea"):
            scored = task.score(item.doc, Response(text=text), preset=PRESETS["paper"])
            assert training.reward(item.doc, text) == scored.metrics[scored.primary]
        request = task.request(item.doc, PRESETS["paper"])
        assert item.prompt == request.messages  # trained on the very prompt eval sends
