"""The files an evaluation leaves behind: ``results.json`` and ``samples/<task>.jsonl``.

``results.json`` follows lm-evaluation-harness's layout where it has one, so tools that read lm-eval
output read ours: ``results[task]["metric,filter"]`` (with ``"metric_stderr,filter"``), ``groups``,
``configs``, ``versions``, ``n-shot``, ``higher_is_better``, ``n-samples``, ``config``, ``date``,
``total_evaluation_time_seconds``. Everything rvec adds sits under one ``"rvec"`` key: the resolved
preset, the model and backend fingerprints, data fingerprints, the clean task each perturbed or
adversarial task pairs with (and both scores on the paired items), the items where two verdicts
disagree (a preset's ``compare``), the think-block counts of a thinking run, the sampling of a
sampled run (``avg@n`` and ``pass@k`` are plain metric names under ``results``: ``"avg@8"``,
``"pass@1"``), the generated-token lengths of every generating task key (mean, median, p90),
timings and tokens/s.

Every file is written to a temporary sibling and renamed into place; ``results.json`` is written
last, so its presence means the samples beside it are complete.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import rvec
from rvec.atomic import write_json, write_text
from rvec.eval.data import docs_digest
from rvec.eval.lengths import records_length_summary
from rvec.eval.perturb import Perturbation
from rvec.eval.plan import Unit
from rvec.eval.presets import Preset
from rvec.eval.sampling import per_item
from rvec.eval.tasks.bbh import bbh_mean
from rvec.eval.thinking import think_summary
from rvec.eval.types import (
    EvalResult,
    GenerateRequest,
    LanguageModel,
    LoglikelihoodRequest,
    SampleRecord,
    Scored,
)

__all__ = [
    "mean_stderr",
    "results_document",
    "sample_extras",
    "sample_filename",
    "write_json_atomic",
    "write_outputs",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")


def sample_filename(task_key: str) -> str:
    """``"bbh:navigate"`` -> ``"bbh_navigate.jsonl"`` (no ``:`` in file names, for Windows)."""
    return _UNSAFE.sub("_", task_key) + ".jsonl"


def mean_stderr(values: Sequence[float]) -> float:
    """Standard error of the mean with the n−1 sample deviation, as lm-eval's ``mean_stderr``."""
    n = len(values)
    if n < 2:
        return float("nan")
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON (lm-eval's layout: indented, UTF-8 kept) atomically over ``path``."""
    write_json(path, data, indent=2, ensure_ascii=False, default=_json_default)


def write_outputs(
    out_dir: Path,
    result: EvalResult,
    document: Mapping[str, Any],
    *,
    extras: Mapping[str, list[dict[str, Any]]] | None = None,
) -> Path:
    """Write ``samples/<task>.jsonl`` for every task key, then ``results.json``.

    Args:
        out_dir (Path): Output folder (created when missing).
        result (EvalResult): What :func:`~rvec.eval.runner.evaluate` produced.
        document (Mapping): The ``results.json`` content.
        extras (Mapping | None, default None): Per task key, one dict per sample of extra fields
            merged into its line (log-likelihoods, token counts, paired doc ids).

    Returns:
        Path: The ``results.json`` path.
    """
    out_dir = Path(out_dir)
    for key, records in result.samples.items():
        more = (extras or {}).get(key, [{}] * len(records))
        lines = [_sample_line(r, m) for r, m in zip(records, more, strict=True)]
        write_text(out_dir / "samples" / sample_filename(key), "".join(lines))
    path = out_dir / "results.json"
    write_json_atomic(path, document)
    return path


def _sample_line(record: SampleRecord, extra: Mapping[str, Any]) -> str:
    line = {**asdict(record), **extra}
    line["metrics"] = dict(record.metrics)
    for optional in ("sample", "think"):  # only on sampled and thinking runs: greedy lines as before
        if line[optional] is None:
            del line[optional]
    return json.dumps(line, ensure_ascii=False, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    # Mappings and tuples from frozen dataclasses; NaN stays NaN (json writes it as NaN, as lm-eval).
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def sample_extras(unit: Unit) -> list[dict[str, Any]]:
    """Per-sample fields beyond :class:`SampleRecord`: the continuations and their scores
    (log-likelihood tasks) and the clean doc_id an adversarial item pairs with."""
    out = []
    for i, doc in enumerate(unit.docs):
        response = unit.responses[i]
        extra: dict[str, Any] = {}
        request = unit.requests[i]
        if isinstance(request, LoglikelihoodRequest) and response is not None:
            extra["continuations"] = list(request.continuations)
            extra["loglikelihoods"] = list(response.loglikelihoods or ())
        paired = unit.task.paired_doc_id(doc) if unit.perturbation is None else doc.doc_id
        if unit.clean_key != unit.key and paired is not None:
            extra["paired_doc_id"] = paired
        out.append(extra)
    return out


def results_document(
    lm: LanguageModel,
    result: EvalResult,
    *,
    fingerprint: str,
    units: Sequence[Unit],
    scored: Mapping[str, list[Scored]],
    preset: Preset,
    condition: str,
    perturbations: Sequence[Perturbation],
    limit: int | None,
    seed: int,
    skipped: list[dict[str, str]],
    requests: Mapping[str, int],
    think: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The ``results.json`` content: lm-eval's keys, then rvec's under ``"rvec"``.

    Args:
        lm (LanguageModel): The backend (its name, batch size and ``describe()``).
        result (EvalResult): Scores and samples per task key.
        fingerprint (str): The weights' fingerprint the responses came from.
        units (Sequence[Unit]): The evaluated task keys.
        scored (Mapping): Per task key, the task's verdicts (for the primary metric names).
        preset (Preset): The resolved preset.
        condition (str): The prompt condition.
        perturbations (Sequence[Perturbation]): The perturbations asked for.
        limit (int | None): Items per task, as asked.
        seed (int): Seed of the perturbations.
        skipped (list[dict]): Perturbations dropped for tasks they cannot change, with the reason.
        requests (Mapping[str, int]): Cache hits and requests sent, by kind.
        think (Mapping | None, default None): Per task key, the think records of its samples
            (thinking on); summarised under ``rvec.think``.

    Returns:
        dict: JSON-ready; NaN standard errors are written ``"N/A"`` as lm-eval does.
    """
    primaries = {key: (s[0].primary if s else None) for key, s in scored.items()}
    tables = _task_tables(units, result, preset, condition, primaries)
    generate_s = result.timings.get("generate_s", 0.0)
    return {
        "results": tables["results"],
        "groups": _groups(result.scores),
        **{name: tables[name] for name in ("configs", "versions", "n-shot", "higher_is_better", "n-samples")},
        "config": {
            "model": lm.name,
            "model_fingerprint": fingerprint,
            "batch_size": lm.batch_size,
            "limit": limit,
            "random_seed": seed,
        },
        "date": time.time(),
        "total_evaluation_time_seconds": str(result.timings.get("total_s", 0.0)),
        "rvec": {
            "version": rvec.__version__,
            "preset": preset.to_dict(),
            "condition": condition,
            "perturbations": [p.name for p in perturbations],
            "model_fingerprint": fingerprint,
            "backend": lm.describe(),
            "data_fingerprints": {u.key: docs_digest(u.docs[:: u.samples]) for u in units},
            "samples_files": {u.key: f"samples/{sample_filename(u.key)}" for u in units},
            "pairs": {u.key: _pairing(u, result, primaries) for u in units if u.clean_key != u.key},
            "disagreements": result.disagreements,
            "think": _think_summaries(think, preset),
            "sampling": _sampling(units, preset, primaries),
            "lengths": {u.key: _lengths(u, result) for u in units if _generates(u)},
            "skipped": skipped,
            "timings": result.timings,
            "generated_tokens": result.generated_tokens,
            "tokens_per_second": result.generated_tokens / generate_s if generate_s > 0 else None,
            "requests": dict(requests),
        },
    }


def _task_tables(
    units: Sequence[Unit],
    result: EvalResult,
    preset: Preset,
    condition: str,
    primaries: Mapping[str, str | None],
) -> dict[str, dict[str, Any]]:
    """lm-eval's per-task tables (``results``, ``configs``, ``versions``, ``n-shot``,
    ``higher_is_better``, ``n-samples``), each keyed by task key. ``n-samples`` counts items, not
    the samples drawn for them (a sampled run's docs repeat each item ``n`` times in a row)."""
    names = ("results", "configs", "versions", "n-shot", "higher_is_better", "n-samples")
    tables: dict[str, dict[str, Any]] = {name: {} for name in names}
    for unit in units:
        records = result.samples[unit.key]
        entry: dict[str, Any] = {"alias": unit.key}
        for metric, value in result.scores[unit.key].items():
            entry[metric] = value
            entry.update(_stderr_entry(metric, records))
        tables["results"][unit.key] = entry
        settings = preset.settings(unit.task.family)
        tables["configs"][unit.key] = {
            "task": unit.task.name,
            "reference_url": unit.task.reference_url,
            "output_type": unit.task.output_type(preset),
            "preset": f"{preset.name}@{preset.version}",
            "condition": condition,
            "perturbation": unit.perturbation.name if unit.perturbation is not None else None,
            "clean_task": unit.clean_key,
            "primary_metric": primaries[unit.key] or settings.primary_metric,
            "settings": settings.model_dump(mode="json"),
        }
        tables["versions"][unit.key] = preset.version
        tables["n-shot"][unit.key] = settings.shots
        tables["higher_is_better"][unit.key] = {m: True for m in result.scores[unit.key]}
        tables["n-samples"][unit.key] = {
            "original": unit.n_original,
            "effective": len(records) // unit.samples,
        }
    return tables


def _stderr_entry(metric: str, records: Sequence[SampleRecord]) -> dict[str, Any]:
    """``{"name_stderr,filter": …}`` of a metric over the records that have it (lm-eval's naming);
    a sampled metric (``avg@8``, ``pass@4``: no filter, not a per-record value) gets none."""
    name, comma, filt = metric.partition(",")
    if not comma:
        return {}
    stderr = mean_stderr([float(r.metrics[metric]) for r in records if metric in r.metrics])
    return {f"{name}_stderr,{filt}": stderr if math.isfinite(stderr) else "N/A"}


def _generates(unit: Unit) -> bool:
    return any(isinstance(r, GenerateRequest) for r in unit.requests)


def _lengths(unit: Unit, result: EvalResult) -> dict[str, float] | None:
    """Generated tokens per response of a generating task key (every sample when sampling)."""
    return records_length_summary(result.samples[unit.key])


def _sampling(
    units: Sequence[Unit], preset: Preset, primaries: Mapping[str, str | None]
) -> dict[str, Any] | None:
    """A sampled run's settings, and per task key the samples per item and the metric that
    ``avg@n`` and ``pass@k`` count; ``None`` when greedy."""
    if preset.sampling is None:
        return None
    return {
        "samples": preset.sampling.samples,
        "temperature": preset.sampling.temperature,
        "top_p": preset.sampling.top_p,
        "keys": {
            u.key: {"samples_per_item": u.samples, "metric": primaries.get(u.key)}
            for u in units
            if _generates(u)
        },
    }


def _think_summaries(
    think: Mapping[str, Sequence[Mapping[str, Any]]] | None, preset: Preset
) -> dict[str, Any] | None:
    if think is None or preset.think is None:
        return None
    return {key: think_summary(list(records), preset.think) for key, records in think.items()}


def _groups(scores: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Unweighted BBH means over the subtasks evaluated (per perturbation suffix)."""
    groups: dict[str, Any] = {}
    suffixes = {key.partition("+")[2] for key in scores if key.startswith("bbh:")}
    for suffix in sorted(suffixes):
        tail = f"+{suffix}" if suffix else ""
        subset = {
            k.removesuffix(tail): v for k, v in scores.items() if k.startswith("bbh:") and k.endswith(tail)
        }
        subset = {k: v for k, v in subset.items() if "+" not in k}
        metrics = sorted({m for v in subset.values() for m in v})
        group = {"alias": f"bbh{tail}", "n_subtasks": len(subset)}
        group.update({m: bbh_mean(subset, m, require_all=False) for m in metrics})
        groups[f"bbh{tail}"] = group
    return groups


def _pairing(unit: Unit, result: EvalResult, primaries: dict[str, str | None]) -> dict[str, Any]:
    """The perturbed/adversarial key beside its clean key, on the items both have.

    Only accuracies and flip counts: the difference needs its paired interval, which the study's
    statistics compute from the samples. Sampled runs pair each item's mean correctness: a flip is
    then an item whose mean rose or fell, and ``both_correct``/``neither`` count the items whose
    samples were all right or all wrong on both sides.
    """
    clean = per_item((r.doc_id, r.correct) for r in result.samples.get(unit.clean_key, []))
    mine = per_item((r.doc_id, r.correct) for r in result.samples[unit.key])
    pairs = []
    for doc in dict((d.doc_id, d) for d in unit.docs).values():
        partner = doc.doc_id if unit.perturbation is not None else unit.task.paired_doc_id(doc)
        if partner is not None and partner in clean:
            pairs.append((float(clean[partner]), float(mine[doc.doc_id])))
    n = len(pairs)
    return {
        "clean_task": unit.clean_key,
        "metric": primaries.get(unit.key),
        "clean_metric": primaries.get(unit.clean_key),
        "n_pairs": n,
        "clean": sum(a for a, _ in pairs) / n if n else None,
        "perturbed": sum(b for _, b in pairs) / n if n else None,
        "both_correct": sum(a == 1 and b == 1 for a, b in pairs),
        "clean_only": sum(a > b for a, b in pairs),
        "perturbed_only": sum(b > a for a, b in pairs),
        "neither": sum(a == 0 and b == 0 for a, b in pairs),
    }
