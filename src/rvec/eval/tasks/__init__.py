"""Benchmark tasks: GSM8K, HumanEval, SciQ, BIG-Bench Hard, the adversarial GSM variants, arith,
MATH-500 and AIME 2024."""

from rvec.eval.tasks.base import Task
from rvec.eval.tasks.bbh import bbh_mean
from rvec.eval.tasks.registry import GROUPS, TASKS, expand_task_names, get_task, task_names

__all__ = ["GROUPS", "TASKS", "Task", "bbh_mean", "expand_task_names", "get_task", "task_names"]
