"""Plan an evaluation: which task keys, which docs, which requests — before anything is generated.

A *unit* is one task key: a task clean (``"gsm8k"``), or under one perturbation
(``"gsm8k+typo:0.05"``, same doc_ids as the clean one). Adversarial tasks bring their clean
counterpart along (``gsm-plus:<type>`` → ``gsm-plus:seed``, ``gsm-symbolic`` →
``gsm-symbolic:original``) so every adversarial score has the clean score of the same items beside
it. Tasks that run model-written code are refused here, before any work, unless allowed and the
sandbox (bubblewrap) works on this machine; so are log-likelihood tasks when thinking or sampling
is on.

With sampling on (``preset.sampling``, :mod:`rvec.eval.decoding`), a unit holds one entry per
*sample*: its docs repeat each item ``n`` times (samples ``0..n−1`` in a row), each with its own
seeded request, so scoring and records treat samples like items and the per-item means come from
grouping by doc_id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from rvec.errors import CodeExecutionNotAllowedError, InvalidArgumentError, PerturbationNotApplicableError
from rvec.eval.data import DataSource
from rvec.eval.decoding import draw_requests
from rvec.eval.perturb import Perturbation, perturb
from rvec.eval.presets import Preset
from rvec.eval.sandbox import require_isolation
from rvec.eval.tasks import Task, expand_task_names, get_task
from rvec.eval.thinking import check_thinking
from rvec.eval.types import Doc, GenerateRequest, LoglikelihoodRequest, Request, Response

__all__ = [
    "Unit",
    "check_code_execution",
    "check_sampling_tasks",
    "check_thinking_tasks",
    "clean_counterpart",
    "plan_units",
    "resolve_condition",
    "with_counterparts",
]

logger = logging.getLogger(__name__)


@dataclass
class Unit:
    """One task key: a task, clean or under one perturbation, with its docs, requests and (once
    answered) responses."""

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
    samples: int = 1
    """Responses per item: entry ``i`` is sample ``i % samples`` of its doc (1: greedy)."""

    def item_id(self, index: int) -> str:
        """The response cache's id of entry ``index``: the doc_id, with ``#<sample>`` when sampled."""
        doc_id = self.docs[index].doc_id
        return doc_id if self.samples == 1 else f"{doc_id}#{index % self.samples}"

    def sample_index(self, index: int) -> int | None:
        """Which sample of its item entry ``index`` is; ``None`` when the run is greedy."""
        return index % self.samples if self.samples > 1 else None


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


def resolve_condition(preset: Preset, condition: str | None) -> str:
    """The condition's name (``None`` = the preset's first).

    Raises:
        InvalidArgumentError: the preset does not allow ``condition``.
    """
    preset.condition_text(condition)  # raises on a condition the preset does not allow
    return condition if condition is not None else next(iter(preset.conditions))


def with_counterparts(names: list[str]) -> list[str]:
    """``names`` plus the clean counterpart of each adversarial task, once each, in order."""
    out = list(names)
    for name in names:
        clean = clean_counterpart(name)
        if clean is not None and clean not in out:
            out.append(clean)
    return out


def check_code_execution(tasks: Sequence[str], *, allowed: bool) -> None:
    """Refuse tasks that run model-written code (HumanEval) unless allowed and isolatable here.

    Raises:
        CodeExecutionNotAllowedError: such a task is among ``tasks`` (names or groups) and not
            ``allowed``; the one-line message names ``--allow-code-execution``.
        SandboxUnavailableError: such a task is allowed but bubblewrap is missing or cannot create
            the sandbox; the one-line message names the install command.
    """
    runs_code = [n for n in expand_task_names(list(tasks)) if get_task(n).family == "humaneval"]
    if runs_code and not allowed:
        raise CodeExecutionNotAllowedError(
            f"{', '.join(runs_code)} runs model-written code; pass --allow-code-execution to evaluate it"
        )
    if runs_code:
        require_isolation()


def check_thinking_tasks(tasks: Sequence[str], preset: Preset) -> None:
    """Refuse log-likelihood tasks (names or groups) when ``preset`` has thinking on.

    Raises:
        InvalidArgumentError: thinking is on and a task is scored by log-likelihood under ``preset``.
        UnknownNameError: an unknown task, or a task family the preset has no settings for.
    """
    if preset.think is None:
        return
    kinds = {name: get_task(name).output_type(preset) for name in expand_task_names(list(tasks))}
    check_thinking(kinds, preset=preset.name, settings=preset.think)


def check_sampling_tasks(tasks: Sequence[str], preset: Preset) -> None:
    """Refuse log-likelihood tasks (names or groups) when ``preset`` draws several samples: a
    choice's log-likelihood is computed, never drawn, so its samples would all be the same.

    Raises:
        InvalidArgumentError: sampling is on and a task is scored by log-likelihood under ``preset``.
        UnknownNameError: an unknown task, or a task family the preset has no settings for.
    """
    if preset.sampling is None or preset.sampling.samples == 1:
        return
    names = [n for n in expand_task_names(list(tasks)) if get_task(n).output_type(preset) == "loglikelihood"]
    if names:
        raise InvalidArgumentError(
            f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} scored by log-likelihood under preset "
            f"{preset.name!r}, which draws no samples ({preset.sampling.samples} asked); draw 1 sample or "
            "evaluate generative tasks only"
        )


def plan_units(
    tasks: Sequence[Task],
    requested: Sequence[str],
    preset: Preset,
    condition: str,
    perts: Sequence[Perturbation],
    source: DataSource,
    limit: int | None,
    seed: int,
    *,
    doc_ids: Sequence[str] | None = None,
) -> tuple[list[Unit], list[dict[str, str]]]:
    """Load the docs and build every unit: each task clean, then once per perturbation.

    Perturbations that cannot change a task's items are skipped and listed (``skipped``); added
    clean counterparts (not in ``requested``) are never perturbed. ``doc_ids`` keeps exactly those
    items of each task, in the task's order, instead of the first ``limit``.

    Raises:
        InvalidArgumentError: a perturbation applies to none of the tasks, thinking is on and a
            task is scored by log-likelihood, ``doc_ids`` with ``limit``, or a doc id a task lacks.
        DataNotFoundError: a dataset cannot be found.
    """
    check_thinking_tasks([t.name for t in tasks], preset)  # before any data is read
    check_sampling_tasks([t.name for t in tasks], preset)
    units: list[Unit] = []
    skipped: list[dict[str, str]] = []
    applied = {p.name: 0 for p in perts}
    if doc_ids is not None and limit is not None:
        raise InvalidArgumentError(f"pass either doc_ids ({len(doc_ids)}) or --limit {limit}, not both")
    for task in tasks:
        docs = task.docs(source, limit=limit)
        n_original = len(docs) if limit is None else len(task.docs(source))
        if doc_ids is not None:
            docs = _chosen(task.name, docs, doc_ids)
        clean = clean_counterpart(task.name) or task.name
        requests = [task.request(d, preset, condition=condition) for d in docs]
        units.append(_unit(task.name, task, None, clean, docs, requests, n_original, preset, seed))
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
            units.append(_unit(key, task, pert, task.name, new_docs, new_requests, n_original, preset, seed))
    useless = [name for name, count in applied.items() if count == 0]
    if useless:
        raise InvalidArgumentError(
            f"perturbation {', '.join(useless)} applies to none of the tasks ({', '.join(requested)}); "
            "drop it or add a task it applies to"
        )
    return units, skipped


def _chosen(task: str, docs: list[Doc], doc_ids: Sequence[str]) -> list[Doc]:
    """The docs named by ``doc_ids``, in the task's order."""
    wanted = set(doc_ids)
    chosen = [d for d in docs if d.doc_id in wanted]
    if len(chosen) != len(wanted):
        missing = sorted(wanted - {d.doc_id for d in chosen})
        raise InvalidArgumentError(
            f"{task}: {len(missing)} doc ids are not items of the task (e.g. {missing[0]!r}); "
            "choose ids from the task's items"
        )
    return chosen


def _unit(
    key: str,
    task: Task,
    pert: Perturbation | None,
    clean_key: str,
    docs: list[Doc],
    requests: list[Request],
    n_original: int,
    preset: Preset,
    seed: int,
) -> Unit:
    requests = [_with_template_args(r, preset) for r in requests]
    aux = None
    extra = getattr(task, "loglikelihood_request", None)
    # With thinking on, the extra log-likelihood report (SciQ under ``paper``) is skipped: a choice's
    # likelihood right after the question leaves no room to think. With sampling on too: the report
    # would be the same for every sample of an item.
    quiet = preset.think is None and preset.sampling is None
    if extra is not None and task.output_type(preset) == "generate" and quiet:
        aux = [_with_template_args(extra(d, preset), preset) for d in docs]
    samples = 1
    if preset.sampling is not None and any(isinstance(r, GenerateRequest) for r in requests):
        samples = preset.sampling.samples
        drawn = [draw_requests(r, preset.sampling, seed=seed) for r in requests]  # type: ignore[arg-type]
        docs = [d for d, group in zip(docs, drawn, strict=True) for _ in group]
        requests = [r for group in drawn for r in group]
    unit = Unit(key, task, pert, clean_key, docs, requests, n_original, aux, samples=samples)
    unit.responses = [None] * len(docs)
    unit.aux_responses = [None] * len(docs) if aux is not None else []
    return unit


def _with_template_args(request: Request, preset: Preset) -> Request:
    """A chat request with the preset's chat-template switches (raw prompts have no template)."""
    if not preset.chat_template_args or request.messages is None:
        return request
    return replace(request, template_args=tuple(sorted(preset.chat_template_args.items())))
