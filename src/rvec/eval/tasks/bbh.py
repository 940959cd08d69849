"""BIG-Bench Hard (Suzgun et al. 2022): 27 subtasks, each with an official 3-shot CoT prompt.

Each subtask is its own task, ``bbh:<subtask>``; ``bbh`` expands to all 27 and
:func:`bbh_mean` gives their unweighted mean. Shots come from ``bbh/cot-prompts/<subtask>.txt``;
the parsed exemplars are byte-identical to the ``fewshot_config.samples`` of lm-eval 0.4.13's
``bbh_cot_fewshot`` YAMLs (the answer without its leading ``Let's think step by step.`` and one
separator character).

``lm-eval`` layout: description (system turn under a chat template), then
``Q: {input}\\nA: Let's think step by step.\\n`` + answer per shot, stops ``</s>``, ``Q``, ``\\n\\n``,
regex ``(?<=the answer is )(.*)(?=.)``, exact match. ``paper`` layout: user turns ``Q: {input}`` (the
description opens the first), assistant turns ``Let's think step by step. …`` as in the file;
answers extracted after the last "the answer is" and normalised per subtask.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping

from rvec.errors import InvalidArgumentError, PerturbationNotApplicableError
from rvec.eval.data import DataSource
from rvec.eval.presets import Preset
from rvec.eval.sandbox import Sandbox
from rvec.eval.scoring import BBH_SUBTASKS, LM_EVAL_FILTERS, bbh_match, lm_eval_regex, parse_number
from rvec.eval.tasks.base import Task, build_context, take, with_condition, with_fields
from rvec.eval.types import Doc, GenerateRequest, Response, Scored

__all__ = ["BBH", "bbh_mean", "parse_cot_prompt"]

COT_PREFIX = "Let's think step by step."
_SHOT_SPLIT = "\nA: " + COT_PREFIX
_OPTION_LINE = re.compile(r"^\(([A-Z])\) ?(.*)$")
_LABEL_FLIP = {"True": "False", "False": "True", "Yes": "No", "No": "Yes", "yes": "no", "no": "yes"}
_LABEL_FLIP |= {"valid": "invalid", "invalid": "valid"}
# Subtasks whose input is a formula or a payload the gold depends on: typos stay out of it.
_NO_PROSE = {"boolean_expressions", "multistep_arithmetic_two"}
_PROSE_END = {"word_sorting": "List:", "dyck_languages": "Input:"}


def parse_cot_prompt(text: str, *, subtask: str = "?") -> tuple[str, tuple[tuple[str, str], ...]]:
    """Split a ``cot-prompts/<subtask>.txt`` file into its description and shots.

    Returns:
        tuple: ``(description, ((input, answer), ...))`` where ``answer`` starts with
        ``Let's think step by step.`` exactly as in the file.

    Raises:
        InvalidArgumentError: the text is not in the BBH CoT prompt format.
    """
    lines = text.split("\n")
    body = "\n".join(lines[2:]) if len(lines) > 2 and lines[1].strip() == "-----" else text
    if "\n\nQ: " not in body:
        raise InvalidArgumentError(
            f"bbh:{subtask}: the CoT prompt has no 'Q: ' block; expected the official file"
        )
    description, rest = body.split("\n\nQ: ", 1)
    shots = []
    for block in rest.rstrip("\n").split("\n\nQ: "):
        if _SHOT_SPLIT not in block:
            raise InvalidArgumentError(
                f"bbh:{subtask}: a shot lacks {_SHOT_SPLIT.strip()!r}; expected the official file"
            )
        question, answer = block.split(_SHOT_SPLIT, 1)
        shots.append((question, COT_PREFIX + answer))
    return description, tuple(shots)


def bbh_mean(scores: Mapping[str, Mapping[str, float]], metric: str, *, require_all: bool = True) -> float:
    """Unweighted mean of ``metric`` over the ``bbh:<subtask>`` entries of ``scores``.

    Args:
        scores (Mapping): ``EvalResult.scores``-like: task key -> metric -> value.
        metric (str): e.g. ``"acc,normalized"``.
        require_all (bool, default True): Demand all 27 subtasks.

    Raises:
        InvalidArgumentError: subtasks are missing (``require_all``) or none has ``metric``.
    """
    values = {s: scores[f"bbh:{s}"][metric] for s in BBH_SUBTASKS if metric in scores.get(f"bbh:{s}", {})}
    missing = [s for s in BBH_SUBTASKS if s not in values]
    if not values or (require_all and missing):
        raise InvalidArgumentError(
            f"bbh mean of {metric!r}: {len(missing)} of 27 subtasks missing ({', '.join(missing[:3])}…); "
            "evaluate all of 'bbh' or pass require_all=False"
        )
    return sum(values.values()) / len(values)


class BBH(Task):
    """One BBH subtask; doc_id is the row index in ``bbh/data/<subtask>.json``."""

    family = "bbh"
    reference_url = "https://arxiv.org/abs/2210.09261"
    question_field = "input"
    text_separator = "\n"

    def __init__(self, subtask: str) -> None:
        self.subtask = subtask
        self.name = f"bbh:{subtask}"

    def docs(self, source: DataSource, *, limit: int | None = None) -> list[Doc]:
        """Rows plus the parsed ``description`` and ``shots`` (shared by every doc of the subtask)."""
        description, shots = parse_cot_prompt(source.bbh_cot_prompt(self.subtask), subtask=self.subtask)
        return [
            Doc(self.name, str(i), {**row, "description": description, "shots": shots})
            for i, row in take(source.bbh(self.subtask), limit)
        ]

    def request(self, doc: Doc, preset: Preset, *, condition: str | None = None) -> GenerateRequest:
        """Three CoT shots and the question, in the preset's layout."""
        settings = preset.settings(self.family)
        shots = list(doc.fields["shots"])[: settings.shots]
        description = str(doc.fields["description"])
        question = with_condition(settings.template.format(input=doc.fields["input"]), preset, condition)
        if settings.layout == "lm-eval":
            rendered = [(settings.template.format(input=q), a[len(COT_PREFIX) + 1 :]) for q, a in shots]
            messages, prompt = build_context(
                preset, settings, question=question, shots=rendered, description=description + "\n\n"
            )
        else:
            rendered = [(settings.template.format(input=q), a) for q, a in shots]
            if rendered:
                rendered[0] = (description + "\n\n" + rendered[0][0], rendered[0][1])
            else:
                question = description + "\n\n" + question
            messages, prompt = build_context(preset, settings, question=question, shots=rendered)
        return GenerateRequest(messages, prompt, settings.stop, settings.max_new_tokens)

    def score(
        self, doc: Doc, response: Response, *, sandbox: Sandbox | None = None, preset: Preset | None = None
    ) -> Scored:
        """``exact_match,get-answer`` (lm-eval) and ``acc,normalized`` (paper)."""
        text, target = response.text or "", str(doc.fields["target"])
        pattern, group = LM_EVAL_FILTERS["bbh"]["get-answer"]
        lm_pred = lm_eval_regex(text, pattern, group_select=group)
        correct, extracted = bbh_match(self.subtask, text, target)
        metrics = {"exact_match,get-answer": float(lm_pred == target), "acc,normalized": float(correct)}
        primary = self._primary(preset)
        return Scored(metrics, primary, lm_pred if primary.startswith("exact_match") else extracted, target)

    # ----------------------------------------------------------------------- perturbation hooks
    def gold(self, doc: Doc) -> str:
        return str(doc.fields["target"])

    def wrong_answer(self, doc: Doc, rng: random.Random) -> str:
        target = self.gold(doc)
        letters = [m.group(1) for m in map(_OPTION_LINE.match, _options_block(doc)[1]) if m]
        if re.fullmatch(r"\([A-Z]\)", target) and len(letters) > 1:
            return "(" + rng.choice([x for x in letters if f"({x})" != target]) + ")"
        if target in _LABEL_FLIP:
            return _LABEL_FLIP[target]
        number = parse_number(target)
        if number is not None:
            return str(int(number) + rng.choice([-3, -2, -1, 1, 2, 3]))
        if self.subtask == "word_sorting":
            words = target.split()
            return " ".join(reversed(words)) if len(words) > 1 else target + " " + target
        if self.subtask == "dyck_languages":
            parts = target.split()
            return " ".join(parts[:-1]) if len(parts) > 1 else target + " " + target
        return rng.choice([x for x in _options_block(doc)[1] if x.strip()] or ["none of them"])

    def map_prose(self, doc: Doc, fn: Callable[[str], str]) -> Doc:
        """Apply ``fn`` to the question's prose: before ``Options:``, ``List:`` or ``Input:``."""
        if self.subtask in _NO_PROSE:
            raise PerturbationNotApplicableError(
                f"typo does not apply to {self.name!r} (its input is a formula); drop it for this task",
                perturbation="typo",
                task=self.name,
            )
        text = str(doc.fields["input"])
        marker = _PROSE_END.get(self.subtask, "\nOptions:")
        cut = text.find(marker)
        cut = len(text) if cut < 0 else cut
        return with_fields(doc, {"input": fn(text[:cut]) + text[cut:]})

    def shuffle_options(self, doc: Doc, rng: random.Random) -> Doc:
        """Permute the lettered options, re-letter them, and move the gold letter with its option."""
        head, lines = _options_block(doc)
        parsed = [_OPTION_LINE.match(line) for line in lines]
        if len(lines) < 2 or not all(parsed):
            return super().shuffle_options(doc, rng)
        texts = [m.group(2) for m in parsed if m]
        letters = [m.group(1) for m in parsed if m]
        target = self.gold(doc)
        gold_pos = (
            letters.index(target[1]) if re.fullmatch(r"\([A-Z]\)", target) and target[1] in letters else None
        )
        order = list(range(len(texts)))
        while order == list(range(len(texts))) or (
            gold_pos is not None and order.index(gold_pos) == gold_pos
        ):
            rng.shuffle(order)
        new_lines = [f"({letters[k]}) {texts[i]}" for k, i in enumerate(order)]
        new_target = f"({letters[order.index(gold_pos)]})" if gold_pos is not None else target
        return with_fields(doc, {"input": head + "\n".join(new_lines), "target": new_target})


def _options_block(doc: Doc) -> tuple[str, list[str]]:
    """(text up to and including ``Options:\\n``, the option lines) — no lines when absent."""
    text = str(doc.fields["input"])
    idx = text.find("Options:\n")
    if idx < 0:
        return text, []
    head_end = idx + len("Options:\n")
    return text[:head_end], text[head_end:].split("\n")
