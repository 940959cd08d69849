"""Competition math: MATH-500 (Lightman et al. 2023) and AIME 2024, answers judged by math-verify.

Every response gets every metric its task defines, whatever the preset; the preset picks the
primary one:

* ``math_verify,answer`` — rvec's verdict (:mod:`rvec.eval.math_answers`): the last ``\\boxed{}``
  (else the preset's answer pattern) against the dataset's ``answer``, judged by math-verify.
  Primary under ``reasoning``.
* ``exact_match,none`` — lm-eval 0.4.13's own verdict (:mod:`rvec.eval.lm_eval_math`):
  ``minerva_math500``'s Minerva normaliser + sympy for MATH-500, ``aime24``'s Hendrycks normaliser
  for AIME. Primary under ``lm-eval`` and ``lm-eval-chat``.
* ``math_verify,none`` (MATH-500 only) — lm-eval's ``math_verify`` metric: the whole solution
  against the whole response.

``lm-eval`` prompts: ``minerva_math500`` — 4 Minerva exemplars as ``Problem:\\n…\\n\\nSolution: …``,
stop ``Problem:``, 256 tokens; ``aime24`` — ``Question: …\\nAnswer:``, zero-shot, 32,768 tokens.
"""

from __future__ import annotations

import random
from abc import abstractmethod

from rvec.eval.data import DataSource
from rvec.eval.fewshot import LM_EVAL_MINERVA_FEWSHOT
from rvec.eval.lm_eval_math import aime_exact_match, minerva_exact_match, minerva_gold, minerva_math_verify
from rvec.eval.math_answers import math_verify_answer
from rvec.eval.presets import Preset, get_preset
from rvec.eval.sandbox import Sandbox
from rvec.eval.tasks.base import Task, build_context, take, with_condition
from rvec.eval.tasks.gsm8k import wrong_number
from rvec.eval.types import Doc, GenerateRequest, Response, Scored

__all__ = ["AIME24", "MATH500", "MathTask"]

DEFAULT_PRESET = "reasoning"
"""The preset whose primary metric :meth:`MathTask.score` reports when given none (``paper`` has no
math settings)."""


class MathTask(Task):
    """Shared prompting of the math tasks: the problem, with Minerva's exemplars where shots are set."""

    question_field = "problem"

    def request(self, doc: Doc, preset: Preset, *, condition: str | None = None) -> GenerateRequest:
        """The problem under the preset's template (with the first ``shots`` Minerva exemplars)."""
        settings = preset.settings(self.family)
        shots = [
            (settings.template.format(problem=problem, instruction=settings.instruction), solution)
            for problem, solution in LM_EVAL_MINERVA_FEWSHOT[: settings.shots]
        ]
        text = settings.template.format(problem=doc.fields["problem"], instruction=settings.instruction)
        messages, prompt = build_context(
            preset, settings, question=with_condition(text, preset, condition), shots=shots
        )
        return GenerateRequest(messages, prompt, settings.stop, settings.max_new_tokens)

    def gold(self, doc: Doc) -> str:
        return str(doc.fields["answer"])

    @abstractmethod
    def _verdicts(
        self, doc: Doc, text: str, preset: Preset
    ) -> tuple[dict[str, float], dict[str, str | None], dict[str, str]]:
        """Every metric of one response, what each extracted and the gold each compared against."""

    def score(
        self, doc: Doc, response: Response, *, sandbox: Sandbox | None = None, preset: Preset | None = None
    ) -> Scored:
        """All metrics; the primary (and the extraction and gold shown) is the preset's."""
        resolved = preset or get_preset(DEFAULT_PRESET)
        metrics, extracted, golds = self._verdicts(doc, response.text or "", resolved)
        primary = resolved.settings(self.family).primary_metric
        return Scored(metrics, primary, extracted[primary], golds[primary])


class MATH500(MathTask):
    """The 500 MATH test problems of "Let's Verify Step by Step"; doc_id is the row index."""

    name = "math500"
    family = "math500"
    reference_url = "https://arxiv.org/abs/2305.20050"

    def docs(self, source: DataSource, *, limit: int | None = None) -> list[Doc]:
        return [Doc(self.name, str(i), row) for i, row in take(source.math500(), limit)]

    def _verdicts(
        self, doc: Doc, text: str, preset: Preset
    ) -> tuple[dict[str, float], dict[str, str | None], dict[str, str]]:
        answer, solution = self.gold(doc), str(doc.fields["solution"])
        pattern = preset.settings(self.family).answer_pattern
        ours, candidate = math_verify_answer(text, answer, pattern=pattern)
        # lm-eval's gold is the solution's last box, normalised (process_docs), not the answer column.
        lm_gold = minerva_gold(solution)
        exact, normalised = minerva_exact_match(text, lm_gold)
        metrics = {
            "math_verify,answer": float(ours),
            "exact_match,none": float(exact),
            "math_verify,none": float(minerva_math_verify(text, solution)),
        }
        extracted = {
            "math_verify,answer": candidate,
            "exact_match,none": normalised,
            "math_verify,none": None,
        }
        golds = {"math_verify,answer": answer, "exact_match,none": lm_gold, "math_verify,none": answer}
        return metrics, extracted, golds


class AIME24(MathTask):
    """The 30 problems of AIME I and II 2024 (integer answers 0–999); doc_id is the row index."""

    name = "aime24"
    family = "aime24"
    reference_url = "https://maa.org/maa-invitational-competitions/"

    def docs(self, source: DataSource, *, limit: int | None = None) -> list[Doc]:
        return [Doc(self.name, str(i), row) for i, row in take(source.aime24(), limit)]

    def lm_eval_gold(self, doc: Doc) -> str:
        """The gold as lm-eval's aime24 sees it: ``str`` of the integer ``Answer`` of
        ``Maxwell-Jia/AIME_2024``, so ``"025"`` here is ``"25"`` there."""
        answer = self.gold(doc).strip()
        return str(int(answer)) if answer.isdigit() else answer

    def _verdicts(
        self, doc: Doc, text: str, preset: Preset
    ) -> tuple[dict[str, float], dict[str, str | None], dict[str, str]]:
        answer, lm_gold = self.gold(doc), self.lm_eval_gold(doc)
        ours, candidate = math_verify_answer(
            text, answer, pattern=preset.settings(self.family).answer_pattern
        )
        exact, prediction = aime_exact_match(text, lm_gold)
        metrics = {"math_verify,answer": float(ours), "exact_match,none": float(exact)}
        extracted = {"math_verify,answer": candidate, "exact_match,none": prediction}
        return metrics, extracted, {"math_verify,answer": answer, "exact_match,none": lm_gold}

    def wrong_answer(self, doc: Doc, rng: random.Random) -> str:
        return wrong_number(self.lm_eval_gold(doc), rng)
