"""The task contract, and the prompt layout helpers every task shares.

A :class:`Task` turns raw rows into :class:`~rvec.eval.types.Doc`s, a doc plus a
:class:`~rvec.eval.presets.Preset` into a request, and a response into a
:class:`~rvec.eval.types.Scored`. It also exposes the few hooks programmatic perturbations need
(where the question text is, what a wrong answer looks like, how options are shuffled).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeVar

from rvec.errors import PerturbationNotApplicableError
from rvec.eval.data import DataSource
from rvec.eval.presets import Preset, TaskSettings, get_preset
from rvec.eval.sandbox import Sandbox
from rvec.eval.types import Doc, GenerateRequest, LoglikelihoodRequest, Message, OutputType, Response, Scored

__all__ = ["Task", "build_context", "with_condition"]

T = TypeVar("T")

Shot = tuple[str, str]
"""A few-shot exemplar as (rendered question, answer)."""


class Task(ABC):
    """One benchmark (or one BBH subtask / GSM-Plus perturbation type).

    Subclasses set ``name``, ``family`` (the preset settings key), ``reference_url`` and
    ``question_field`` (the doc field holding the natural-language question).
    """

    name: str
    family: str
    reference_url: str
    question_field: str = "question"
    text_separator: str = " "
    """Joins a perturbation's sentence to the question (BBH uses a newline)."""

    # ------------------------------------------------------------------------------ contract
    def output_type(self, preset: Preset) -> OutputType:
        """``"generate"`` or ``"loglikelihood"``: what :meth:`request` returns under ``preset``."""
        return preset.settings(self.family).output_type

    @abstractmethod
    def docs(self, source: DataSource, *, limit: int | None = None) -> list[Doc]:
        """The task's items in file order (the first ``limit`` when given).

        Raises:
            DataNotFoundError: the dataset cannot be found.
        """

    @abstractmethod
    def request(
        self, doc: Doc, preset: Preset, *, condition: str | None = None
    ) -> GenerateRequest | LoglikelihoodRequest:
        """The request for one doc under ``preset`` and prompt ``condition`` (``None`` = default).

        Raises:
            InvalidArgumentError: ``condition`` is not allowed by the preset.
        """

    @abstractmethod
    def score(
        self, doc: Doc, response: Response, *, sandbox: Sandbox | None = None, preset: Preset | None = None
    ) -> Scored:
        """Score one response. ``preset`` (default ``paper``) picks the primary metric; every
        metric the response allows is computed either way."""

    def score_many(
        self,
        docs: Sequence[Doc],
        responses: Sequence[Response],
        *,
        sandbox: Sandbox | None = None,
        preset: Preset | None = None,
    ) -> list[Scored]:
        """Score many responses; tasks that execute code override it to run programs in parallel."""
        return [
            self.score(d, r, sandbox=sandbox, preset=preset) for d, r in zip(docs, responses, strict=True)
        ]

    def paired_doc_id(self, doc: Doc) -> str | None:
        """The GSM8K test doc_id this item was derived from, for adversarial pairing (else ``None``)."""
        return None

    # ----------------------------------------------------------------------- perturbation hooks
    def gold(self, doc: Doc) -> str:
        """The reference answer as text."""
        raise NotImplementedError

    def wrong_answer(self, doc: Doc, rng: random.Random) -> str:
        """A plausible but wrong answer, for the misleading-hint perturbation.

        Raises:
            PerturbationNotApplicableError: the task has no notion of a wrong answer.
        """
        raise PerturbationNotApplicableError(
            f"hint does not apply to {self.name!r}; drop it for this task",
            perturbation="hint",
            task=self.name,
        )

    def hint_sentence(self, doc: Doc, rng: random.Random) -> str:
        """The misleading hint added to the question."""
        return f"I think the answer is {self.wrong_answer(doc, rng)}."

    def add_text(self, doc: Doc, sentence: str, *, where: str) -> Doc:
        """A copy of ``doc`` with ``sentence`` before (``where="start"``) or after the question."""
        text = str(doc.fields[self.question_field])
        joined = (
            sentence + self.text_separator + text
            if where == "start"
            else text + self.text_separator + sentence
        )
        return with_fields(doc, {self.question_field: joined})

    def map_prose(self, doc: Doc, fn: Any) -> Doc:
        """A copy of ``doc`` with ``fn`` applied to the question's prose (typos go there only)."""
        return with_fields(doc, {self.question_field: fn(str(doc.fields[self.question_field]))})

    def shuffle_options(self, doc: Doc, rng: random.Random) -> Doc:
        """A copy of ``doc`` with its answer options reordered and the gold re-labelled.

        Raises:
            PerturbationNotApplicableError: the task has no answer options.
        """
        raise PerturbationNotApplicableError(
            f"shuffle does not apply to {self.name!r} (no answer options); drop it for this task",
            perturbation="shuffle",
            task=self.name,
        )

    def _primary(self, preset: Preset | None) -> str:
        return (preset or get_preset("paper")).settings(self.family).primary_metric


def with_fields(doc: Doc, updates: dict[str, Any]) -> Doc:
    """A copy of ``doc`` (same task and doc_id) with some fields replaced."""
    return replace(doc, fields={**doc.fields, **updates})


def with_condition(text: str, preset: Preset, condition: str | None) -> str:
    """Append the condition's instruction (e.g. "Think step by step.") to a user turn."""
    instruction = preset.condition_text(condition)
    return text + preset.condition_separator + instruction if instruction else text


def build_context(
    preset: Preset,
    settings: TaskSettings,
    *,
    question: str,
    shots: Sequence[Shot] = (),
    description: str = "",
) -> tuple[tuple[Message, ...] | None, str | None]:
    """Lay out description, shots and question the way lm-eval 0.4.13's ``fewshot_context`` does.

    Raw (no chat template): ``description + Σ(q + target_delimiter + a + fewshot_delimiter) + question``.
    Chat with ``fewshot_as_multiturn``: a system turn (preset system prompt, then the description,
    joined by the fewshot delimiter), a user/assistant pair per shot, then the question as a user turn.
    Chat without it: the shots and question collapse into one user turn, as lm-eval does.

    Returns:
        tuple: ``(messages, None)`` under a chat template, else ``(None, prompt)``.
    """
    if not preset.chat_template:
        body = "".join(q + settings.target_delimiter + a + settings.fewshot_delimiter for q, a in shots)
        return None, description + body + question
    system = _join_nonempty(preset.system_prompt, description, settings.fewshot_delimiter)
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    if preset.fewshot_as_multiturn:
        for q, a in shots:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        messages.append({"role": "user", "content": question})
    else:
        body = "".join(q + settings.target_delimiter + a + settings.fewshot_delimiter for q, a in shots)
        messages.append({"role": "user", "content": body + question})
    return tuple(messages), None


def _join_nonempty(first: str | None, second: str, delimiter: str) -> str:
    if not first:
        return second
    if not second:
        return first
    # lm-eval's maybe_delimit: no delimiter when either side already has whitespace at the seam.
    return first + second if first[-1].isspace() or second[0].isspace() else first + delimiter + second


def take(rows: list[T], limit: int | None) -> list[tuple[int, T]]:
    """The first ``limit`` rows (all when ``None``) with their row index."""
    indexed = list(enumerate(rows))
    return indexed if limit is None else indexed[: max(0, limit)]
