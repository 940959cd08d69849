"""Embedding policies: what ``apply`` does with embed_tokens / lm_head when vocabularies differ.

- ``apply``   add the delta; the default, only allowed when shapes match.
- ``skip``    leave the target's embedding and output matrices untouched.
- ``overlap`` add the delta to the rows both vocabularies share (the first ``min(rows)``), leave
  the target's remaining rows as they are.
"""

from __future__ import annotations

from typing import Literal, get_args

from rvec.errors import InvalidArgumentError

EmbeddingPolicy = Literal["apply", "skip", "overlap"]
EMBEDDING_POLICIES: tuple[str, ...] = get_args(EmbeddingPolicy)


def parse_policy(text: str | None) -> EmbeddingPolicy | None:
    if text is None:
        return None
    if text not in EMBEDDING_POLICIES:
        raise InvalidArgumentError(f"--embeddings {text}: expected one of {', '.join(EMBEDDING_POLICIES)}")
    return text  # type: ignore[return-value]


def overlap_elements(vector_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> int:
    """Flat element count of the shared leading rows of two (rows, hidden) matrices."""
    return min(vector_shape[0], target_shape[0]) * target_shape[1]
