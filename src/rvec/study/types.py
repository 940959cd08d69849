"""What a study produces, cell by cell: the contract between the runner, the statistics and the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

VariantKind = Literal[
    "baseline", "vector", "subtraction", "random-control", "donor", "slice", "profile", "combination", "other"
]


@dataclass(frozen=True)
class Variant:
    """One model state evaluated in a study.

    ``name`` is unique in the study and human readable (``"target"``, ``"target + 1.0·v"``,
    ``"target − 1.0·v"``, ``"target + 1.0·random"``, ``"RL donor"``); ``model`` is the target or
    donor it starts from; ``vector``/``alpha`` say what was added in memory (``None`` for none);
    ``selection`` (a :meth:`rvec.vector.masks.Selection.describe` record) which part of the vector
    (a slice, its complement, a per-depth α profile), ``None`` for all of it.
    """

    name: str
    kind: VariantKind
    model: str
    vector: str | None = None
    alpha: float | None = None
    selection: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; ``selection`` only when a part of the vector is applied, so the records of
        whole-vector variants are those of older runs."""
        out = asdict(self)
        if self.selection is None:
            del out["selection"]
        return out


@dataclass
class CellResult:
    """One evaluated cell: a variant under a condition on a task (``task`` is a task key, e.g.
    ``"gsm8k"``, ``"bbh:navigate"``, ``"gsm8k+typo:0.05"``, ``"gsm-plus:critical-thinking"``).

    ``per_item`` maps each doc_id to whether the primary metric was correct — or, in a sampled
    study, to the mean correctness of its samples (a float in [0, 1]); ``scores`` holds every
    metric's mean (lm-eval style keys; ``avg@n`` and ``pass@k`` when sampled). ``clean_task`` names
    the clean task whose items pair with this one (the same task for a clean cell).

    Length is a result: ``tokens_mean``, ``tokens_median`` and ``tokens_p90`` summarise the
    generated tokens of its responses (every sample when sampled; ``None`` for log-likelihood tasks
    and cells cached before lengths were kept). ``think`` is a thinking study's
    :func:`rvec.eval.thinking.think_summary` (closed-block rate, tokens inside and outside).
    """

    variant: Variant
    condition: str
    task: str
    primary: str
    scores: dict[str, float]
    per_item: dict[str, bool | float]
    clean_task: str
    cache_key: str = ""
    seconds: float = 0.0
    generated_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    tokens_mean: float | None = None
    tokens_median: float | None = None
    tokens_p90: float | None = None
    think: dict[str, Any] | None = None

    @property
    def accuracy(self) -> float:
        return sum(self.per_item.values()) / len(self.per_item) if self.per_item else float("nan")

    @property
    def n(self) -> int:
        return len(self.per_item)


CellCallback = Callable[[CellResult, bool], None]
"""Called after each cell with (result, came from cache)."""


@dataclass
class StudyRun:
    """What :func:`rvec.study.runner.run_study` did: every cell, how many were computed vs cached,
    where time went."""

    out_dir: Path
    cells: list[CellResult]
    computed: int = 0
    cached: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
