"""Seeded programmatic perturbations, applicable to every task where they make sense.

=================  ===========================================================  =========
name               effect                                                       applies to
=================  ===========================================================  =========
``distractor``     an irrelevant sentence before the question                   the Doc
``hint``           "I think the answer is X." after it, X wrong (from the gold)  the Doc
``shuffle``        options reordered so the gold moves, gold re-labelled         the Doc
``typo:<rate>``    adjacent letters swapped in words, at ``rate`` per position   the Doc
``system:none``    an explicitly empty system turn (replaces a template default) the request
``system:alt``     :data:`ALT_SYSTEM_PROMPT` as the system turn                  the request
=================  ===========================================================  =========

Doc perturbations return a new :class:`~rvec.eval.types.Doc` with the same ``doc_id``, so clean and
perturbed scores pair item by item; the perturbed doc must also be the one scored (``shuffle``
moves the gold). Request perturbations rewrite the chat messages. Everything is deterministic in
``(seed, task name, doc_id, perturbation name)``.

Example:
    >>> task = get_task("gsm8k")
    >>> doc, request = perturb(task, clean_doc, get_preset("paper"), parse_perturbations("hint")[0], seed=0)
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, replace

from rvec.errors import InvalidArgumentError, PerturbationNotApplicableError
from rvec.eval.presets import Preset
from rvec.eval.tasks.base import Task
from rvec.eval.types import Doc, Message, Request

__all__ = [
    "ALT_SYSTEM_PROMPT",
    "DISTRACTORS",
    "Perturbation",
    "add_typos",
    "parse_perturbations",
    "perturb",
]

ALT_SYSTEM_PROMPT = (
    "You are a terse assistant. Answer as briefly as possible and do not explain your reasoning unless asked."
)
"""The alternative system prompt of ``system:alt``: it pushes against long reasoning on purpose."""

DISTRACTORS: tuple[str, ...] = (
    "The library on Elm Street was repainted last spring.",
    "Maria's cousin owns 3 bicycles and a small red kayak.",
    "The weather forecast for the weekend predicts light rain in the afternoon.",
    "A nearby bakery sells 12 kinds of bread on Saturdays.",
    "The town's football team won its last 4 home games.",
    "Tom's neighbour recently adopted a grey cat named Pepper.",
    "The train to the coast leaves every 45 minutes.",
    "An old oak tree in the park is said to be 200 years old.",
    "The museum added a new exhibit about ancient pottery this month.",
    "Sara usually drinks 2 cups of tea before starting work.",
)
"""Irrelevant sentences (some with numbers, as in GSM-IC) for ``distractor``."""

_KINDS = ("distractor", "hint", "shuffle", "typo", "system")
_SYSTEM_VARIANTS = ("none", "alt")
_TYPO_WORD = re.compile(r"^([\"'(]?)([A-Za-z]{4,})([.,;:!?)\"']?)$")


@dataclass(frozen=True)
class Perturbation:
    """One parsed perturbation; ``name`` is its canonical spelling (``"typo:0.05"``)."""

    kind: str
    rate: float | None = None
    variant: str | None = None

    @property
    def name(self) -> str:
        if self.kind == "typo":
            return f"typo:{self.rate:g}"
        if self.kind == "system":
            return f"system:{self.variant}"
        return self.kind

    def apply_doc(self, task: Task, doc: Doc, *, seed: int) -> Doc:
        """The perturbed doc (same ``doc_id``); request-level perturbations return ``doc`` as is.

        Raises:
            PerturbationNotApplicableError: the task has nothing this perturbation can change.
        """
        rng = _rng(seed, task.name, doc.doc_id, self.name)
        if self.kind == "distractor":
            return task.add_text(doc, rng.choice(DISTRACTORS), where="start")
        if self.kind == "hint":
            return task.add_text(doc, task.hint_sentence(doc, rng), where="end")
        if self.kind == "shuffle":
            return task.shuffle_options(doc, rng)
        if self.kind == "typo":
            rate = self.rate or 0.0
            return task.map_prose(doc, lambda text: add_typos(text, rate, rng))
        return doc

    def apply_request(self, request: Request, *, task: str = "?") -> Request:
        """The request with its system turn replaced (``system:*``); others return it unchanged.

        Raises:
            PerturbationNotApplicableError: a ``system:*`` perturbation on a raw-prompt request.
        """
        if self.kind != "system":
            return request
        if request.messages is None:
            raise PerturbationNotApplicableError(
                f"{self.name} needs a chat template but {task!r} sends a raw prompt under this preset; "
                "use a chat preset or drop it",
                perturbation=self.name,
                task=task,
            )
        content = "" if self.variant == "none" else ALT_SYSTEM_PROMPT
        turns: tuple[Message, ...] = tuple(m for m in request.messages if m["role"] != "system")
        return replace(request, messages=({"role": "system", "content": content}, *turns))


def perturb(
    task: Task,
    doc: Doc,
    preset: Preset,
    perturbation: Perturbation,
    *,
    seed: int,
    condition: str | None = None,
) -> tuple[Doc, Request]:
    """Apply one perturbation and build the request: the one call a runner needs.

    Args:
        task (Task): The task the doc belongs to.
        doc (Doc): The clean doc.
        preset (Preset): The preset requests are built with.
        perturbation (Perturbation): From :func:`parse_perturbations`.
        seed (int): Study seed; with task, doc_id and perturbation it fixes every random choice.
        condition (str | None, default None): Prompt condition.

    Returns:
        tuple[Doc, Request]: The doc to score against and the request to send.

    Raises:
        PerturbationNotApplicableError: the perturbation cannot change this task's items.
    """
    new_doc = perturbation.apply_doc(task, doc, seed=seed)
    request = task.request(new_doc, preset, condition=condition)
    return new_doc, perturbation.apply_request(request, task=task.name)


def parse_perturbations(spec: str) -> list[Perturbation]:
    """Parse ``"distractor,hint,typo:0.05,system:alt"``.

    Raises:
        InvalidArgumentError: any item is malformed; every problem is named in one message.
    """
    items = [p.strip() for p in spec.split(",") if p.strip()]
    parsed, problems = [], []
    for item in items:
        try:
            parsed.append(_parse_one(item))
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise InvalidArgumentError("; ".join(problems))
    names = [p.name for p in parsed]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"perturbations {spec!r}: each may appear once")
    return parsed


def _parse_one(item: str) -> Perturbation:
    kind, _, arg = item.partition(":")
    if kind not in _KINDS:
        raise ValueError(
            f"unknown perturbation {item!r}; valid: distractor, hint, shuffle, typo:<rate>, system:none|alt"
        )
    if kind == "typo":
        try:
            rate = float(arg)
        except ValueError:
            raise ValueError(f"{item!r}: typo needs a rate in (0, 1], e.g. typo:0.05") from None
        if not 0 < rate <= 1:
            raise ValueError(f"{item!r}: typo rate {rate} is outside (0, 1]; e.g. typo:0.05")
        return Perturbation("typo", rate=rate)
    if kind == "system":
        if arg not in _SYSTEM_VARIANTS:
            raise ValueError(f"{item!r}: use system:none or system:alt")
        return Perturbation("system", variant=arg)
    if arg:
        raise ValueError(f"{item!r}: {kind} takes no argument")
    return Perturbation(kind)


def add_typos(text: str, rate: float, rng: random.Random) -> str:
    """Swap adjacent, different letters inside plain words (4+ letters; no digits, code or tags).

    Each eligible position swaps with probability ``rate``; when none did, one is forced so the
    text always changes if it has any eligible word.
    """
    tokens = re.split(r"(\s+)", text)
    positions = [
        (ti, m.start(2) + ci)
        for ti, tok in enumerate(tokens)
        if (m := _TYPO_WORD.match(tok))
        for ci in range(len(m.group(2)) - 1)
        if m.group(2)[ci] != m.group(2)[ci + 1]
    ]
    if not positions:
        return text
    chosen = [p for p in positions if rng.random() < rate] or [rng.choice(positions)]
    chars = {ti: list(tokens[ti]) for ti, _ in chosen}
    last: tuple[int, int] | None = None
    for ti, ci in chosen:
        if last == (ti, ci - 1):
            continue  # overlapping swaps would undo each other
        chars[ti][ci], chars[ti][ci + 1] = chars[ti][ci + 1], chars[ti][ci]
        last = (ti, ci)
    for ti, cs in chars.items():
        tokens[ti] = "".join(cs)
    return "".join(tokens)


def _rng(seed: int, task: str, doc_id: str, name: str) -> random.Random:
    # sha256, not hash(): the same seed must give the same text in every process.
    digest = hashlib.sha256(f"{seed}|{task}|{doc_id}|{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))
