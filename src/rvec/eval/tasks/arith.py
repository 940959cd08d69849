"""``arith``: rvec's own verifiable in-domain task — seeded multi-step arithmetic word problems.

Every problem is a short story about one person's stock of items, changed by a sequence of events
(gets more, gives some away, buys packs of several, ends up with k times as many), then the question
"How many … now?". Its **level** is the number of arithmetic steps its written-out solution takes
(1–4), so a higher level is a longer chain of thought, not just bigger numbers. The gold solution
writes one step per line and ends in ``Answer: N``; SmolLM2's tokenizer splits numbers into single
digits, so such steps are learnable by a 135M model.

**Splits never share an item.** An item's split is a function of its arithmetic skeleton (start
value and events, not the names and nouns around them): ``sha256(skeleton) mod 100 < 20`` is test,
the rest is train. A generator for one split draws until it gets an item of that split, so train
and test are disjoint by construction, at any size and seed.

**Scoring** (the same code scores ``rvec eval`` and rewards GRPO in ``rvec pair``): the number after
the last ``Answer:`` when there is one, else the last number of the response (``acc,answer``, the
primary metric, lenient as GSM8K's last-number rule so models never trained on the format are
scored fairly), and ``acc,strict`` for a correct ``Answer: N`` line.

Example:
    >>> problem = generate_problem(random.Random(0), level=2)
    >>> problem.solution.endswith(f"Answer: {problem.answer}")
    True
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from rvec.errors import InvalidArgumentError
from rvec.eval.data import DataSource
from rvec.eval.presets import Preset
from rvec.eval.sandbox import Sandbox
from rvec.eval.scoring import extract_last_number, numbers_equal
from rvec.eval.tasks.base import Task, build_context, with_condition
from rvec.eval.tasks.gsm8k import wrong_number
from rvec.eval.types import Doc, GenerateRequest, Response, Scored

__all__ = [
    "LEVELS",
    "TEST_ITEMS_PER_LEVEL",
    "Arith",
    "ArithProblem",
    "arith_metrics",
    "generate_problem",
    "problems",
    "split_of",
]

LEVELS: tuple[int, ...] = (1, 2, 3, 4)
"""Difficulty levels: the number of arithmetic steps of the gold solution."""

TEST_ITEMS_PER_LEVEL = 250
"""Held-out items per level that ``rvec eval`` sees (the first ``--limit`` interleave the levels)."""

TEST_SEED = 20251
"""Seed of the held-out set: fixed, so every run evaluates the same items."""

_TEST_PERCENT = 20
_ANSWER = re.compile(r"Answer:\s*\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)")
_NAMES = (
    "Mia", "Tom", "Ava", "Leo", "Zoe", "Sam", "Ivy", "Max", "Eva", "Ben", "Lily", "Omar", "Nina", "Raj",
    "Emma", "Noah", "Sara", "Luis", "Anna", "Kofi",
)  # fmt: skip
_ITEMS = (
    "apples", "stickers", "marbles", "pencils", "coins", "cards", "books", "shells", "stamps", "beads",
    "cookies", "buttons", "crayons", "eggs", "candles", "tickets",
)  # fmt: skip


@dataclass(frozen=True)
class ArithProblem:
    """One problem: its question, the gold steps (one equation per step) and the answer."""

    level: int
    question: str
    steps: tuple[str, ...]
    answer: int
    skeleton: str
    """The arithmetic content alone (start value and events): what the split is decided on."""

    @property
    def solution(self) -> str:
        """The gold chain of thought: one step per line, then ``Answer: N``."""
        return "\n".join((*self.steps, f"Answer: {self.answer}"))


def split_of(skeleton: str) -> str:
    """``"test"`` or ``"train"``: a fixed function of the arithmetic skeleton (disjoint splits)."""
    bucket = int.from_bytes(hashlib.sha256(skeleton.encode()).digest()[:4], "big") % 100
    return "test" if bucket < _TEST_PERCENT else "train"


def generate_problem(rng: random.Random, *, level: int) -> ArithProblem:
    """One problem of ``level`` steps drawn from ``rng`` (any split).

    Raises:
        InvalidArgumentError: ``level`` is not one of :data:`LEVELS`.
    """
    if level not in LEVELS:
        raise InvalidArgumentError(f"arith level {level} is not one of {', '.join(map(str, LEVELS))}")
    while True:  # rarely more than one try: a draw is rejected only when no event fits
        problem = _draw(rng, level)
        if problem is not None:
            return problem


def problems(split: str, *, seed: int, levels: tuple[int, ...] = LEVELS) -> Iterator[ArithProblem]:
    """An endless, seeded stream of ``split`` problems, cycling through ``levels`` in turn.

    Raises:
        InvalidArgumentError: ``split`` is neither ``train`` nor ``test``, or a level is unknown.
    """
    if split not in ("train", "test"):
        raise InvalidArgumentError(f"arith split {split!r} is neither 'train' nor 'test'")
    for level in levels:
        generate_problem(random.Random(0), level=level)  # validates the level before any item
    rng = random.Random(f"arith/{split}/{seed}")
    seen: set[str] = set()
    while True:
        for level in levels:
            while True:
                problem = generate_problem(rng, level=level)
                if split_of(problem.skeleton) == split and problem.skeleton not in seen:
                    seen.add(problem.skeleton)
                    yield problem
                    break


def arith_metrics(text: str, gold: str) -> tuple[dict[str, float], str | None]:
    """``acc,answer`` (after the last ``Answer:``, else the last number) and ``acc,strict``.

    Returns:
        tuple: ``(metrics, extracted answer)``.
    """
    marked = _ANSWER.findall(text)
    strict = marked[-1].replace(",", "") if marked else None
    answer = strict if strict is not None else extract_last_number(text)
    return {
        "acc,answer": float(numbers_equal(answer, gold)),
        "acc,strict": float(numbers_equal(strict, gold)),
    }, answer


def _draw(rng: random.Random, level: int) -> ArithProblem | None:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    start = value = rng.randint(10, 99)
    sentences = [f"{name} has {value} {item}."]
    steps: list[str] = []
    events: list[str] = []
    while len(steps) < level:
        left = level - len(steps)
        kinds = ["add", "sub", *(["mul"] if value <= 200 else []), *(["packs"] if left >= 2 else [])]
        kind = rng.choice(kinds)
        if kind == "add":
            n = rng.randint(10, 99)
            sentences.append(rng.choice(("Then {name} gets {n} more.", "{name} finds {n} more.")))
            steps.append(f"{value} + {n} = {value + n}")
            value, event = value + n, f"+{n}"
        elif kind == "sub":
            if value < 11:
                return None
            n = rng.randint(10, min(value - 1, 99))
            sentences.append(rng.choice(("Then {name} gives away {n}.", "{name} loses {n} of them.")))
            steps.append(f"{value} - {n} = {value - n}")
            value, event = value - n, f"-{n}"
        elif kind == "mul":
            n = rng.randint(2, 5)
            sentences.append("Then {name} ends up with {n} times as many.")
            steps.append(f"{value} * {n} = {value * n}")
            value, event = value * n, f"*{n}"
        else:
            k, m = rng.randint(2, 9), rng.randint(10, 99)
            sentences.append(f"Then {{name}} buys {k} packs with {m} {item} in each pack.")
            steps += [f"{k} * {m} = {k * m}", f"{value} + {k * m} = {value + k * m}"]
            value, event, n = value + k * m, f"+{k}x{m}", k * m
        events.append(event)
        sentences[-1] = sentences[-1].format(name=name, n=n)
    sentences.append(f"How many {item} does {name} have now?")
    skeleton = f"L{level}:{start}:{','.join(events)}"
    return ArithProblem(level, " ".join(sentences), tuple(steps), value, skeleton)


class Arith(Task):
    """The held-out ``arith`` items: :data:`TEST_ITEMS_PER_LEVEL` per level, levels interleaved.

    ``arith`` mixes every level (item ``i`` has level ``LEVELS[i % 4]``); ``arith:L`` holds level
    ``L`` alone. doc_ids are stable: ``"<level>-<index within level>"``.
    """

    family = "arith"
    reference_url = "https://github.com/rvec/rvec/blob/main/src/rvec/eval/tasks/arith.py"
    question_field = "question"

    def __init__(self, level: int | None = None) -> None:
        self.levels = LEVELS if level is None else (level,)
        self.name = "arith" if level is None else f"arith:{level}"

    def docs(self, source: DataSource, *, limit: int | None = None) -> list[Doc]:
        del source  # generated, no data files: identical offline and online
        count = len(self.levels) * TEST_ITEMS_PER_LEVEL if limit is None else max(0, limit)
        return [_doc(self.name, i, p) for i, p in _held_out(self.levels, count)]

    def request(self, doc: Doc, preset: Preset, *, condition: str | None = None) -> GenerateRequest:
        """The question as the user turn (chat presets) or ``Q: … A:`` (raw presets)."""
        settings = preset.settings(self.family)
        question = with_condition(
            settings.template.format(question=doc.fields["question"]), preset, condition
        )
        messages, prompt = build_context(preset, settings, question=question)
        return GenerateRequest(messages, prompt, settings.stop, settings.max_new_tokens)

    def score(
        self, doc: Doc, response: Response, *, sandbox: Sandbox | None = None, preset: Preset | None = None
    ) -> Scored:
        """``acc,answer`` (primary under every preset) and ``acc,strict``."""
        gold = self.gold(doc)
        metrics, extracted = arith_metrics(response.text or "", gold)
        return Scored(metrics, self._primary(preset), extracted, gold)

    def gold(self, doc: Doc) -> str:
        return str(doc.fields["answer"])

    def wrong_answer(self, doc: Doc, rng: random.Random) -> str:
        return wrong_number(self.gold(doc), rng)


def _held_out(levels: tuple[int, ...], count: int) -> list[tuple[int, ArithProblem]]:
    """The first ``count`` held-out items with their index within their level, levels interleaved."""
    per_level = min(-(-count // len(levels)), TEST_ITEMS_PER_LEVEL)
    interleaved = [(i, _test_items(lv)[i]) for i in range(per_level) for lv in levels]
    return interleaved[:count]


_TEST_CACHE: dict[int, list[ArithProblem]] = {}


def _test_items(level: int) -> list[ArithProblem]:
    """The fixed held-out items of one level (each level its own stream, so adding a level never
    changes another level's items)."""
    if level not in _TEST_CACHE:
        stream = problems("test", seed=TEST_SEED, levels=(level,))
        _TEST_CACHE[level] = [next(stream) for _ in range(TEST_ITEMS_PER_LEVEL)]
    return _TEST_CACHE[level]


def _doc(task: str, index: int, problem: ArithProblem) -> Doc:
    fields = {
        "question": problem.question,
        "answer": problem.answer,
        "level": problem.level,
        "solution": problem.solution,
    }
    return Doc(task, f"{problem.level}-{index}", fields)
