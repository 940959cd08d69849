"""The shape of an evaluation preset: :class:`TaskSettings` per task family and the :class:`Preset`.

The registered presets (the data) are in :mod:`rvec.eval.presets`, which re-exports both classes;
a run's changes to a preset (token budget, sampling, thinking, chat-template switches) are
:mod:`rvec.eval.overrides`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rvec.errors import InvalidArgumentError, UnknownNameError
from rvec.eval.decoding import Sampling
from rvec.eval.thinking import ThinkSettings

__all__ = ["Preset", "TaskSettings"]


class TaskSettings(BaseModel):
    """How one task family is prompted and scored under a preset.

    Templates are :meth:`str.format` strings over the doc's fields (values are never re-formatted,
    so braces in questions are safe).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    output_type: Literal["generate", "loglikelihood"]
    layout: Literal["paper", "lm-eval"] = "lm-eval"
    """``paper``: instruction-style turns and extracted answers; ``lm-eval``: lm-eval's exact layout."""
    template: str
    """User turn (chat) or ``doc_to_text`` (raw), before any condition instruction."""
    max_new_tokens: int = 0
    stop: tuple[str, ...] = ()
    shots: int = 0
    instruction: str = ""
    """Task instruction the template places (HumanEval and SciQ under ``paper``)."""
    target_delimiter: str = " "
    """Between a shot's question and its answer, and before SciQ continuations (lm-eval)."""
    fewshot_delimiter: str = "\n\n"
    """After each shot's answer in a raw (non-chat) prompt (lm-eval)."""
    primary_metric: str
    """The metric key of :class:`~rvec.eval.types.Scored` used for statistics."""
    answer_pattern: str = ""
    """Regex (group 1) read when a math response has no ``\\boxed{}`` (``math_verify,answer``)."""
    math_verify: bool = False
    """GSM-style tasks: also judge the answer with math-verify (``math_verify,answer``)."""
    compare: tuple[str, str] | None = None
    """Two metrics whose per-item disagreements ``results.json`` counts (``rvec.disagreements``)."""


class Preset(BaseModel):
    """A named, versioned evaluation protocol; parse it once, pass it down typed.

    Args:
        name (str): Registry key, e.g. ``"paper"``.
        version (int): Bumped on any change; part of cache keys.
        chat_template (bool): Requests carry chat ``messages`` (True) or a raw ``prompt`` (False).
        fewshot_as_multiturn (bool): Shots become user/assistant turns (lm-eval's flag of that name).
        system_prompt (str | None): System turn; ``None`` leaves the chat template's default.
        conditions (dict[str, str]): Allowed prompt conditions -> instruction added to the user turn.
        sciq_shuffle_seed (int): Seed of the per-item option order of SciQ under letter answering.
        tasks (dict[str, TaskSettings]): Settings per task family (``gsm8k``, ``humaneval``,
            ``sciq``, ``bbh``, ``arith``, ``math500``, ``aime24``); the adversarial GSM tasks use
            ``gsm8k``'s.
        think (ThinkSettings | None): Thinking on (answers read after the closing tag) or off.
            Scoring only: the requests are the same either way.
        sampling (Sampling | None): Drawn responses (samples, temperature, top-p); ``None`` is
            greedy. No registered preset samples: a run sets it (:mod:`rvec.eval.overrides`).
        chat_template_args (dict): Keyword arguments every chat request passes to the chat template
            (``{"enable_thinking": True}``); empty for every registered preset.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int
    description: str
    reference_url: str
    chat_template: bool
    fewshot_as_multiturn: bool
    system_prompt: str | None = None
    conditions: dict[str, str]
    condition_separator: str = "\n\n"
    sciq_shuffle_seed: int = 1234
    tasks: dict[str, TaskSettings]
    think: ThinkSettings | None = None
    sampling: Sampling | None = None
    chat_template_args: dict[str, str | bool | int | float | None] = Field(default_factory=dict)

    def settings(self, family: str) -> TaskSettings:
        """Return the settings of one task family.

        Raises:
            UnknownNameError: the preset has no settings for ``family``.
        """
        if family not in self.tasks:
            valid = sorted(self.tasks)
            raise UnknownNameError(
                f"preset {self.name!r} has no settings for task family {family!r}; valid: {', '.join(valid)}",
                name=family,
                valid=valid,
            )
        return self.tasks[family]

    def condition_text(self, condition: str | None) -> str:
        """The instruction of ``condition`` (``None`` = the first, default condition).

        Raises:
            InvalidArgumentError: the preset does not allow ``condition``.
        """
        if condition is None:
            condition = next(iter(self.conditions))
        if condition not in self.conditions:
            raise InvalidArgumentError(
                f"condition {condition!r} is not allowed by preset {self.name!r}; "
                f"use one of: {', '.join(self.conditions)}"
            )
        return self.conditions[condition]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of every field, for ``results.json`` and study cell keys.

        ``sampling`` and ``chat_template_args`` appear only when set: they came after the first run
        folders, whose cell keys hash this dict, and a greedy preset without switches keeps its keys.
        """
        data = self.model_dump(mode="json")
        for added in ("sampling", "chat_template_args"):
            if not data[added]:
                del data[added]
        return data
