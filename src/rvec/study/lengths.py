"""Response length per study cell: mean and median tokens of the generated responses.

Kept small and local to the study on purpose (issue 18, part 4): the evaluation itself is growing
its own length statistics (issue 21), and when its sample records carry ``n_generated_tokens`` this
module uses them as they are. Until then the study counts each response's tokens with the backend's
own tokenizer (:class:`rvec.eval.types.TokenCounting`): the response as scored, so a stop string the
backend cut off is not counted — at most a token or two fewer than were generated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["COUNTED", "GENERATED", "response_lengths"]

GENERATED = "generated tokens (the backend's count)"
COUNTED = "tokens of the response text (the backend's tokenizer)"


def response_lengths(
    samples: Sequence[dict[str, Any]], count: Callable[[str], int] | None
) -> dict[str, Any] | None:
    """Mean and median response length of one cell's samples; each sample gets ``n_tokens``.

    Args:
        samples (Sequence[dict]): The cell's sample records (``response`` text, and
            ``n_generated_tokens`` where the evaluation recorded it); updated in place.
        count (Callable | None): The backend's token counter; ``None`` when it has none.

    Returns:
        dict | None: ``{"mean", "median", "n", "source"}``; ``None`` when no sample has a generated
        response (log-likelihood tasks) or nothing can count its tokens.
    """
    lengths: list[int] = []
    source = GENERATED
    for sample in samples:
        if sample.get("n_generated_tokens") is not None:
            n = int(sample["n_generated_tokens"])
        elif count is not None and isinstance(sample.get("response"), str):
            n, source = count(sample["response"]), COUNTED
        else:
            continue
        sample["n_tokens"] = n
        lengths.append(n)
    if not lengths:
        return None
    return {
        "mean": float(np.mean(lengths)),
        "median": float(np.median(lengths)),
        "n": len(lengths),
        "source": source,
    }
