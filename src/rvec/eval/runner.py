"""Evaluate a language model on tasks under a preset: plan, answer (cached, resumable), score, write.

The procedure :func:`evaluate` follows:

1. **Plan.** Resolve the preset and condition, expand task groups, add the clean counterpart of
   every adversarial task (``gsm-plus:<type>`` → ``gsm-plus:seed``, ``gsm-symbolic`` →
   ``gsm-symbolic:original``), refuse code-running tasks unless allowed — all before touching data.
   Load the docs and build one *unit* per task key: the clean task, and a perturbed copy per
   perturbation (``"gsm8k+typo:0.05"``), whose doc_ids equal the clean ones.
2. **Answer.** Look every request up in the response cache; send only the misses to the backend,
   all units in one call per request type (so batches stay full), and append each response to the
   cache as soon as the backend finishes it. An interrupted run resumes where it stopped.
3. **Score.** Each task scores its own responses (HumanEval in the sandbox); per-key means become
   ``EvalResult.scores``; each perturbed or adversarial key is set beside its clean key on the
   paired items.
4. **Write** (when ``out_dir`` is given) ``samples/<key>.jsonl`` and ``results.json``
   (:mod:`rvec.eval.results`).

Example:
    >>> lm = HFBackend(model, tokenizer, fingerprint=fp, progress=False)
    >>> result = evaluate(lm, tasks=["gsm8k"], preset="lm-eval", limit=50, out_dir=Path("runs/a"))
    >>> result.scores["gsm8k"]["exact_match,strict-match"]
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rvec
from rvec.errors import CodeExecutionNotAllowedError, InvalidArgumentError, PerturbationNotApplicableError
from rvec.eval.cache import CacheEntry, CacheKey, ResponseCache, request_digest
from rvec.eval.data import DataSource
from rvec.eval.data import fingerprint as data_fingerprint
from rvec.eval.perturb import Perturbation, parse_perturbations, perturb
from rvec.eval.presets import Preset, get_preset
from rvec.eval.progress import EvalProgress
from rvec.eval.results import mean_stderr, sample_filename, write_outputs
from rvec.eval.sandbox import Sandbox
from rvec.eval.tasks import Task, expand_task_names, get_task
from rvec.eval.tasks.bbh import bbh_mean
from rvec.eval.types import (
    Doc,
    EvalResult,
    GenerateRequest,
    LanguageModel,
    LoglikelihoodRequest,
    Request,
    Response,
    SampleRecord,
    Scored,
)

__all__ = ["check_code_execution", "clean_counterpart", "evaluate"]

logger = logging.getLogger(__name__)

# A backend without streaming (no ``on_result``) is called this many requests at a time, so an
# interrupted run loses at most one chunk.
_CHUNK = 64


@dataclass
class _Unit:
    """One task key: a task, clean or under one perturbation, with its docs and requests."""

    key: str
    task: Task
    perturbation: Perturbation | None
    clean_key: str
    docs: list[Doc]
    requests: list[Request]
    n_original: int
    aux: list[LoglikelihoodRequest] | None = None
    """Extra log-likelihood requests (SciQ under a generating preset reports acc/acc_norm too)."""
    responses: list[Response | None] = field(default_factory=list)
    aux_responses: list[Response | None] = field(default_factory=list)


@dataclass
class _Item:
    """One request to answer: where its response goes and which cache file keeps it."""

    unit: _Unit
    index: int
    request: Request
    aux: bool
    digest: str


def clean_counterpart(task_name: str) -> str | None:
    """The clean task an adversarial task pairs with item by item, or ``None`` for a clean task.

    Example:
        >>> clean_counterpart("gsm-plus:digit-expansion")
        'gsm-plus:seed'
    """
    if task_name.startswith("gsm-plus:") and task_name != "gsm-plus:seed":
        return "gsm-plus:seed"
    if task_name == "gsm-symbolic":
        return "gsm-symbolic:original"
    return None


def evaluate(
    lm: LanguageModel,
    *,
    tasks: Sequence[str],
    preset: str | Preset,
    condition: str | None = None,
    perturbations: Sequence[str] = (),
    limit: int | None = None,
    data_dir: Path | None = None,
    allow_code_execution: bool = False,
    seed: int = 1234,
    out_dir: Path | None = None,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> EvalResult:
    """Evaluate ``lm`` on ``tasks`` under ``preset``, with optional perturbed copies of each task.

    Args:
        lm (LanguageModel): The backend (e.g. :class:`~rvec.eval.backends.HFBackend`).
        tasks (Sequence[str]): Task names or groups (``"gsm8k"``, ``"bbh"``, ``"gsm-plus:seed"``).
        preset (str | Preset): ``"paper"``, ``"lm-eval"``, ``"lm-eval-chat"``, or a resolved
            :class:`Preset` (a study's, with overrides).
        condition (str | None, default None): Prompt condition (``"plain"``/``"think"``); ``None``
            is the preset's first.
        perturbations (Sequence[str], default ()): e.g. ``["typo:0.05", "hint"]``; each is evaluated
            beside the clean task, whose key holds the clean score of the same items.
        limit (int | None, default None): First ``limit`` items of each task.
        data_dir (Path | None, default None): Local data root (else ``RVEC_DATA_DIR``, else the Hub).
        allow_code_execution (bool, default False): Needed by HumanEval (runs model-written code).
        seed (int, default 1234): Seed of the perturbations.
        out_dir (Path | None, default None): Where ``results.json``, ``samples/`` and (by default)
            ``cache/`` go; ``None`` writes nothing.
        progress (bool, default True): Show a progress bar.
        cache_dir (Path | None, default None): Response cache; ``None`` = ``out_dir/cache`` (no cache
            when ``out_dir`` is ``None`` too).

    Returns:
        EvalResult: Scores per task key, per-sample records, the resolved preset, timings.

    Raises:
        CodeExecutionNotAllowedError: a task runs model code and ``allow_code_execution`` is False
            (raised before anything is generated).
        UnknownNameError: an unknown task or preset.
        InvalidArgumentError: a bad condition, limit or perturbation, or a perturbation that applies
            to none of the tasks.
        DataNotFoundError: a dataset cannot be found.
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    resolved = preset if isinstance(preset, Preset) else get_preset(preset)
    condition_name = _condition(resolved, condition)
    perts = parse_perturbations(",".join(perturbations)) if perturbations else []
    if limit is not None and limit < 1:
        raise InvalidArgumentError(f"--limit {limit}: must be at least 1")
    requested = expand_task_names(list(tasks))
    names = _with_counterparts(requested)
    check_code_execution(names, allowed=allow_code_execution)
    task_objs = [get_task(n) for n in names]

    fingerprint = lm.fingerprint  # read once: for HFBackend it checks the weights (one pass over them)
    source = DataSource(data_dir)
    units, skipped = _plan(task_objs, requested, resolved, condition_name, perts, source, limit, seed)
    timings["plan_s"] = time.perf_counter() - started

    cache_root = cache_dir if cache_dir is not None else (Path(out_dir) / "cache" if out_dir else None)
    cache = ResponseCache(cache_root) if cache_root is not None else None
    stats = _answer(lm, fingerprint, units, cache, resolved, condition_name, seed, progress, timings)

    t0 = time.perf_counter()
    sandbox = Sandbox(allow=True) if allow_code_execution else None
    scored = {u.key: _score(u, resolved, sandbox) for u in units}
    timings["score_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started

    samples = {u.key: _records(u, scored[u.key]) for u in units}
    scores = {key: _means(records) for key, records in samples.items()}
    result = EvalResult(
        scores=scores,
        samples=samples,
        preset=resolved.to_dict(),
        timings=timings,
        generated_tokens=stats["generated_tokens"],
    )
    if out_dir is not None:
        document = _results_document(
            lm,
            fingerprint,
            result,
            units,
            scored,
            resolved,
            condition_name,
            perts,
            limit,
            seed,
            skipped,
            stats,
        )
        extras = {u.key: _extras(u) for u in units}
        path = write_outputs(Path(out_dir), result, document, extras=extras)
        logger.info("wrote %s", path)
    return result


# ------------------------------------------------------------------------------------- planning
def _condition(preset: Preset, condition: str | None) -> str:
    preset.condition_text(condition)  # raises on a condition the preset does not allow
    return condition if condition is not None else next(iter(preset.conditions))


def _with_counterparts(names: list[str]) -> list[str]:
    out = list(names)
    for name in names:
        clean = clean_counterpart(name)
        if clean is not None and clean not in out:
            out.append(clean)
    return out


def check_code_execution(tasks: Sequence[str], *, allowed: bool) -> None:
    """Refuse tasks that run model-written code (HumanEval) unless the user allowed it.

    Raises:
        CodeExecutionNotAllowedError: such a task is among ``tasks`` (names or groups) and not
            ``allowed``; the one-line message names ``--allow-code-execution``.
    """
    runs_code = [n for n in expand_task_names(list(tasks)) if get_task(n).family == "humaneval"]
    if runs_code and not allowed:
        raise CodeExecutionNotAllowedError(
            f"{', '.join(runs_code)} runs model-written code; pass --allow-code-execution to evaluate it"
        )


def _plan(
    tasks: Sequence[Task],
    requested: Sequence[str],
    preset: Preset,
    condition: str,
    perts: Sequence[Perturbation],
    source: DataSource,
    limit: int | None,
    seed: int,
) -> tuple[list[_Unit], list[dict[str, str]]]:
    """Build every unit; perturbations that cannot change a task's items are skipped and listed."""
    units: list[_Unit] = []
    skipped: list[dict[str, str]] = []
    applied = {p.name: 0 for p in perts}
    for task in tasks:
        docs = task.docs(source, limit=limit)
        n_original = len(docs) if limit is None else len(task.docs(source))
        clean = clean_counterpart(task.name) or task.name
        requests = [task.request(d, preset, condition=condition) for d in docs]
        units.append(_unit(task.name, task, None, clean, docs, requests, n_original, preset))
        if task.name not in requested:
            continue  # an added counterpart is evaluated clean only
        for pert in perts:
            try:
                pairs = [perturb(task, d, preset, pert, seed=seed, condition=condition) for d in docs]
            except PerturbationNotApplicableError as err:
                logger.warning("skipping %s on %s: %s", pert.name, task.name, err)
                skipped.append({"task": task.name, "perturbation": pert.name, "reason": str(err)})
                continue
            applied[pert.name] += 1
            new_docs, new_requests = [d for d, _ in pairs], [r for _, r in pairs]
            key = f"{task.name}+{pert.name}"
            units.append(_unit(key, task, pert, task.name, new_docs, new_requests, n_original, preset))
    useless = [name for name, count in applied.items() if count == 0]
    if useless:
        raise InvalidArgumentError(
            f"perturbation {', '.join(useless)} applies to none of the tasks ({', '.join(requested)}); "
            "drop it or add a task it applies to"
        )
    return units, skipped


def _unit(
    key: str,
    task: Task,
    pert: Perturbation | None,
    clean_key: str,
    docs: list[Doc],
    requests: list[Request],
    n_original: int,
    preset: Preset,
) -> _Unit:
    aux = None
    extra = getattr(task, "loglikelihood_request", None)
    if extra is not None and task.output_type(preset) == "generate":
        aux = [extra(d, preset) for d in docs]
    unit = _Unit(key, task, pert, clean_key, docs, requests, n_original, aux)
    unit.responses = [None] * len(docs)
    unit.aux_responses = [None] * len(docs) if aux is not None else []
    return unit


# ------------------------------------------------------------------------------------ answering
def _answer(
    lm: LanguageModel,
    fingerprint: str,
    units: Sequence[_Unit],
    cache: ResponseCache | None,
    preset: Preset,
    condition: str,
    seed: int,
    progress: bool,
    timings: dict[str, float],
) -> dict[str, int]:
    """Fill every unit's responses from the cache or the backend; return counts for the report."""
    entries: dict[tuple[str, bool], CacheEntry] = {}
    if cache is not None:
        for unit in units:
            for aux in (False, True) if unit.aux is not None else (False,):
                entries[(unit.key, aux)] = cache.open(
                    _cache_key(lm, fingerprint, unit, preset, condition, seed, aux)
                )
    pending: dict[str, list[_Item]] = {"generate": [], "loglikelihood": []}
    hits = 0
    for unit in units:
        for aux, requests in ((False, unit.requests), (True, unit.aux or [])):
            for i, request in enumerate(requests):
                digest = request_digest(request)
                entry = entries.get((unit.key, aux))
                cached = entry.get(unit.docs[i].doc_id, digest) if entry is not None else None
                if cached is not None:
                    _store(unit, i, aux, cached)
                    hits += 1
                    continue
                kind = "generate" if isinstance(request, GenerateRequest) else "loglikelihood"
                pending[kind].append(_Item(unit, i, request, aux, digest))
    logger.info(
        "%d cached, %d to generate, %d to score",
        hits,
        len(pending["generate"]),
        len(pending["loglikelihood"]),
    )
    total = len(pending["generate"]) + len(pending["loglikelihood"])
    tokens = 0
    try:
        with EvalProgress(total, description="eval", enabled=progress) as bar:
            for kind, method in (("generate", lm.generate), ("loglikelihood", lm.loglikelihood)):
                items = pending[kind]
                t0 = time.perf_counter()

                def on_result(i: int, response: Response, items: list[_Item] = items) -> None:
                    item = items[i]
                    _store(item.unit, item.index, item.aux, response)
                    entry = entries.get((item.unit.key, item.aux))
                    if entry is not None:
                        entry.put(item.unit.docs[item.index].doc_id, item.digest, response)
                    bar.advance(tokens=response.n_generated_tokens)

                if items:
                    _call(method, [it.request for it in items], on_result)
                timings[f"{kind}_s"] = time.perf_counter() - t0
                if kind == "generate":
                    tokens = sum(
                        (it.unit.aux_responses if it.aux else it.unit.responses)[it.index].n_generated_tokens
                        for it in items
                    )
    finally:
        for entry in entries.values():
            entry.close()
    return {
        "cache_hits": hits,
        "generated_requests": len(pending["generate"]),
        "loglikelihood_requests": len(pending["loglikelihood"]),
        "generated_tokens": tokens,
    }


def _call(
    method: Callable[..., list[Response]], requests: list[Request], on_result: Callable[[int, Response], None]
) -> None:
    """Stream results through ``on_result``; chunk the call when the backend cannot stream."""
    if "on_result" in inspect.signature(method).parameters:
        responses = method(requests, on_result=on_result)
        _check_count(responses, requests)
        return
    for start in range(0, len(requests), _CHUNK):
        part = requests[start : start + _CHUNK]
        responses = method(part)
        _check_count(responses, part)
        for j, response in enumerate(responses):
            on_result(start + j, response)


def _check_count(responses: Sequence[Response], requests: Sequence[Request]) -> None:
    if len(responses) != len(requests):
        raise InvalidArgumentError(
            f"the backend returned {len(responses)} responses for {len(requests)} requests; fix the backend"
        )


def _store(unit: _Unit, index: int, aux: bool, response: Response) -> None:
    (unit.aux_responses if aux else unit.responses)[index] = response


def _cache_key(
    lm: LanguageModel, fingerprint: str, unit: _Unit, preset: Preset, condition: str, seed: int, aux: bool
) -> CacheKey:
    backend = f"{lm.name}:{getattr(lm, 'identity', '')}"
    task = unit.key + ("#loglikelihood" if aux else "")
    pert = unit.perturbation.name if unit.perturbation is not None else None
    return CacheKey(fingerprint, backend, f"{preset.name}@{preset.version}", condition, task, pert, seed)


# -------------------------------------------------------------------------------------- scoring
def _score(unit: _Unit, preset: Preset, sandbox: Sandbox | None) -> list[Scored]:
    responses = [r for r in unit.responses if r is not None]
    scored = unit.task.score_many(unit.docs, responses, sandbox=sandbox, preset=preset)
    if unit.aux is None:
        return scored
    merged = []
    for doc, main, aux in zip(unit.docs, scored, unit.aux_responses, strict=True):
        extra = unit.task.score(doc, aux, sandbox=sandbox, preset=preset) if aux is not None else None
        metrics = {**main.metrics, **(extra.metrics if extra is not None else {})}
        merged.append(Scored(metrics, main.primary, main.extracted, main.gold))
    return merged


def _records(unit: _Unit, scored: Sequence[Scored]) -> list[SampleRecord]:
    pert = unit.perturbation.name if unit.perturbation is not None else None
    return [
        SampleRecord(
            task=unit.task.name,
            doc_id=doc.doc_id,
            prompt=_prompt_text(request),
            response=response.text if response is not None else None,
            extracted=s.extracted,
            gold=s.gold,
            correct=bool(s.metrics.get(s.primary, 0.0)),
            metrics=dict(s.metrics),
            perturbation=pert,
            primary=s.primary,
        )
        for doc, request, response, s in zip(unit.docs, unit.requests, unit.responses, scored, strict=True)
    ]


def _prompt_text(request: Request) -> str:
    if request.prompt is not None:
        return request.prompt
    return json.dumps(list(request.messages or ()), ensure_ascii=False)


def _means(records: Sequence[SampleRecord]) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    for record in records:
        for metric, value in record.metrics.items():
            values.setdefault(metric, []).append(float(value))
    return {metric: sum(v) / len(v) for metric, v in values.items()}


def _extras(unit: _Unit) -> list[dict[str, Any]]:
    """Per-sample fields beyond :class:`SampleRecord`: scores of continuations, token counts, pairs."""
    out = []
    for i, doc in enumerate(unit.docs):
        response = unit.responses[i]
        extra: dict[str, Any] = {"n_generated_tokens": response.n_generated_tokens if response else 0}
        request = unit.requests[i]
        if isinstance(request, LoglikelihoodRequest) and response is not None:
            extra["continuations"] = list(request.continuations)
            extra["loglikelihoods"] = list(response.loglikelihoods or ())
        paired = unit.task.paired_doc_id(doc) if unit.perturbation is None else doc.doc_id
        if unit.clean_key != unit.key and paired is not None:
            extra["paired_doc_id"] = paired
        out.append(extra)
    return out


# ------------------------------------------------------------------------------ results.json
def _results_document(
    lm: LanguageModel,
    fingerprint: str,
    result: EvalResult,
    units: Sequence[_Unit],
    scored: dict[str, list[Scored]],
    preset: Preset,
    condition: str,
    perts: Sequence[Perturbation],
    limit: int | None,
    seed: int,
    skipped: list[dict[str, str]],
    stats: dict[str, int],
) -> dict[str, Any]:
    """The ``results.json`` content: lm-eval's keys, then rvec's under ``"rvec"``."""
    primaries = {key: (s[0].primary if s else None) for key, s in scored.items()}
    results, configs, versions, n_shot, higher, n_samples = {}, {}, {}, {}, {}, {}
    for unit in units:
        records = result.samples[unit.key]
        entry: dict[str, Any] = {"alias": unit.key}
        for metric, value in result.scores[unit.key].items():
            name, _, filt = metric.partition(",")
            entry[metric] = value
            stderr = mean_stderr([float(r.metrics[metric]) for r in records if metric in r.metrics])
            entry[f"{name}_stderr,{filt}"] = stderr if math.isfinite(stderr) else "N/A"
        results[unit.key] = entry
        settings = preset.settings(unit.task.family)
        configs[unit.key] = {
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
        versions[unit.key] = preset.version
        n_shot[unit.key] = settings.shots
        higher[unit.key] = {m: True for m in result.scores[unit.key]}
        n_samples[unit.key] = {"original": unit.n_original, "effective": len(records)}
    generate_s = result.timings.get("generate_s", 0.0)
    return {
        "results": results,
        "groups": _groups(result.scores),
        "configs": configs,
        "versions": versions,
        "n-shot": n_shot,
        "higher_is_better": higher,
        "n-samples": n_samples,
        "config": {
            "model": lm.name,
            "model_fingerprint": fingerprint,
            "batch_size": getattr(lm, "batch_size", None),
            "limit": limit,
            "random_seed": seed,
        },
        "date": time.time(),
        "total_evaluation_time_seconds": str(result.timings.get("total_s", 0.0)),
        "rvec": {
            "version": rvec.__version__,
            "preset": preset.to_dict(),
            "condition": condition,
            "perturbations": [p.name for p in perts],
            "model_fingerprint": fingerprint,
            "backend": _describe(lm),
            "data_fingerprints": {u.key: data_fingerprint(u.docs) for u in units},
            "samples_files": {u.key: f"samples/{sample_filename(u.key)}" for u in units},
            "pairs": {u.key: _pairing(u, result, primaries) for u in units if u.clean_key != u.key},
            "skipped": skipped,
            "timings": result.timings,
            "generated_tokens": result.generated_tokens,
            "tokens_per_second": result.generated_tokens / generate_s if generate_s > 0 else None,
            "requests": stats,
        },
    }


def _describe(lm: LanguageModel) -> dict[str, Any]:
    describe = getattr(lm, "describe", None)
    return describe() if callable(describe) else {"name": lm.name}


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


def _pairing(unit: _Unit, result: EvalResult, primaries: dict[str, str | None]) -> dict[str, Any]:
    """The perturbed/adversarial key beside its clean key, on the items both have.

    Only accuracies and flip counts: the difference needs its paired interval, which the study's
    statistics compute from the samples.
    """
    clean = {r.doc_id: r for r in result.samples.get(unit.clean_key, [])}
    pairs = []
    for doc, record in zip(unit.docs, result.samples[unit.key], strict=True):
        partner = doc.doc_id if unit.perturbation is not None else unit.task.paired_doc_id(doc)
        if partner is not None and partner in clean:
            pairs.append((clean[partner].correct, record.correct))
    n = len(pairs)
    return {
        "clean_task": unit.clean_key,
        "metric": primaries.get(unit.key),
        "clean_metric": primaries.get(unit.clean_key),
        "n_pairs": n,
        "clean": sum(a for a, _ in pairs) / n if n else None,
        "perturbed": sum(b for _, b in pairs) / n if n else None,
        "both_correct": sum(a and b for a, b in pairs),
        "clean_only": sum(a and not b for a, b in pairs),
        "perturbed_only": sum(b and not a for a, b in pairs),
        "neither": sum(not a and not b for a, b in pairs),
    }
