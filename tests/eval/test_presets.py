"""Presets: registry, immutability, serialisation, and the lm-eval facts they pin."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from rvec.errors import ConfigError, InvalidArgumentError, UnknownNameError
from rvec.eval.presets import (
    LM_EVAL_GSM8K_FEWSHOT,
    PRESETS,
    REASONING_INSTRUCTION,
    Preset,
    _build_registry,
    get_preset,
    paper,
)
from rvec.eval.thinking import ThinkSettings


def test_registry_and_lookup() -> None:
    assert sorted(PRESETS) == ["lm-eval", "lm-eval-chat", "paper", "reasoning"]
    assert get_preset("paper").conditions == {"plain": "", "think": "Think step by step."}
    with pytest.raises(UnknownNameError) as err:
        get_preset("harness")
    assert str(err.value) == "unknown preset 'harness'; valid: lm-eval, lm-eval-chat, paper, reasoning"
    assert isinstance(err.value, KeyError)


def test_duplicate_names_are_an_error() -> None:
    with pytest.raises(ConfigError) as err:
        _build_registry([paper(), paper()])
    assert err.value.errors == ["duplicate preset name 'paper'"]


def test_presets_are_frozen_and_strict() -> None:
    preset = get_preset("paper")
    with pytest.raises(ValidationError):
        preset.version = 2  # type: ignore[misc]
    with pytest.raises(ValidationError):
        preset.settings("gsm8k").model_validate(
            {"output_type": "generate", "template": "", "primary_metric": "x", "oops": 1}
        )


def test_to_dict_is_json_and_round_trips() -> None:
    for preset in PRESETS.values():
        data = preset.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert type(preset).model_validate(data) == preset
        assert data["version"] >= 1 and data["name"] == preset.name
    thinking = get_preset("reasoning").model_copy(update={"think": ThinkSettings("</reasoning>")})
    data = thinking.to_dict()
    assert data["think"] == {"end_tag": "</reasoning>"} and Preset.model_validate(data) == thinking
    with pytest.raises(ValidationError, match="think end tag '' is empty"):
        Preset.model_validate({**data, "think": {"end_tag": ""}})


def test_lm_eval_facts() -> None:
    lm = get_preset("lm-eval")
    assert not lm.chat_template and list(lm.conditions) == ["plain"]
    gsm = lm.settings("gsm8k")
    assert (gsm.shots, gsm.stop, gsm.max_new_tokens, gsm.template) == (
        8,
        ("Q:", "</s>", "<|im_end|>"),
        256,
        "Q: {question}\nA:",
    )
    assert len(LM_EVAL_GSM8K_FEWSHOT) == 8 and LM_EVAL_GSM8K_FEWSHOT[-1][1].endswith("The answer is 8.")
    bbh = lm.settings("bbh")
    assert (bbh.shots, bbh.stop, bbh.target_delimiter) == (3, ("</s>", "Q", "\n\n"), "")
    assert lm.settings("humaneval").stop == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
    assert lm.settings("sciq").output_type == "loglikelihood" and lm.settings("sciq").target_delimiter == " "
    chat = get_preset("lm-eval-chat")
    assert chat.chat_template and chat.fewshot_as_multiturn and chat.settings("sciq").target_delimiter == ""
    # minerva_math500 (v3.1) and aime24 (v0.0); version 3 added them.
    math = lm.settings("math500")
    assert (math.shots, math.stop, math.max_new_tokens, math.primary_metric) == (
        4,
        ("Problem:",),
        256,
        "exact_match,none",
    )
    assert math.template == "Problem:\n{problem}\n\nSolution:"
    aime = lm.settings("aime24")
    assert (aime.shots, aime.max_new_tokens, aime.primary_metric) == (0, 32768, "exact_match,none")
    assert lm.version == chat.version == 3


def test_reasoning_facts() -> None:
    reasoning = get_preset("reasoning")
    assert reasoning.chat_template and reasoning.system_prompt is None and reasoning.think is None
    assert sorted(reasoning.tasks) == ["aime24", "arith", "gsm8k", "math500"]
    assert reasoning.settings("arith") == get_preset("paper").settings("arith")
    assert REASONING_INSTRUCTION == "Please reason step by step, and put your final answer within \\boxed{}."
    for family, s in reasoning.tasks.items():
        if family == "arith":
            continue
        assert (s.shots, s.stop, s.max_new_tokens, s.instruction) == (0, (), 32768, REASONING_INSTRUCTION), (
            family
        )
    assert reasoning.settings("math500").primary_metric == "math_verify,answer"
    gsm = reasoning.settings("gsm8k")
    assert gsm.math_verify and gsm.primary_metric == "acc,strict"
    assert gsm.compare == ("acc,strict", "math_verify,answer")


def test_condition_and_family_errors() -> None:
    paper_preset = get_preset("paper")
    assert (
        paper_preset.condition_text(None) == ""
        and paper_preset.condition_text("think") == "Think step by step."
    )
    with pytest.raises(InvalidArgumentError, match="use one of: plain, think"):
        paper_preset.condition_text("cot")
    with pytest.raises(UnknownNameError, match="valid: arith, bbh, gsm8k, humaneval, sciq"):
        paper_preset.settings("mmlu")
