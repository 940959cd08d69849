"""Evaluation presets as versioned data: prompts, shots, stops, token budgets, metrics.

A preset pins everything that changes a number (``EVAL_PROTOCOL.md``): the prompt templates, chat
template on/off, shots and how they are laid out, stop strings, max new tokens, the primary metric
and the SciQ option-shuffle seed. Its ``version`` enters cache keys and ``results.json``; bump it
whenever a field below changes.

Three presets are registered:

* ``paper`` — instruction-tuned targets as the paper evaluates them: chat template, zero-shot except
  BBH, conditions ``plain`` and ``think``.
* ``lm-eval`` — byte-compatible with lm-evaluation-harness 0.4.13 (``gsm8k_cot``, ``humaneval``,
  ``sciq``, ``bbh_cot_fewshot``) without a chat template.
* ``lm-eval-chat`` — the same with lm-eval's ``--apply_chat_template --fewshot_as_multiturn``.

Example:
    >>> preset = get_preset("lm-eval")
    >>> preset.settings("gsm8k").stop
    ('Q:', '</s>', '<|im_end|>')
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from rvec.errors import ConfigError, InvalidArgumentError, UnknownNameError

__all__ = ["LM_EVAL_GSM8K_FEWSHOT", "PRESETS", "Preset", "TaskSettings", "get_preset"]


LM_EVAL_URL = "https://github.com/EleutherAI/lm-evaluation-harness/tree/v0.4.13/lm_eval/tasks"

LM_EVAL_GSM8K_FEWSHOT: tuple[tuple[str, str], ...] = (
    (
        "There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?",
        "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. The answer is 6.",
    ),
    (
        "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
        "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.",
    ),
    (
        "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
        "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is 39.",
    ),
    (
        "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason give to Denny?",
        "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. The answer is 8.",
    ),
    (
        "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
        "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. The answer is 9.",
    ),
    (
        "There were nine computers in the server room. Five more computers were installed each day, from monday to thursday. How many computers are now in the server room?",
        "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29.",
    ),
    (
        "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls did he have at the end of wednesday?",
        "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.",
    ),
    (
        "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.",
    ),
)
"""The 8 chain-of-thought exemplars of lm-eval's ``gsm8k_cot`` (Wei et al. 2022), in their order.

Source: ``lm_eval/tasks/gsm8k/gsm8k-cot.yaml`` (``fewshot_config.samples``, sampler ``first_n``)."""


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


_ARITH_PAPER = TaskSettings(
    output_type="generate",
    layout="paper",
    template="{question}",
    max_new_tokens=256,
    primary_metric="acc,answer",
)
"""``arith`` (rvec's in-domain task) under chat presets: the question is the user turn, as in
``rvec pair``'s training prompts, so training and evaluation see the same text."""

_ARITH_RAW = TaskSettings(
    output_type="generate",
    template="Q: {question}\nA:",
    stop=("Q:", "\n\n", "</s>", "<|im_end|>"),
    max_new_tokens=256,
    primary_metric="acc,answer",
)
"""``arith`` under the raw lm-eval presets, laid out like ``gsm8k_cot``'s zero-shot turns."""


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
            ``sciq``, ``bbh``, ``arith``); the adversarial GSM tasks use ``gsm8k``'s.
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
        """A JSON-ready copy of every field, for ``results.json``."""
        return self.model_dump(mode="json")


def paper() -> Preset:
    """The paper's protocol for instruction-tuned targets (``EVAL_PROTOCOL.md``, preset ``paper``)."""
    return Preset(
        name="paper",
        version=2,  # 2: the in-domain task ``arith`` added
        description="chat template, zero-shot except BBH (3-shot CoT as multi-turn), greedy, EOS only",
        reference_url="EVAL_PROTOCOL.md#presets",
        chat_template=True,
        fewshot_as_multiturn=True,
        conditions={"plain": "", "think": "Think step by step."},
        tasks={
            "gsm8k": TaskSettings(
                output_type="generate",
                layout="paper",
                template="{question}",
                max_new_tokens=1024,
                primary_metric="acc,last-number",
            ),
            "humaneval": TaskSettings(
                output_type="generate",
                layout="paper",
                template="{instruction}\n\n```python\n{prompt}```",
                instruction=(
                    "Complete the following Python function. Return the complete function, with its "
                    "signature and any imports it needs, in a single Python code block."
                ),
                max_new_tokens=1024,
                primary_metric="pass@1,extract",
            ),
            "sciq": TaskSettings(
                output_type="generate",
                layout="paper",
                template="{support}Question: {question}\n\n{options}\n\n{instruction}",
                instruction="Answer with the letter (A, B, C or D) of the correct option.",
                max_new_tokens=1024,
                primary_metric="acc,letter",
            ),
            "bbh": TaskSettings(
                output_type="generate",
                layout="paper",
                template="Q: {input}",
                shots=3,
                max_new_tokens=1024,
                primary_metric="acc,normalized",
            ),
            "arith": _ARITH_PAPER,
        },
    )


def lm_eval() -> Preset:
    """lm-evaluation-harness 0.4.13, no chat template.

    Sources: ``gsm8k/gsm8k-cot.yaml`` (v3.0; ``max_gen_toks`` unset, so lm-eval's default 256),
    ``humaneval/humaneval.yaml`` (v1.0), ``sciq/sciq.yaml`` (v1.0),
    ``bbh/cot_fewshot/_cot_fewshot_template_yaml`` (v4.0) under :data:`LM_EVAL_URL`.
    """
    return Preset(
        name="lm-eval",
        version=2,  # 2: the in-domain task ``arith`` added (rvec's own; not an lm-eval task)
        description="byte-compatible with lm-evaluation-harness 0.4.13 (gsm8k_cot, humaneval, sciq, bbh_cot_fewshot)",
        reference_url=LM_EVAL_URL,
        chat_template=False,
        fewshot_as_multiturn=False,
        conditions={"plain": ""},
        tasks={
            "gsm8k": TaskSettings(
                output_type="generate",
                template="Q: {question}\nA:",
                shots=8,
                stop=("Q:", "</s>", "<|im_end|>"),
                max_new_tokens=256,
                primary_metric="exact_match,strict-match",
            ),
            "humaneval": TaskSettings(
                output_type="generate",
                template="{prompt}",
                stop=("\nclass", "\ndef", "\n#", "\nif", "\nprint"),
                max_new_tokens=1024,
                primary_metric="pass@1,create_test",
            ),
            "sciq": TaskSettings(
                output_type="loglikelihood",
                template="{support}\nQuestion: {question}\nAnswer:",
                primary_metric="acc,none",
            ),
            "bbh": TaskSettings(
                output_type="generate",
                template="Q: {input}\nA: Let's think step by step.\n",
                shots=3,
                target_delimiter="",
                stop=("</s>", "Q", "\n\n"),
                max_new_tokens=1024,
                primary_metric="exact_match,get-answer",
            ),
            "arith": _ARITH_RAW,
        },
    )


def lm_eval_chat() -> Preset:
    """lm-eval 0.4.13 with ``--apply_chat_template --fewshot_as_multiturn``.

    Shots become user/assistant turns, the BBH task description the system turn, and multiple-choice
    continuations lose their leading space (lm-eval drops the target delimiter under a chat template).
    """
    base = lm_eval()
    tasks = dict(base.tasks)
    tasks["sciq"] = tasks["sciq"].model_copy(update={"target_delimiter": ""})
    return base.model_copy(
        update={
            "name": "lm-eval-chat",
            "description": base.description + ", with --apply_chat_template --fewshot_as_multiturn",
            "chat_template": True,
            "fewshot_as_multiturn": True,
            "tasks": tasks,
        }
    )


def _build_registry(presets: list[Preset]) -> dict[str, Preset]:
    registry: dict[str, Preset] = {}
    duplicates = sorted({p.name for p in presets if sum(q.name == p.name for q in presets) > 1})
    if duplicates:
        raise ConfigError([f"duplicate preset name {name!r}" for name in duplicates], source="presets")
    for preset in presets:
        registry[preset.name] = preset
    return registry


PRESETS: dict[str, Preset] = _build_registry([paper(), lm_eval(), lm_eval_chat()])
"""Every registered preset by name."""


def get_preset(name: str) -> Preset:
    """Look a preset up by name.

    Args:
        name (str): ``"paper"``, ``"lm-eval"`` or ``"lm-eval-chat"``.

    Returns:
        Preset: The frozen preset.

    Raises:
        UnknownNameError: no preset has that name; the message lists the valid ones.
    """
    if name not in PRESETS:
        valid = sorted(PRESETS)
        raise UnknownNameError(f"unknown preset {name!r}; valid: {', '.join(valid)}", name=name, valid=valid)
    return PRESETS[name]
