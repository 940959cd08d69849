"""SciQ (Welbl et al. 2017): 1,000 four-option science questions with a support paragraph.

``paper``: generation; the options are labelled A–D in a per-item order fixed by a seeded shuffle
(``Preset.sciq_shuffle_seed`` and the doc_id) and the model answers with a letter.
``lm-eval``: log-likelihood of each choice after ``"{support}\\nQuestion: {question}\\nAnswer:"``
(support left-stripped), choices in lm-eval's order ``[distractor1, distractor2, distractor3,
correct_answer]``, ``acc`` and ``acc_norm`` (log-likelihood divided by the choice's length in
characters, without the delimiter, as lm-eval does).
"""

from __future__ import annotations

import hashlib
import random

from rvec.eval.data import DataSource
from rvec.eval.presets import Preset, get_preset
from rvec.eval.sandbox import Sandbox
from rvec.eval.scoring import extract_choice_letter
from rvec.eval.tasks.base import Task, build_context, take, with_condition, with_fields
from rvec.eval.types import Doc, GenerateRequest, LoglikelihoodRequest, Response, Scored

__all__ = ["SciQ", "choices_of", "gold_index"]

LETTERS = "ABCD"


def choices_of(doc: Doc) -> list[str]:
    """The four choices in lm-eval's order (or the order a shuffle perturbation set)."""
    if "choices" in doc.fields:
        return list(doc.fields["choices"])
    f = doc.fields
    return [f["distractor1"], f["distractor2"], f["distractor3"], f["correct_answer"]]


def gold_index(doc: Doc) -> int:
    """Index of the correct choice in :func:`choices_of`."""
    return int(doc.fields.get("label", 3))


def _rng(seed: int, doc_id: str) -> random.Random:
    digest = hashlib.sha256(f"sciq|{seed}|{doc_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class SciQ(Task):
    """The SciQ test split; doc_id is the row index."""

    name = "sciq"
    family = "sciq"
    reference_url = "https://arxiv.org/abs/1707.06209"

    def docs(self, source: DataSource, *, limit: int | None = None) -> list[Doc]:
        return [Doc(self.name, str(i), row) for i, row in take(source.sciq("test"), limit)]

    def option_order(self, doc: Doc, preset: Preset) -> list[int]:
        """Indices into :func:`choices_of` in the order shown as A–D (seeded per item)."""
        order = list(range(len(choices_of(doc))))
        _rng(preset.sciq_shuffle_seed, doc.doc_id).shuffle(order)
        return order

    def request(
        self, doc: Doc, preset: Preset, *, condition: str | None = None
    ) -> GenerateRequest | LoglikelihoodRequest:
        """Lettered options (``paper``) or lm-eval's log-likelihood request (``lm-eval``)."""
        settings = preset.settings(self.family)
        if settings.output_type == "loglikelihood":
            preset.condition_text(condition)  # validates the condition even though it adds nothing
            return self._loglikelihood(doc, preset)
        choices = choices_of(doc)
        options = "\n".join(
            f"{LETTERS[k]}. {choices[i]}" for k, i in enumerate(self.option_order(doc, preset))
        )
        support = str(doc.fields["support"]).strip()
        text = settings.template.format(
            support=support + "\n\n" if support else "",
            question=doc.fields["question"],
            options=options,
            instruction=settings.instruction,
        )
        messages, prompt = build_context(preset, settings, question=with_condition(text, preset, condition))
        return GenerateRequest(messages, prompt, settings.stop, settings.max_new_tokens)

    def loglikelihood_request(self, doc: Doc, preset: Preset) -> LoglikelihoodRequest:
        """lm-eval's log-likelihood request, with or without chat template as ``preset`` has it.

        Under ``paper`` this is the extra request for the ``acc``/``acc_norm`` report.
        """
        lm_preset = get_preset("lm-eval-chat" if preset.chat_template else "lm-eval")
        return self._loglikelihood(doc, lm_preset.model_copy(update={"system_prompt": preset.system_prompt}))

    def _loglikelihood(self, doc: Doc, preset: Preset) -> LoglikelihoodRequest:
        settings = preset.settings(self.family)
        context = settings.template.format(
            support=str(doc.fields["support"]).lstrip(), question=doc.fields["question"]
        )
        messages, prompt = build_context(preset, settings, question=context)
        continuations = tuple(settings.target_delimiter + c for c in choices_of(doc))
        return LoglikelihoodRequest(messages, prompt, continuations)

    def score(
        self, doc: Doc, response: Response, *, sandbox: Sandbox | None = None, preset: Preset | None = None
    ) -> Scored:
        """``acc,none``/``acc_norm,none`` for log-likelihoods, ``acc,letter`` for text."""
        choices, gold = choices_of(doc), gold_index(doc)
        if response.loglikelihoods is not None:
            lls = response.loglikelihoods
            best = max(range(len(lls)), key=lambda i: lls[i])
            best_norm = max(range(len(lls)), key=lambda i: lls[i] / len(choices[i]))
            metrics = {"acc,none": float(best == gold), "acc_norm,none": float(best_norm == gold)}
            return Scored(metrics, "acc,none", choices[best], choices[gold])
        order = self.option_order(doc, preset or get_preset("paper"))
        gold_letter = LETTERS[order.index(gold)]
        letter = extract_choice_letter(response.text or "", LETTERS[: len(choices)])
        return Scored({"acc,letter": float(letter == gold_letter)}, "acc,letter", letter, gold_letter)

    # ----------------------------------------------------------------------- perturbation hooks
    def gold(self, doc: Doc) -> str:
        return choices_of(doc)[gold_index(doc)]

    def wrong_answer(self, doc: Doc, rng: random.Random) -> str:
        choices, gold = choices_of(doc), gold_index(doc)
        return rng.choice([c for i, c in enumerate(choices) if i != gold])

    def shuffle_options(self, doc: Doc, rng: random.Random) -> Doc:
        """Permute the choices so that the correct one changes place."""
        choices, gold = choices_of(doc), gold_index(doc)
        order = list(range(len(choices)))
        while order.index(gold) == gold:
            rng.shuffle(order)
        return with_fields(doc, {"choices": [choices[i] for i in order], "label": order.index(gold)})
