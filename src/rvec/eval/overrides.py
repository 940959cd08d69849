"""A run's changes to a preset: token budget, sampling, thinking and chat-template switches.

``rvec eval`` flags (``--max-new-tokens``, ``--samples``, ``--temperature``, ``--top-p``, ``--think``,
``--think-end-tag``, ``--chat-template-arg``) and the same keys of a study become one
:class:`RunOverrides`, checked whole before any model loads, and :func:`apply_overrides` makes the
resolved preset. Everything it changes is recorded: in the preset's fields (``results.json``'s
``rvec.preset``, a study cell's key) and in its name, e.g.
``reasoning[max_new_tokens=4096,samples=8,temperature=0.6,top_p=0.95,think=</think>]``, which the
response cache keys on. Without overrides the preset comes back unchanged, and a budget alone
gives the name a study always gave it (``paper[max_new_tokens=64]``), so existing caches hold.

Example:
    >>> preset = apply_overrides(get_preset("reasoning"), RunOverrides(max_new_tokens=512))
    >>> preset.name, preset.settings("math500").max_new_tokens
    ('reasoning[max_new_tokens=512]', 512)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rvec.errors import InvalidArgumentError
from rvec.eval.decoding import Sampling, sampling_problems
from rvec.eval.preset_types import Preset
from rvec.eval.thinking import DEFAULT_END_TAG, ThinkSettings

__all__ = ["RunOverrides", "apply_overrides", "parse_template_args"]

TemplateValue = str | bool | int | float | None


@dataclass(frozen=True)
class RunOverrides:
    """What a run changes in its preset (every field's default changes nothing).

    Args:
        max_new_tokens (int | None, default None): Token budget of every generating task.
        samples (int, default 1): Responses drawn per item.
        temperature (float, default 0.0): Sampling temperature (0: greedy).
        top_p (float, default 1.0): Nucleus mass in (0, 1].
        think (bool, default False): Thinking on: the answer is read after the closing tag.
        think_end_tag (str | None, default None): The closing tag (default ``</think>``, or the
            preset's own); only with ``think``.
        chat_template_args (Mapping[str, TemplateValue], default {}): Passed to the chat template
            of every chat request (``{"enable_thinking": True}``).
    """

    max_new_tokens: int | None = None
    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    think: bool = False
    think_end_tag: str | None = None
    chat_template_args: Mapping[str, TemplateValue] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """Every problem, one sentence each (a study lists them all; the CLI joins them in one line)."""
        problems = []
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            problems.append(f"max_new_tokens {self.max_new_tokens}: the budget must be at least 1 token")
        problems += sampling_problems(self.samples, self.temperature, self.top_p)
        if self.think_end_tag is not None and not self.think:
            problems.append(
                f"think end tag {self.think_end_tag!r} without thinking: turn thinking on (--think, "
                "think: true) or drop the tag"
            )
        elif self.think_end_tag is not None and not self.think_end_tag.strip():
            problems.append(
                f"think end tag {self.think_end_tag!r} is empty; pass the tag that closes the model's "
                f"reasoning, e.g. {DEFAULT_END_TAG!r}"
            )
        bad_keys = [k for k in self.chat_template_args if not k.isidentifier()]
        if bad_keys:
            problems.append(
                f"chat template argument {bad_keys[0]!r} is not a keyword name; write NAME=VALUE, "
                "e.g. enable_thinking=true"
            )
        return problems

    def check(self) -> None:
        """Raise the problems, if any, in one line.

        Raises:
            InvalidArgumentError: any of :meth:`problems`.
        """
        problems = self.problems()
        if problems:
            raise InvalidArgumentError("; ".join(problems))

    @property
    def sampling(self) -> Sampling | None:
        """The sampling these overrides ask for; ``None`` when greedy (temperature 0)."""
        return Sampling(self.samples, self.temperature, self.top_p) if self.temperature > 0 else None


def apply_overrides(preset: Preset, overrides: RunOverrides) -> Preset:
    """``preset`` with the run's changes applied and named.

    Args:
        preset (Preset): The registered preset.
        overrides (RunOverrides): The run's changes.

    Returns:
        Preset: ``preset`` itself when nothing changes; else a copy whose name lists every change
        (``name[max_new_tokens=N,samples=…,temperature=…,top_p=…,think=TAG,KEY=VALUE…]``).

    Raises:
        InvalidArgumentError: any of :meth:`RunOverrides.problems`.
    """
    overrides.check()
    update: dict[str, Any] = {}
    parts: list[str] = []
    if overrides.max_new_tokens is not None:
        budget = overrides.max_new_tokens
        update["tasks"] = {
            family: s.model_copy(update={"max_new_tokens": budget}) if s.output_type == "generate" else s
            for family, s in preset.tasks.items()
        }
        parts.append(f"max_new_tokens={budget}")
    sampling = overrides.sampling
    if sampling is not None:
        update["sampling"] = sampling
        parts.append(sampling.label())
    if overrides.think:
        tag = overrides.think_end_tag or (preset.think.end_tag if preset.think else DEFAULT_END_TAG)
        update["think"] = ThinkSettings(end_tag=tag)
        parts.append(f"think={tag}")
    if overrides.chat_template_args:
        args = dict(sorted(overrides.chat_template_args.items()))
        update["chat_template_args"] = {**preset.chat_template_args, **args}
        parts += [f"{k}={json.dumps(v)}" for k, v in args.items()]
    if not parts:
        return preset
    return preset.model_copy(update={"name": f"{preset.name}[{','.join(parts)}]", **update})


def parse_template_args(pairs: Sequence[str]) -> dict[str, TemplateValue]:
    """``["enable_thinking=true"]`` → ``{"enable_thinking": True}``.

    A value is read as JSON when it is a JSON scalar (``true``, ``false``, ``null``, numbers, quoted
    strings), else kept as the text itself.

    Raises:
        InvalidArgumentError: an item without ``=`` or with an empty name, or a name given twice.
    """
    out: dict[str, TemplateValue] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidArgumentError(
                f"--chat-template-arg {pair!r}: expected NAME=VALUE, e.g. enable_thinking=true"
            )
        if name in out:
            raise InvalidArgumentError(f"--chat-template-arg {name!r} given twice; pass each name once")
        out[name] = _scalar(raw.strip())
    return out


def _scalar(raw: str) -> TemplateValue:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    return value if isinstance(value, str | bool | int | float) or value is None else raw
