"""GSM8K (Cobbe et al. 2021): grade-school math word problems with a numeric answer.

``paper``: the question as the user turn, scored on the last number (primary) and on strict answer
statements. ``lm-eval``: ``gsm8k_cot`` — 8 fixed exemplars as ``Q: … A:``, lm-eval's strict-match and
flexible-extract regexes and its ``exact_match`` normalisation. ``reasoning``: the question and the
``\\boxed{}`` instruction; the strict regex verdict is primary and math-verify's
(``math_verify,answer``) is recorded beside it.
"""

from __future__ import annotations

import random

from rvec.eval.data import DataSource
from rvec.eval.fewshot import LM_EVAL_GSM8K_FEWSHOT
from rvec.eval.math_answers import math_verify_answer
from rvec.eval.presets import Preset, get_preset
from rvec.eval.sandbox import Sandbox
from rvec.eval.scoring import (
    LM_EVAL_FILTERS,
    LM_EVAL_GSM8K_IGNORE,
    extract_last_number,
    extract_strict_number,
    gsm8k_gold,
    lm_eval_exact_match,
    lm_eval_regex,
    numbers_equal,
    parse_number,
)
from rvec.eval.tasks.base import Task, build_context, take, with_condition
from rvec.eval.types import Doc, GenerateRequest, Response, Scored

__all__ = ["GSM8K", "GSMStyleTask", "gsm_metrics"]


def gsm_metrics(text: str, gold: str) -> tuple[dict[str, float], dict[str, str | None]]:
    """Every GSM metric of one response: lm-eval's two filters and the paper's two extractions.

    Returns:
        tuple: ``(metrics, extracted)`` keyed alike: ``exact_match,strict-match``,
        ``exact_match,flexible-extract``, ``acc,last-number``, ``acc,strict``.
    """
    extracted: dict[str, str | None] = {}
    metrics: dict[str, float] = {}
    for name, (pattern, group) in LM_EVAL_FILTERS["gsm8k"].items():
        pred = lm_eval_regex(text, pattern, group_select=group)
        extracted[f"exact_match,{name}"] = pred
        match = lm_eval_exact_match(pred, gold, regexes_to_ignore=LM_EVAL_GSM8K_IGNORE, ignore_case=True)
        metrics[f"exact_match,{name}"] = float(match)
    last, strict = extract_last_number(text), extract_strict_number(text)
    extracted["acc,last-number"], extracted["acc,strict"] = last, strict
    metrics["acc,last-number"] = float(numbers_equal(last, gold))
    metrics["acc,strict"] = float(numbers_equal(strict, gold))
    return metrics, extracted


def wrong_number(gold: str, rng: random.Random) -> str:
    """A number close to ``gold`` but different from it (for misleading hints)."""
    value = parse_number(gold)
    if value is None:
        return str(rng.randint(2, 99))
    if value != int(value):
        return f"{value * 2:g}"
    delta = rng.randint(1, 10)
    # Go down only when the result stays non-negative: a negative count would be an obvious decoy.
    candidate = int(value) - delta if int(value) - delta >= 0 and rng.random() < 0.5 else int(value) + delta
    return str(candidate)


class GSMStyleTask(Task):
    """Shared request building and scoring for every GSM8K-format task (GSM8K, GSM-Plus, GSM-Symbolic)."""

    family = "gsm8k"
    question_field = "question"

    def request(self, doc: Doc, preset: Preset, *, condition: str | None = None) -> GenerateRequest:
        """The GSM request: the question, with lm-eval's exemplars when the preset has shots."""
        settings = preset.settings(self.family)
        shots = [
            (settings.template.format(question=q, instruction=settings.instruction), a)
            for q, a in LM_EVAL_GSM8K_FEWSHOT[: settings.shots]
        ]
        text = settings.template.format(question=doc.fields["question"], instruction=settings.instruction)
        question = with_condition(text, preset, condition)
        messages, prompt = build_context(preset, settings, question=question, shots=shots)
        return GenerateRequest(messages, prompt, settings.stop, settings.max_new_tokens)

    def score(
        self, doc: Doc, response: Response, *, sandbox: Sandbox | None = None, preset: Preset | None = None
    ) -> Scored:
        """All GSM metrics; the primary is the preset's (``acc,last-number`` under ``paper``).
        A preset with ``math_verify`` set (``reasoning``) adds math-verify's verdict."""
        gold = self.gold(doc)
        metrics, extracted = gsm_metrics(response.text or "", gold)
        settings = (preset or get_preset("paper")).settings(self.family)
        if settings.math_verify:
            ok, candidate = math_verify_answer(response.text or "", gold, pattern=settings.answer_pattern)
            metrics["math_verify,answer"], extracted["math_verify,answer"] = float(ok), candidate
        primary = settings.primary_metric
        return Scored(metrics, primary, extracted[primary], gold)

    def wrong_answer(self, doc: Doc, rng: random.Random) -> str:
        return wrong_number(self.gold(doc), rng)


class GSM8K(GSMStyleTask):
    """GSM8K test split, 1,319 problems; doc_id is the row index."""

    name = "gsm8k"
    reference_url = "https://arxiv.org/abs/2110.14168"

    def docs(self, source: DataSource, *, limit: int | None = None) -> list[Doc]:
        return [Doc(self.name, str(i), row) for i, row in take(source.gsm8k("test"), limit)]

    def gold(self, doc: Doc) -> str:
        return gsm8k_gold(str(doc.fields["answer"]))
