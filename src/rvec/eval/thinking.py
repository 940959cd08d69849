"""Thinking models on the scoring side: read the answer after the closing think tag, count the rest.

A reasoning model writes ``<think> … </think>`` and then its answer. With thinking on (a preset's
``think``, :class:`ThinkSettings`), every generated response is split at the **last** closing tag:
the task scores only the text after it (leading whitespace removed, as lm-eval 0.4.13's
``postprocess_generated_text`` does), and the sample records whether the block closed and how many
characters (and, where the backend can count them, tokens) lie inside and outside it.

One deliberate difference from lm-eval: lm-eval scores the whole text of a generation that never
closes its think block; rvec scores it wrong (every metric 0) and counts it, since an answer that
may sit inside unfinished reasoning is not an answer.

Log-likelihood requests cannot think; :func:`check_thinking` refuses them before anything runs, as
lm-eval's ``HFLM.loglikelihood`` refuses them under ``enable_thinking``.

Example:
    >>> split = split_think("<think>2+2 is 4</think> The answer is 4.", "</think>")
    >>> (split.closed, split.answer, split.chars_inside)
    (True, 'The answer is 4.', 15)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rvec.errors import InvalidArgumentError
from rvec.eval.types import Response, Scored

__all__ = [
    "DEFAULT_END_TAG",
    "ThinkSettings",
    "ThinkSplit",
    "check_thinking",
    "split_think",
    "think_answer",
    "think_record",
    "think_summary",
    "unclosed_verdict",
]

DEFAULT_END_TAG = "</think>"
"""The closing tag of DeepSeek-R1, Qwen3 and their distillations."""

TokenCounter = Callable[[str], int]
"""Counts the tokens of a text with the model's tokenizer (a backend's ``count_tokens``)."""


@dataclass(frozen=True)
class ThinkSettings:
    """Thinking on: where the reasoning ends. A preset's (or a run's) ``think`` option.

    A plain frozen dataclass (pydantic validates it inside :class:`~rvec.eval.presets.Preset`), so
    that building one directly raises rvec's one-line error rather than a pydantic report.

    Args:
        end_tag (str, default "</think>"): The closing tag; the answer is read after its last
            occurrence.

    Raises:
        InvalidArgumentError: ``end_tag`` is empty or only whitespace.
    """

    end_tag: str = DEFAULT_END_TAG

    def __post_init__(self) -> None:
        if not self.end_tag.strip():
            raise InvalidArgumentError(
                f"think end tag {self.end_tag!r} is empty; pass the tag that closes the model's "
                f"reasoning, e.g. {DEFAULT_END_TAG!r}"
            )


@dataclass(frozen=True)
class ThinkSplit:
    """One response split at its closing think tag.

    ``answer`` is what the task scores: the text after the last tag, left-stripped; empty when the
    block never closed. ``thinking`` is everything before that tag (the whole text when unclosed).
    """

    closed: bool
    thinking: str
    answer: str

    @property
    def chars_inside(self) -> int:
        """Characters of the reasoning (the tag itself excluded)."""
        return len(self.thinking)

    @property
    def chars_outside(self) -> int:
        """Characters of the answer after the tag."""
        return len(self.answer)


def split_think(text: str, end_tag: str) -> ThinkSplit:
    """Split ``text`` at the last ``end_tag``.

    Args:
        text (str): The generated response.
        end_tag (str): The closing tag, e.g. ``"</think>"``.

    Returns:
        ThinkSplit: ``closed`` is whether the tag occurs at all.

    Example:
        >>> split_think("still thinking about it", "</think>").closed
        False
    """
    thinking, found, answer = text.rpartition(end_tag)
    if not found:
        return ThinkSplit(closed=False, thinking=text, answer="")
    return ThinkSplit(closed=True, thinking=thinking, answer=answer.lstrip())


def think_answer(response: Response, split: ThinkSplit) -> Response:
    """The response a task scores: the same response with only the answer part as its text."""
    return replace(response, text=split.answer)


def unclosed_verdict(scored: Scored) -> Scored:
    """The verdict on a response whose think block never closed: every metric 0, nothing extracted."""
    return Scored({metric: 0.0 for metric in scored.metrics}, scored.primary, None, scored.gold)


def think_record(
    split: ThinkSplit, count_tokens: TokenCounter | None = None, *, at_budget: bool = False
) -> dict[str, Any]:
    """The per-sample ``think`` fields of ``samples/<task>.jsonl``.

    Args:
        split (ThinkSplit): The response's split.
        count_tokens (TokenCounter | None, default None): The backend's tokenizer count; ``None``
            leaves the token fields ``null`` (a backend without ``count_tokens``).
        at_budget (bool, default False): The generation used its whole token budget (an unclosed
            block then ran out of tokens rather than stopping on its own).

    Returns:
        dict: ``closed``, ``chars_inside``, ``chars_outside``, ``tokens_inside``, ``tokens_outside``,
        ``at_budget``.
    """
    return {
        "closed": split.closed,
        "chars_inside": split.chars_inside,
        "chars_outside": split.chars_outside,
        "tokens_inside": count_tokens(split.thinking) if count_tokens is not None else None,
        "tokens_outside": count_tokens(split.answer) if count_tokens is not None else None,
        "at_budget": at_budget,
    }


def think_summary(records: Sequence[dict[str, Any]], settings: ThinkSettings) -> dict[str, Any]:
    """Per task key, for ``results.json``: the tag, how many blocks never closed, mean lengths.

    Args:
        records (Sequence[dict]): :func:`think_record` of every sample of the key.
        settings (ThinkSettings): The thinking settings of the run.

    Returns:
        dict: ``end_tag``, ``n``, ``unclosed``, ``unclosed_at_budget`` (of those, the ones that used
        the whole token budget), ``closed_rate``, ``mean_chars_inside``, ``mean_chars_outside``,
        ``mean_tokens_inside`` / ``mean_tokens_outside`` (``None`` when tokens were not counted).
    """
    n = len(records)

    def mean(field: str) -> float | None:
        values = [r[field] for r in records if r.get(field) is not None]
        return sum(values) / len(values) if values and len(values) == n else None

    unclosed = [r for r in records if not r["closed"]]
    return {
        "end_tag": settings.end_tag,
        "n": n,
        "unclosed": len(unclosed),
        "unclosed_at_budget": sum(bool(r.get("at_budget")) for r in unclosed),
        "closed_rate": (n - len(unclosed)) / n if n else None,
        "mean_chars_inside": mean("chars_inside"),
        "mean_chars_outside": mean("chars_outside"),
        "mean_tokens_inside": mean("tokens_inside"),
        "mean_tokens_outside": mean("tokens_outside"),
    }


def check_thinking(output_types: dict[str, str], *, preset: str, settings: ThinkSettings | None) -> None:
    """Refuse log-likelihood tasks when thinking is on (a choice's likelihood has no room to think).

    Args:
        output_types (dict[str, str]): Task name -> ``"generate"`` or ``"loglikelihood"`` under the
            preset.
        preset (str): The preset's name, for the message.
        settings (ThinkSettings | None): The thinking settings; ``None`` (off) accepts everything.

    Raises:
        InvalidArgumentError: thinking is on and a task is scored by log-likelihood.
    """
    if settings is None:
        return
    refused = [name for name, kind in output_types.items() if kind == "loglikelihood"]
    if refused:
        raise InvalidArgumentError(
            f"{', '.join(refused)} {'is' if len(refused) == 1 else 'are'} scored by log-likelihood under "
            f"preset {preset!r}, which cannot think (think end tag {settings.end_tag!r}); drop thinking "
            "or evaluate generative tasks only"
        )
