"""The α search's honest split: dev items to optimise on and test items to check the winner on
once, disjoint by construction.

Rule: the task's items (every one, in the task's order) are permuted by
``numpy.random.default_rng(seed).permutation``; the first ``dev`` of the permutation are dev, the
next ``test`` are test. Both are recorded by doc id in ``RUN/search/search.json`` and evaluated in
the task's order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rvec.errors import ConfigError
from rvec.eval.types import Doc

__all__ = ["Split", "make_split"]


@dataclass(frozen=True)
class Split:
    """Doc ids of the dev and test items, each in the task's order; they share none."""

    dev: tuple[str, ...]
    test: tuple[str, ...]
    seed: int

    @property
    def digest(self) -> str:
        """Identifies both sets (part of the Optuna study's name)."""
        return hashlib.sha256(json.dumps([self.dev, self.test]).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": "numpy.random.default_rng(seed).permutation of the task's items: the first `dev` are "
            "dev, the next `test` are test",
            "seed": self.seed,
            "dev": list(self.dev),
            "test": list(self.test),
        }


def make_split(task: str, docs: Sequence[Doc], *, dev: int, test: int | None, seed: int) -> Split:
    """Draw the dev and test items of ``task`` from ``docs`` (see the module docstring).

    Args:
        task (str): The task's name, for messages.
        docs (Sequence[Doc]): Every item of the task, in its order.
        dev (int): Dev items.
        test (int | None): Test items; ``None`` = every item not in dev.
        seed (int): The permutation's seed.

    Returns:
        Split: The two sets of doc ids.

    Raises:
        ConfigError: ``dev`` exceeds the task's items, leaves none for test, or ``dev + test`` does.
    """
    total = len(docs)
    problem = None
    if dev > total:
        problem = f"search.dev: {dev} items, but {task} has {total}; lower search.dev"
    elif dev == total:
        problem = f"search.dev: {task} has {total} items and dev takes them all, leaving none for test; lower search.dev"
    elif test is not None and dev + test > total:
        problem = (
            f"search.test: {test} items, but {task} has {total - dev} left after the {dev} dev items; "
            "lower search.test or search.dev"
        )
    if problem is not None:
        raise ConfigError([problem], source="search")
    order = np.random.default_rng(seed).permutation(total)
    n_test = total - dev if test is None else test
    dev_idx, test_idx = set(order[:dev].tolist()), set(order[dev : dev + n_test].tolist())
    return Split(
        dev=tuple(d.doc_id for i, d in enumerate(docs) if i in dev_idx),
        test=tuple(d.doc_id for i, d in enumerate(docs) if i in test_idx),
        seed=seed,
    )
