"""Training items for ``rvec pair``: prompts built exactly as ``rvec eval`` builds them, gold
solutions for SFT, and the eval task whose scorer is GRPO's reward.

Prompts come from the eval task's own ``request`` under the ``paper`` preset (chat template on,
condition ``plain``), so the pair is trained on the very text it is later evaluated on, and the
reward is the task's primary metric computed by the same code that scores ``rvec eval``.
"""

from __future__ import annotations

import itertools
import random
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rvec.errors import InvalidArgumentError
from rvec.eval.data import DataSource
from rvec.eval.presets import get_preset
from rvec.eval.tasks.arith import LEVELS, problems
from rvec.eval.tasks.base import Task
from rvec.eval.tasks.registry import get_task
from rvec.eval.types import Doc, Message, Response

__all__ = [
    "ArithTraining",
    "GSM8KTraining",
    "TrainingItem",
    "TrainingSet",
    "draw_grpo_items",
    "mix_worked_solutions",
    "training_set",
]

_GSM8K_CALC = re.compile(r"<<[^>]*>>")


@dataclass(frozen=True)
class TrainingItem:
    """One training prompt: its doc (for the reward), chat prompt, gold solution and level."""

    doc: Doc
    prompt: tuple[Message, ...]
    solution: str
    level: int | None = None


class TrainingSet(ABC):
    """The train split of one task, as ``rvec pair`` consumes it."""

    eval_task: str
    """The held-out eval task (its test split never shares an item with these training items)."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.preset = get_preset("paper")

    @abstractmethod
    def items(self, n: int, *, seed: int, levels: Sequence[int] | None = None) -> list[TrainingItem]:
        """``n`` training items, deterministic in ``seed`` (and ``levels`` where the task has them)."""

    def reward(self, doc: Doc, completion: str) -> float:
        """Correctness of a completion: the task's primary metric under the preset, as eval scores it."""
        scored = self.task.score(doc, Response(text=completion), preset=self.preset)
        return float(scored.metrics[scored.primary])

    def format_ok(self, completion: str) -> bool:
        """Whether the completion states its answer the way the gold solutions do."""
        return re.search(self.answer_statement, completion) is not None

    answer_statement: str = r"The answer is\s*-?[$0-9]"

    def bare_answer(self, doc: Doc) -> str:
        """The answer alone, stated as the gold solutions state it (no worked steps)."""
        return f"The answer is {self.task.gold(doc)}."

    def _prompt(self, doc: Doc) -> tuple[Message, ...]:
        request = self.task.request(doc, self.preset, condition=None)
        if request.messages is None:  # the paper preset is a chat preset; guard the invariant anyway
            raise InvalidArgumentError(
                f"preset {self.preset.name!r} gives {self.task.name!r} no chat messages"
            )
        return request.messages


class ArithTraining(TrainingSet):
    """Generated ``arith`` train items (levels cycle in turn; disjoint from the test split)."""

    eval_task = "arith"
    answer_statement = r"Answer:\s*-?[0-9]"

    def bare_answer(self, doc: Doc) -> str:
        return f"Answer: {self.task.gold(doc)}"

    def items(self, n: int, *, seed: int, levels: Sequence[int] | None = None) -> list[TrainingItem]:
        stream = problems("train", seed=seed, levels=tuple(levels) if levels else LEVELS)
        out = []
        for i, p in enumerate(itertools.islice(stream, n)):
            fields = {"question": p.question, "answer": p.answer, "level": p.level}
            doc = Doc(self.task.name, f"train-{seed}-{i}", fields)
            out.append(TrainingItem(doc, self._prompt(doc), p.solution, p.level))
        return out


class GSM8KTraining(TrainingSet):
    """GSM8K's train split in a seeded order (epochs repeat it); its test split is held out."""

    eval_task = "gsm8k"

    def __init__(self, task: Task, source: DataSource) -> None:
        super().__init__(task)
        self.source = source

    def items(self, n: int, *, seed: int, levels: Sequence[int] | None = None) -> list[TrainingItem]:
        if levels:
            raise InvalidArgumentError("gsm8k has no levels; drop --levels")
        rows: list[Mapping[str, Any]] = self.source.gsm8k("train")
        order = list(range(len(rows)))
        random.Random(f"gsm8k/train/{seed}").shuffle(order)
        out = []
        for i in (order[k % len(order)] for k in range(n)):
            doc = Doc(self.task.name, f"train-{i}", rows[i])
            out.append(TrainingItem(doc, self._prompt(doc), _gsm8k_solution(str(rows[i]["answer"]))))
        return out


def training_set(task: str, *, data_dir: Path | None = None) -> TrainingSet:
    """The training side of ``task`` (``arith`` or ``gsm8k``).

    Raises:
        InvalidArgumentError: the task cannot be trained on (no train split or gold solutions).
        DataNotFoundError: GSM8K's train split is neither in ``data_dir`` nor on the hub (raised
            when items are first drawn).
    """
    if task == "arith":
        return ArithTraining(get_task("arith"))
    if task == "gsm8k":
        return GSM8KTraining(get_task("gsm8k"), DataSource(data_dir))
    raise InvalidArgumentError(f"rvec pair cannot train on task {task!r}; use one of: arith, gsm8k")


def mix_worked_solutions(
    items: Sequence[TrainingItem], training: TrainingSet, *, worked_fraction: float, seed: int
) -> list[TrainingItem]:
    """SFT data where a seeded ``worked_fraction`` of the items keep their worked solution and the
    rest state only the answer — as in SFT corpora that mix worked solutions with short answers.

    A model fine-tuned on such a mix sometimes writes the steps and sometimes answers at once; on
    multi-step problems the first is right far more often, which is exactly what GRPO's reward sees
    and what a reasoning vector should carry (see docs/pair.md).
    """
    if worked_fraction >= 1.0:
        return list(items)
    rng = random.Random(f"worked/{seed}")
    return [
        it if rng.random() < worked_fraction else replace(it, solution=training.bare_answer(it.doc))
        for it in items
    ]


def draw_grpo_items(
    training: TrainingSet, *, n: int, seed: int, weights: dict[int, float] | None
) -> list[TrainingItem]:
    """GRPO's ``n`` prompts: other train items than SFT's (same split and distribution), levels
    drawn by the calibration ``weights`` when given."""
    if not weights:
        return training.items(n, seed=seed + 1)
    rng = random.Random(f"grpo-levels/{seed}")
    levels = [lv for lv, w in weights.items() if w > 0]
    drawn = rng.choices(levels, weights=[weights[lv] for lv in levels], k=n)
    pools = {
        lv: iter(training.items(drawn.count(lv), seed=(seed + 1) * 100 + lv, levels=[lv])) for lv in levels
    }
    return [next(pools[lv]) for lv in drawn]


def _gsm8k_solution(answer: str) -> str:
    """GSM8K's reference solution as a chat answer: calculator annotations removed, and the final
    ``#### N`` written as the paper preset's strict statement ``The answer is N.``."""
    body, _, final = answer.rpartition("####")
    return f"{_GSM8K_CALC.sub('', body).strip()}\nThe answer is {final.strip()}."
