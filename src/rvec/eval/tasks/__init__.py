"""Benchmark tasks: GSM8K, HumanEval, SciQ, BIG-Bench Hard, rvec's arith, MATH-500, AIME 2024 and
the adversarial GSM variants.

Each task turns items (docs) into requests under a preset and scores the responses; the registry
(:mod:`rvec.eval.tasks.registry`) maps names and groups (``bbh``, ``gsm-plus``) to tasks.
"""

from rvec.eval.tasks.base import Task
from rvec.eval.tasks.bbh import bbh_mean
from rvec.eval.tasks.registry import GROUPS, TASKS, expand_task_names, get_task, task_names

__all__ = ["GROUPS", "TASKS", "Task", "bbh_mean", "expand_task_names", "get_task", "task_names"]
