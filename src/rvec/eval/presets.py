"""Evaluation presets as versioned data: prompts, shots, stops, token budgets, metrics.

A preset pins everything that changes a number (``EVAL_PROTOCOL.md``): the prompt templates, chat
template on/off, shots and how they are laid out, stop strings, max new tokens, the primary metric
and the SciQ option-shuffle seed. Its ``version`` enters cache keys and ``results.json``; bump it
whenever a field below changes.

Four presets are registered:

* ``paper`` — instruction-tuned targets as the paper evaluates them: chat template, zero-shot except
  BBH, conditions ``plain`` and ``think``.
* ``lm-eval`` — byte-compatible with lm-evaluation-harness 0.4.13 (``gsm8k_cot``, ``humaneval``,
  ``sciq``, ``bbh_cot_fewshot``, ``minerva_math500``, ``aime24``) without a chat template.
* ``lm-eval-chat`` — the same with lm-eval's ``--apply_chat_template --fewshot_as_multiturn``.
* ``reasoning`` — lighteval/open-r1 style: chat template, zero-shot, the ``\\boxed{}`` instruction,
  32,768 tokens, math-verify verdicts (GSM8K, MATH-500, AIME 2024).

``think`` (:class:`~rvec.eval.thinking.ThinkSettings`) turns thinking on: answers are read after the
closing think tag. The classes are :mod:`rvec.eval.preset_types` (re-exported here); a run's changes
(``--max-new-tokens``, ``--samples``, ``--think``…) are :mod:`rvec.eval.overrides`.

Example:
    >>> preset = get_preset("lm-eval")
    >>> preset.settings("gsm8k").stop
    ('Q:', '</s>', '<|im_end|>')
"""

from __future__ import annotations

from typing import Any

from rvec.errors import ConfigError, UnknownNameError
from rvec.eval.fewshot import LM_EVAL_GSM8K_FEWSHOT
from rvec.eval.math_answers import FINAL_ANSWER_PATTERN
from rvec.eval.preset_types import Preset, TaskSettings

__all__ = [
    "LM_EVAL_GSM8K_FEWSHOT",
    "PRESETS",
    "REASONING_INSTRUCTION",
    "Preset",
    "TaskSettings",
    "get_preset",
]


LM_EVAL_URL = "https://github.com/EleutherAI/lm-evaluation-harness/tree/v0.4.13/lm_eval/tasks"

REASONING_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The math directive of DeepSeek-R1's usage recommendations, also Qwen2.5-Math's ``qwen-boxed``
prompt and the system prompt of open-r1's first ``make evaluate`` (huggingface/open-r1 d6f1a17)."""


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


_MATH500_RAW = TaskSettings(
    output_type="generate",
    template="Problem:\n{problem}\n\nSolution:",
    shots=4,
    stop=("Problem:",),
    max_new_tokens=256,
    primary_metric="exact_match,none",
    answer_pattern=FINAL_ANSWER_PATTERN,
    compare=("exact_match,none", "math_verify,none"),
)

_AIME24_RAW = TaskSettings(
    output_type="generate",
    template="Question: {problem}\nAnswer:",
    stop=("Question:", "</s>", "<|im_end|>", "<|eot_id|>"),
    max_new_tokens=32768,
    primary_metric="exact_match,none",
    answer_pattern=FINAL_ANSWER_PATTERN,
)


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
    ``bbh/cot_fewshot/_cot_fewshot_template_yaml`` (v4.0), ``minerva_math/minerva_math500.yaml``
    and ``minerva_math_algebra.yaml`` (v3.1; ``max_gen_toks`` unset: 256), ``aime/aime24.yaml`` (v0.0)
    under :data:`LM_EVAL_URL`. lm-eval adds the tokenizer's EOS to every stop list; rvec's backends
    stop at EOS anyway. ``exact_match`` is primary for both math tasks: aime24's only metric, and
    the first of minerva_math500's two (``math_verify`` is recorded beside it).
    """
    return Preset(
        name="lm-eval",
        version=3,  # 2: the in-domain task ``arith`` added (rvec's own); 3: minerva_math500, aime24
        description=(
            "byte-compatible with lm-evaluation-harness 0.4.13 "
            "(gsm8k_cot, humaneval, sciq, bbh_cot_fewshot, minerva_math500, aime24)"
        ),
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
            "math500": _MATH500_RAW,
            "aime24": _AIME24_RAW,
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


def _reasoning_task(field: str, primary: str, **extra: Any) -> TaskSettings:
    return TaskSettings(
        output_type="generate",
        layout="paper",
        template="{" + field + "}\n{instruction}",
        instruction=REASONING_INSTRUCTION,
        max_new_tokens=32768,
        answer_pattern=FINAL_ANSWER_PATTERN,
        primary_metric=primary,
        **extra,
    )


def reasoning() -> Preset:
    """Reasoning models as lighteval and open-r1 evaluate them on math.

    Chat template (no system turn, as DeepSeek-R1's card advises), zero-shot, the problem then
    :data:`REASONING_INSTRUCTION` on a new line (Qwen2.5-Math's ``qwen-boxed``), EOS the only stop,
    32,768 new tokens (lighteval ``math_500``'s ``generation_size``; a run's ``max_new_tokens``
    overrides it). Primary: ``math_verify,answer`` for MATH-500 and AIME (lighteval's ``pass@1``
    judges with math-verify too); ``acc,strict`` for GSM8K, math-verify's verdict beside it,
    disagreements counted. Sources: lighteval ``tasks/tasks/{math_500,aime}.py``; open-r1 d6f1a17.
    """
    return Preset(
        name="reasoning",
        version=1,
        description="lighteval/open-r1 style: chat template, zero-shot, \\boxed{} answers judged by math-verify",
        reference_url="https://github.com/huggingface/lighteval/tree/main/src/lighteval/tasks/tasks",
        chat_template=True,
        fewshot_as_multiturn=True,
        conditions={"plain": ""},
        tasks={
            "gsm8k": _reasoning_task(
                "question", "acc,strict", math_verify=True, compare=("acc,strict", "math_verify,answer")
            ),
            "math500": _reasoning_task("problem", "math_verify,answer"),
            "aime24": _reasoning_task("problem", "math_verify,answer"),
            "arith": _ARITH_PAPER,  # as rvec pair trains it: the question alone as the user turn
        },
    )


def _build_registry(presets: list[Preset]) -> dict[str, Preset]:
    registry: dict[str, Preset] = {}
    duplicates = sorted({p.name for p in presets if sum(q.name == p.name for q in presets) > 1})
    if duplicates:
        raise ConfigError([f"duplicate preset name {name!r}" for name in duplicates], source="presets")
    for preset in presets:
        registry[preset.name] = preset
    return registry


PRESETS: dict[str, Preset] = _build_registry([paper(), lm_eval(), lm_eval_chat(), reasoning()])
"""Every registered preset by name."""


def get_preset(name: str) -> Preset:
    """Look a preset up by name.

    Args:
        name (str): ``"paper"``, ``"lm-eval"``, ``"lm-eval-chat"`` or ``"reasoning"``.

    Returns:
        Preset: The frozen preset.

    Raises:
        UnknownNameError: no preset has that name; the message lists the valid ones.
    """
    if name not in PRESETS:
        valid = sorted(PRESETS)
        raise UnknownNameError(f"unknown preset {name!r}; valid: {', '.join(valid)}", name=name, valid=valid)
    return PRESETS[name]
