"""Evaluate a language model on tasks under a preset: plan, answer (cached, resumable), score, write.

The procedure :func:`evaluate` follows:

1. **Plan** (:mod:`rvec.eval.plan`). Resolve the preset and condition, expand task groups, add the
   clean counterpart of every adversarial task, refuse code-running tasks unless allowed — all
   before touching data. Load the docs and build one *unit* per task key: the clean task, and a
   perturbed copy per perturbation (``"gsm8k+typo:0.05"``), whose doc_ids equal the clean ones.
2. **Answer.** Look every request up in the response cache; send only the misses to the backend,
   all units in one call per request type (so batches stay full), and append each response to the
   cache as soon as the backend finishes it. An interrupted run resumes where it stopped.
   With sampling on (``preset.sampling``), every item is asked ``n`` times, each sample with its own
   seed (:mod:`rvec.eval.decoding`), and cached as ``<doc_id>#<j>``. With thinking on, the think tag
   is checked against the backend's tokenizer first (it must round-trip), before anything is generated.
3. **Score.** Each task scores its own responses (HumanEval in the sandbox) — with thinking on
   (``preset.think``), only the text after the closing think tag, and a block that never closed
   scores 0 (:mod:`rvec.eval.thinking`); per-key means (and, sampled, ``avg@n`` and ``pass@k``,
   :mod:`rvec.eval.records`) become ``EvalResult.scores``; each perturbed or adversarial key is set
   beside its clean key on the paired items.
4. **Write** (when ``out_dir`` is given) ``samples/<key>.jsonl`` and ``results.json``
   (:mod:`rvec.eval.results`).

Example:
    >>> lm = HFBackend(model, tokenizer, fingerprint=fp, progress=False)
    >>> result = evaluate(lm, tasks=["gsm8k"], preset="lm-eval", limit=50, out_dir=Path("runs/a"))
    >>> result.scores["gsm8k"]["exact_match,strict-match"]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rvec.defaults import DEFAULT_SEED
from rvec.errors import InvalidArgumentError
from rvec.eval.cache import CacheEntry, CacheKey, ResponseCache, request_digest
from rvec.eval.data import DataSource
from rvec.eval.perturb import parse_perturbations
from rvec.eval.plan import (
    Unit,
    check_code_execution,
    check_thinking_tasks,
    clean_counterpart,
    plan_units,
    resolve_condition,
    with_counterparts,
)
from rvec.eval.presets import Preset, get_preset
from rvec.eval.records import key_disagreements, key_scores, sample_records, think_records
from rvec.eval.results import results_document, sample_extras, write_outputs
from rvec.eval.sandbox import Sandbox
from rvec.eval.tasks import expand_task_names, get_task
from rvec.eval.thinking import split_think, think_answer, unclosed_verdict
from rvec.eval.types import (
    EvalResult,
    GenerateRequest,
    LanguageModel,
    Request,
    Response,
    Scored,
    TokenCounting,
)
from rvec.progress import ProgressBar

__all__ = ["check_code_execution", "check_thinking_tasks", "clean_counterpart", "evaluate"]

logger = logging.getLogger(__name__)


@dataclass
class _Item:
    """One request to answer: where its response goes and which cache file keeps it."""

    unit: Unit
    index: int
    request: Request
    aux: bool
    digest: str


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
    seed: int = DEFAULT_SEED,
    out_dir: Path | None = None,
    progress: bool = True,
    cache_dir: Path | None = None,
    doc_ids: Sequence[str] | None = None,
) -> EvalResult:
    """Evaluate ``lm`` on ``tasks`` under ``preset``, with optional perturbed copies of each task.

    Args:
        lm (LanguageModel): The backend (e.g. :class:`~rvec.model.HFBackend`).
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
        seed (int, default 1234): Seed of the perturbations and of the samples (sampled presets).
        out_dir (Path | None, default None): Where ``results.json``, ``samples/`` and (by default)
            ``cache/`` go; ``None`` writes nothing.
        progress (bool, default True): Show a progress bar.
        cache_dir (Path | None, default None): Response cache; ``None`` = ``out_dir/cache`` (no cache
            when ``out_dir`` is ``None`` too).
        doc_ids (Sequence[str] | None, default None): Evaluate exactly these items of each task (in
            the task's order) instead of the first ``limit``: a study's dev or test split.

    Returns:
        EvalResult: Scores per task key, per-sample records, the resolved preset, timings.

    Raises:
        CodeExecutionNotAllowedError: a task runs model code and ``allow_code_execution`` is False
            (raised before anything is generated).
        UnknownNameError: an unknown task or preset.
        InvalidArgumentError: a bad condition, limit or perturbation, a perturbation that applies
            to none of the tasks, a log-likelihood task while the preset has thinking or several
            samples on, a think tag the backend's tokenizer cannot round-trip, ``limit`` together
            with ``doc_ids``, or a doc id a task does not have.
        DataNotFoundError: a dataset cannot be found.
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    resolved = preset if isinstance(preset, Preset) else get_preset(preset)
    condition_name = resolve_condition(resolved, condition)
    perts = parse_perturbations(",".join(perturbations)) if perturbations else []
    if limit is not None and limit < 1:
        raise InvalidArgumentError(f"--limit {limit}: must be at least 1")
    requested = expand_task_names(list(tasks))
    names = with_counterparts(requested)
    check_code_execution(names, allowed=allow_code_execution)
    task_objs = [get_task(n) for n in names]

    fingerprint = lm.fingerprint  # read once: for HFBackend it checks the weights (one pass over them)
    source = DataSource(data_dir)
    units, skipped = plan_units(
        task_objs, requested, resolved, condition_name, perts, source, limit, seed, doc_ids=doc_ids
    )
    check_think_tag(lm, resolved)
    timings["plan_s"] = time.perf_counter() - started

    cache_root = cache_dir if cache_dir is not None else (Path(out_dir) / "cache" if out_dir else None)
    cache = ResponseCache(cache_root) if cache_root is not None else None
    stats = _answer(lm, fingerprint, units, cache, resolved, condition_name, seed, progress, timings)

    t0 = time.perf_counter()
    sandbox = Sandbox(allow=True) if allow_code_execution else None
    scored = {u.key: _score(u, resolved, sandbox) for u in units}
    timings["score_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started

    think = think_records(lm, units, resolved)
    samples = {u.key: sample_records(u, scored[u.key], think[u.key] if think else None) for u in units}
    sampled = {u.key: u.samples if _drawn(u, resolved) else None for u in units}
    scores = {key: key_scores(records, samples=sampled[key]) for key, records in samples.items()}
    result = EvalResult(
        scores=scores,
        samples=samples,
        preset=resolved.to_dict(),
        timings=timings,
        generated_tokens=stats["generated_tokens"],
        disagreements=key_disagreements(units, samples, resolved),
    )
    if out_dir is not None:
        document = results_document(
            lm,
            result,
            fingerprint=fingerprint,
            units=units,
            scored=scored,
            preset=resolved,
            condition=condition_name,
            perturbations=perts,
            limit=limit,
            seed=seed,
            skipped=skipped,
            requests=stats,
            think=think,
        )
        extras = {u.key: sample_extras(u) for u in units}
        path = write_outputs(Path(out_dir), result, document, extras=extras)
        logger.info("wrote %s", path)
    return result


# ------------------------------------------------------------------------------------ answering
def _answer(
    lm: LanguageModel,
    fingerprint: str,
    units: Sequence[Unit],
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
                cached = entry.get(unit.item_id(i), digest) if entry is not None else None
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
        with ProgressBar("eval", total=total, enabled=progress) as bar:
            for kind, method in (("generate", lm.generate), ("loglikelihood", lm.loglikelihood)):
                items = pending[kind]
                t0 = time.perf_counter()

                def on_result(i: int, response: Response, items: list[_Item] = items) -> None:
                    item = items[i]
                    _store(item.unit, item.index, item.aux, response)
                    entry = entries.get((item.unit.key, item.aux))
                    if entry is not None:
                        entry.put(item.unit.item_id(item.index), item.digest, response)
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
    """Stream results through ``on_result`` (every backend streams; see ``LanguageModel``)."""
    responses = method(requests, on_result=on_result)
    _check_count(responses, requests)


def _check_count(responses: Sequence[Response], requests: Sequence[Request]) -> None:
    if len(responses) != len(requests):
        raise InvalidArgumentError(
            f"the backend returned {len(responses)} responses for {len(requests)} requests; fix the backend"
        )


def _store(unit: Unit, index: int, aux: bool, response: Response) -> None:
    (unit.aux_responses if aux else unit.responses)[index] = response


def _cache_key(
    lm: LanguageModel, fingerprint: str, unit: Unit, preset: Preset, condition: str, seed: int, aux: bool
) -> CacheKey:
    backend = f"{lm.name}:{lm.identity}"
    task = unit.key + ("#loglikelihood" if aux else "")
    pert = unit.perturbation.name if unit.perturbation is not None else None
    sampling = preset.sampling.label() if preset.sampling is not None and not aux else None
    preset_name = f"{preset.name}@{preset.version}"
    return CacheKey(fingerprint, backend, preset_name, condition, task, pert, seed, sampling)


def _drawn(unit: Unit, preset: Preset) -> bool:
    """Whether the unit's responses were drawn (a sampled preset and a generating task)."""
    return preset.sampling is not None and any(isinstance(r, GenerateRequest) for r in unit.requests)


def check_think_tag(lm: LanguageModel, preset: Preset) -> None:
    """Refuse a think tag the backend's tokenizer cannot round-trip, before anything is generated:
    a tag that decodes to other text (unknown characters, a special token that responses drop) could
    never be found, and every response would count as unclosed.

    Raises:
        InvalidArgumentError: thinking is on, the backend counts tokens, and the tag does not round-trip.
    """
    if preset.think is None or not isinstance(lm, TokenCounting):
        return
    tag = preset.think.end_tag
    if not lm.round_trips(tag):
        raise InvalidArgumentError(
            f"think end tag {tag!r} does not survive {lm.name}'s tokenizer (its tokens do not decode back "
            "to the tag as responses are decoded); pass the tag the model writes with --think-end-tag"
        )


# -------------------------------------------------------------------------------------- scoring
def _score(unit: Unit, preset: Preset, sandbox: Sandbox | None) -> list[Scored]:
    responses = [r for r in unit.responses if r is not None]
    splits = [split_think(r.text or "", preset.think.end_tag) for r in responses] if preset.think else None
    if splits is not None:
        responses = [think_answer(r, split) for r, split in zip(responses, splits, strict=True)]
    scored = unit.task.score_many(unit.docs, responses, sandbox=sandbox, preset=preset)
    if splits is not None:
        scored = [s if split.closed else unclosed_verdict(s) for s, split in zip(scored, splits, strict=True)]
    if unit.aux is None:
        return scored
    merged = []
    for doc, main, aux in zip(unit.docs, scored, unit.aux_responses, strict=True):
        extra = unit.task.score(doc, aux, sandbox=sandbox, preset=preset) if aux is not None else None
        metrics = {**main.metrics, **(extra.metrics if extra is not None else {})}
        merged.append(Scored(metrics, main.primary, main.extracted, main.gold))
    return merged
