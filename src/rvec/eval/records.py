"""From a unit's scored responses to its sample records and its scores.

One :class:`~rvec.eval.types.SampleRecord` per response: per item when greedy, per sample when
sampling (``sample`` = its index; the same doc_id repeats). A task key's scores are the mean of each
metric over its records — over every sample when sampling, which is ``avg@n`` of that metric — and,
for a sampled run, ``avg@n`` and ``pass@k`` of the primary verdict (:mod:`rvec.eval.sampling`).
With thinking on, each record carries its think-block record (:mod:`rvec.eval.thinking`), tokens
counted where the backend can (:class:`~rvec.eval.types.TokenCounting`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rvec.eval.plan import Unit
from rvec.eval.presets import Preset
from rvec.eval.sampling import sampled_metrics
from rvec.eval.thinking import split_think, think_record
from rvec.eval.types import GenerateRequest, LanguageModel, Request, SampleRecord, Scored, TokenCounting
from rvec.eval.verdicts import disagreement

__all__ = ["key_disagreements", "key_scores", "prompt_text", "sample_records", "think_records"]


def think_records(
    lm: LanguageModel, units: Sequence[Unit], preset: Preset
) -> dict[str, list[dict[str, Any]]] | None:
    """Per task key and response (thinking on): whether the think block closed, characters and
    (where the backend counts them) tokens inside and outside it, and whether the generation used its
    whole token budget; ``None`` with thinking off."""
    if preset.think is None:
        return None
    counter = lm.count_tokens if isinstance(lm, TokenCounting) else None
    tag = preset.think.end_tag
    out = {}
    for unit in units:
        records = []
        for request, response in zip(unit.requests, unit.responses, strict=True):
            split = split_think((response.text or "") if response else "", tag)
            budget = request.max_new_tokens if isinstance(request, GenerateRequest) else None
            used = response.n_generated_tokens if response else 0
            records.append(think_record(split, counter, at_budget=budget is not None and used >= budget))
        out[unit.key] = records
    return out


def sample_records(
    unit: Unit, scored: Sequence[Scored], think: Sequence[Mapping[str, Any]] | None = None
) -> list[SampleRecord]:
    """One record per response of ``unit``, in the unit's order.

    Args:
        unit (Unit): The answered task key.
        scored (Sequence[Scored]): The task's verdict on each response.
        think (Sequence[Mapping] | None, default None): Each response's think record (thinking on).

    Returns:
        list[SampleRecord]: With the primary verdict as ``correct``, the generated tokens, the
        sample index (sampled runs) and the think record (thinking runs).
    """
    pert = unit.perturbation.name if unit.perturbation is not None else None
    return [
        SampleRecord(
            task=unit.task.name,
            doc_id=doc.doc_id,
            prompt=prompt_text(request),
            response=response.text if response is not None else None,
            extracted=s.extracted,
            gold=s.gold,
            correct=bool(s.metrics.get(s.primary, 0.0)),
            metrics=dict(s.metrics),
            perturbation=pert,
            primary=s.primary,
            n_generated_tokens=response.n_generated_tokens if response is not None else 0,
            sample=unit.sample_index(i),
            think=dict(think[i]) if think is not None else None,
        )
        for i, (doc, request, response, s) in enumerate(
            zip(unit.docs, unit.requests, unit.responses, scored, strict=True)
        )
    ]


def key_scores(records: Sequence[SampleRecord], *, samples: int | None) -> dict[str, float]:
    """Each metric's mean over ``records``; with ``samples`` (a sampled run), ``avg@n`` and
    ``pass@k`` of the primary verdict beside them (:func:`rvec.eval.sampling.sampled_metrics`).

    Args:
        records (Sequence[SampleRecord]): One task key's records.
        samples (int | None): Samples per item of a sampled run; ``None`` when greedy.

    Returns:
        dict[str, float]: metric -> mean (metrics a record lacks are averaged over those that have it).
    """
    values: dict[str, list[float]] = {}
    for record in records:
        for metric, value in record.metrics.items():
            values.setdefault(metric, []).append(float(value))
    scores = {metric: sum(v) / len(v) for metric, v in values.items()}
    if samples is not None and records:
        scores.update(sampled_metrics(((r.doc_id, r.correct) for r in records), samples=samples))
    return scores


def key_disagreements(
    units: Sequence[Unit], samples: Mapping[str, Sequence[SampleRecord]], preset: Preset
) -> dict[str, dict[str, Any]]:
    """Per task key whose settings compare two verdicts (GSM8K under ``reasoning``: regex and
    math-verify), where they differ (:func:`rvec.eval.verdicts.disagreement`)."""
    out = {}
    for unit in units:
        compare = preset.settings(unit.task.family).compare
        if compare is not None:
            out[unit.key] = disagreement(((r.doc_id, r.metrics) for r in samples[unit.key]), compare)
    return out


def prompt_text(request: Request) -> str:
    """The prompt as a sample line shows it: the raw prompt, or the chat turns as JSON."""
    if request.prompt is not None:
        return request.prompt
    return json.dumps(list(request.messages or ()), ensure_ascii=False)
