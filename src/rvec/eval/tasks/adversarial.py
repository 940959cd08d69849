"""Adversarial GSM variants, each paired item by item with the GSM8K test problems they came from.

* GSM-Plus testmini (Li et al. 2024), one task per perturbation type: ``gsm-plus:<type>`` with
  spaces as ``-`` (``gsm-plus:critical-thinking``), plus ``gsm-plus:seed``, the 300 unperturbed
  seeds. Their doc_id is the seed's GSM8K test row index, so the same id names the same seed
  everywhere (GSM8K, the seed task, each type). "critical thinking" items have no answer: a
  response scores when it says the question cannot be answered (:func:`~rvec.eval.scoring.is_refusal`).
* GSM-Symbolic P2 (Mirzadeh et al. 2024): ``gsm-symbolic`` (50 templates × 50 instances, doc_id
  ``<template>-<instance>``) and ``gsm-symbolic:original``, the 50 GSM8K originals (doc_id = the
  GSM8K test index, the P2 rows' ``original_id``); :meth:`paired_doc_id` links the two.
"""

from __future__ import annotations

import logging
import random

from rvec.eval.data import DataSource
from rvec.eval.presets import Preset
from rvec.eval.sandbox import Sandbox
from rvec.eval.scoring import gsm8k_gold, is_refusal
from rvec.eval.tasks.base import take
from rvec.eval.tasks.gsm8k import GSMStyleTask, wrong_number
from rvec.eval.types import Doc, Response, Scored

__all__ = [
    "GSM_PLUS_TYPES",
    "GSMPlus",
    "GSMPlusSeed",
    "GSMSymbolic",
    "GSMSymbolicOriginal",
    "gsm_plus_task_name",
]

logger = logging.getLogger(__name__)

GSM_PLUS_TYPES: tuple[str, ...] = (
    "numerical substitution",
    "digit expansion",
    "integer-decimal-fraction conversion",
    "adding operation",
    "reversing operation",
    "problem understanding",
    "distraction insertion",
    "critical thinking",
)
"""The eight ``perturbation_type`` labels of GSM-Plus, exactly as spelled in the data."""

_GSM_PLUS_URL = "https://arxiv.org/abs/2402.19255"
_GSM_SYMBOLIC_URL = "https://arxiv.org/abs/2410.05229"


def gsm_plus_task_name(perturbation_type: str) -> str:
    """``"critical thinking"`` -> ``"gsm-plus:critical-thinking"``."""
    return "gsm-plus:" + perturbation_type.replace(" ", "-")


def _seed_index(source: DataSource) -> dict[str, int]:
    return {row["question"]: i for i, row in enumerate(source.gsm8k("test"))}


def _gsm_plus_docs(
    task: str, source: DataSource, rows: list[dict], limit: int | None, *, seed_key: str = "seed_question"
) -> list[Doc]:
    index = _seed_index(source)
    docs = []
    for i, row in take(rows, limit):
        seed = index.get(row[seed_key])
        if seed is None:
            logger.warning("%s: seed of row %d is not in GSM8K test; doc_id 'row-%d'", task, i, i)
        docs.append(Doc(task, str(seed) if seed is not None else f"row-{i}", row))
    return docs


class GSMPlus(GSMStyleTask):
    """One GSM-Plus testmini perturbation type (300 items)."""

    reference_url = _GSM_PLUS_URL

    def __init__(self, perturbation_type: str) -> None:
        self.perturbation_type = perturbation_type
        self.name = gsm_plus_task_name(perturbation_type)

    @property
    def critical(self) -> bool:
        return self.perturbation_type == "critical thinking"

    def docs(self, source: DataSource, *, limit: int | None = None) -> list[Doc]:
        rows = [r for r in source.gsm_plus() if r["perturbation_type"] == self.perturbation_type]
        return _gsm_plus_docs(self.name, source, rows, limit)

    def gold(self, doc: Doc) -> str:
        return str(doc.fields["answer"]).strip()

    def score(
        self, doc: Doc, response: Response, *, sandbox: Sandbox | None = None, preset: Preset | None = None
    ) -> Scored:
        """Numeric types score like GSM8K; "critical thinking" scores a refusal (``acc,refusal``)."""
        if not self.critical:
            return super().score(doc, response, sandbox=sandbox, preset=preset)
        refused = is_refusal(response.text or "")
        return Scored({"acc,refusal": float(refused)}, "acc,refusal", "refusal" if refused else None, "None")

    def wrong_answer(self, doc: Doc, rng: random.Random) -> str:
        # No answer exists for critical thinking: the seed's answer is the most tempting wrong one.
        gold = str(doc.fields["seed_answer"]) if self.critical else self.gold(doc)
        return gold if self.critical else wrong_number(gold, rng)

    def paired_doc_id(self, doc: Doc) -> str | None:
        return doc.doc_id


class GSMPlusSeed(GSMStyleTask):
    """The 300 GSM8K seeds of GSM-Plus testmini, unperturbed (the clean side of each comparison)."""

    name = "gsm-plus:seed"
    reference_url = _GSM_PLUS_URL

    def docs(self, source: DataSource, *, limit: int | None = None) -> list[Doc]:
        seen: dict[str, dict] = {}
        for row in source.gsm_plus():
            seen.setdefault(row["seed_question"], row)
        rows = [{"question": q, "answer": r["seed_solution"]} for q, r in seen.items()]
        return _gsm_plus_docs(self.name, source, rows, limit, seed_key="question")

    def gold(self, doc: Doc) -> str:
        return gsm8k_gold(str(doc.fields["answer"]))

    def paired_doc_id(self, doc: Doc) -> str | None:
        return doc.doc_id


class GSMSymbolic(GSMStyleTask):
    """GSM-Symbolic P2: 2,500 templated variants with two added clauses."""

    name = "gsm-symbolic"
    reference_url = _GSM_SYMBOLIC_URL

    def docs(self, source: DataSource, *, limit: int | None = None) -> list[Doc]:
        # Instance-major order: the first 50 docs are instance 0 of every template — one complete
        # parallel test set, paired 1:1 with the 50 originals — so a --limit keeps pairs intact.
        rows = sorted(source.gsm_symbolic_p2(), key=lambda r: (int(r["instance"]), int(r["id"])))
        return [Doc(self.name, f"{row['id']}-{row['instance']}", row) for _, row in take(rows, limit)]

    def gold(self, doc: Doc) -> str:
        return gsm8k_gold(str(doc.fields["answer"]))

    def paired_doc_id(self, doc: Doc) -> str | None:
        return str(doc.fields["original_id"])


class GSMSymbolicOriginal(GSMStyleTask):
    """The 50 GSM8K problems GSM-Symbolic P2 was built from, in order of first appearance."""

    name = "gsm-symbolic:original"
    reference_url = _GSM_SYMBOLIC_URL

    def docs(self, source: DataSource, *, limit: int | None = None) -> list[Doc]:
        originals: dict[int, dict] = {}
        for row in source.gsm_symbolic_p2():
            originals.setdefault(
                int(row["original_id"]),
                {"question": row["original_question"], "answer": row["original_answer"]},
            )
        return [Doc(self.name, str(oid), fields) for _, (oid, fields) in take(list(originals.items()), limit)]

    def gold(self, doc: Doc) -> str:
        return gsm8k_gold(str(doc.fields["answer"]))

    def paired_doc_id(self, doc: Doc) -> str | None:
        return doc.doc_id
