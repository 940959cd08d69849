"""Length is a result: how many tokens a cell's responses took (mean, median, 90th percentile).

Every generated response reports ``n_generated_tokens`` (the tokens the model produced, EOS
included, as the backend counted them). A task key's (or a study cell's) summary is over its
samples — every sample of every item when sampling. Log-likelihood tasks generate nothing and have
no summary. The percentile is numpy's default (linear interpolation between order statistics).

Example:
    >>> length_summary([10, 20, 30, 40])
    {'n': 4, 'mean': 25.0, 'median': 25.0, 'p90': 37.0}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from rvec.eval.types import SampleRecord

__all__ = ["length_summary", "records_length_summary"]


def length_summary(tokens: Sequence[int]) -> dict[str, float] | None:
    """Mean, median and 90th percentile of generated tokens per response.

    Args:
        tokens (Sequence[int]): Tokens of each generated response.

    Returns:
        dict | None: ``{"n", "mean", "median", "p90"}``; ``None`` when there is no response.
    """
    if not tokens:
        return None
    x = np.asarray(tokens, dtype=np.float64)
    return {
        "n": len(tokens),
        "mean": float(x.mean()),
        "median": float(np.median(x)),
        "p90": float(np.percentile(x, 90)),
    }


def records_length_summary(records: Iterable[SampleRecord | Mapping[str, Any]]) -> dict[str, float] | None:
    """:func:`length_summary` of response records: :class:`~rvec.eval.types.SampleRecord` s, or
    their JSON lines as ``samples/<task>.jsonl`` and a study's cell files hold them (a line without
    ``n_generated_tokens`` counts 0).

    Args:
        records (Iterable[SampleRecord | Mapping]): One task key's (or cell's) responses.

    Returns:
        dict | None: As :func:`length_summary`.
    """
    tokens = [
        r.n_generated_tokens if isinstance(r, SampleRecord) else int(r.get("n_generated_tokens", 0))
        for r in records
    ]
    return length_summary(tokens)
