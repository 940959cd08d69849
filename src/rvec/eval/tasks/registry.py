"""Every task by name, and the group names that expand to several.

Concrete names: ``gsm8k``, ``humaneval``, ``sciq``, ``bbh:<subtask>`` (27), ``gsm-plus:<type>``
(8, spaces as ``-``), ``gsm-plus:seed``, ``gsm-symbolic``, ``gsm-symbolic:original``, ``arith``
(rvec's in-domain task, levels mixed), ``arith:<level>`` (1–4), ``math500`` and ``aime24``. Groups:
``bbh`` (the 27 subtasks) and ``gsm-plus`` (the seeds, then the 8 types).

Example:
    >>> expand_task_names("gsm8k,bbh")[:3]
    ['gsm8k', 'bbh:boolean_expressions', 'bbh:causal_judgement']
"""

from __future__ import annotations

from collections.abc import Sequence

from rvec.errors import ConfigError, UnknownNameError
from rvec.eval.scoring import BBH_SUBTASKS
from rvec.eval.tasks.adversarial import GSM_PLUS_TYPES, GSMPlus, GSMPlusSeed, GSMSymbolic, GSMSymbolicOriginal
from rvec.eval.tasks.arith import LEVELS, Arith
from rvec.eval.tasks.base import Task
from rvec.eval.tasks.bbh import BBH
from rvec.eval.tasks.gsm8k import GSM8K
from rvec.eval.tasks.humaneval import HumanEval
from rvec.eval.tasks.math import AIME24, MATH500
from rvec.eval.tasks.sciq import SciQ

__all__ = ["GROUPS", "TASKS", "expand_task_names", "get_task", "task_names"]


def _build(tasks: list[Task]) -> dict[str, Task]:
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError([f"duplicate task name {n!r}" for n in duplicates], source="tasks")
    return {t.name: t for t in tasks}


TASKS: dict[str, Task] = _build(
    [
        GSM8K(),
        HumanEval(),
        SciQ(),
        *(BBH(s) for s in BBH_SUBTASKS),
        GSMPlusSeed(),
        *(GSMPlus(t) for t in GSM_PLUS_TYPES),
        GSMSymbolic(),
        GSMSymbolicOriginal(),
        Arith(),
        *(Arith(level) for level in LEVELS),
        MATH500(),
        AIME24(),
    ]
)
"""Every concrete task by name."""

GROUPS: dict[str, tuple[str, ...]] = {
    "bbh": tuple(f"bbh:{s}" for s in BBH_SUBTASKS),
    "gsm-plus": ("gsm-plus:seed", *(GSMPlus(t).name for t in GSM_PLUS_TYPES)),
}
"""Names that stand for several tasks."""


def task_names() -> list[str]:
    """Every accepted name, groups included, sorted."""
    return sorted([*TASKS, *GROUPS])


def get_task(name: str) -> Task:
    """The task registered under a concrete name.

    Raises:
        UnknownNameError: ``name`` is a group (use :func:`expand_task_names`) or unknown; the
            message lists the valid names.
    """
    if name in TASKS:
        return TASKS[name]
    if name in GROUPS:
        raise UnknownNameError(
            f"{name!r} names a group of {len(GROUPS[name])} tasks; expand it with expand_task_names",
            name=name,
            valid=sorted(TASKS),
        )
    raise _unknown([name])


def expand_task_names(spec: str | Sequence[str]) -> list[str]:
    """Turn ``"gsm8k,bbh,sciq"`` (or a list of names) into concrete task names, in order, once each.

    Raises:
        UnknownNameError: one or more names are unknown; all of them are named at once.
    """
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [p.strip() for p in parts if p.strip()]
    unknown = [n for n in names if n not in TASKS and n not in GROUPS]
    if unknown:
        raise _unknown(unknown)
    expanded: list[str] = []
    for name in names:
        for concrete in GROUPS.get(name, (name,)):
            if concrete not in expanded:
                expanded.append(concrete)
    return expanded


def _unknown(names: list[str]) -> UnknownNameError:
    valid = task_names()
    shown = ", ".join(repr(n) for n in names)
    return UnknownNameError(
        f"unknown task{'s' if len(names) > 1 else ''} {shown}; valid: {', '.join(valid)}",
        name=names[0],
        valid=valid,
    )
