"""The fingerprint of a model's weights: the base checkpoint's, plus every vector applied and its α.

In rvec "fingerprint" means one thing: the identity of a model's weights, which caches key responses
and cells on (:meth:`rvec.checkpoint.source.Checkpoint.fingerprint` for a checkpoint's files,
:func:`weights_fingerprint` once vectors are added in memory). Two states share a fingerprint only
when their weights are bit-identical: α = 0 leaves the weights untouched, so it leaves the
fingerprint untouched too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

__all__ = ["weights_fingerprint"]


def weights_fingerprint(base: str, vectors: Sequence[tuple[str, float] | tuple[str, float, Any]]) -> str:
    """The fingerprint of ``base + Σ αᵢ·fᵢ·vᵢ``: sha256 over the base fingerprint and each (hash, α[, part]).

    Args:
        base (str): The fingerprint of the weights without vectors.
        vectors (Sequence[tuple]): ``(vector content hash, α)`` or ``(hash, α, selection)`` in the
            order the vectors are summed (a :class:`~rvec.vector.masks.Selection` or its
            ``describe()``: the part of the vector applied); pairs with α = 0 are left out, and a
            selection of everything is the same as none (so a plain α keeps its fingerprint).

    Returns:
        str: ``base`` itself when no α is non-zero, else a sha256 hex digest.

    Example:
        >>> weights_fingerprint("abc", [])
        'abc'
    """
    applied = [v for v in vectors if float(v[1]) != 0.0]  # α = 0 leaves the weights bit-identical
    if not applied:
        return base
    payload = {"base": base, "vectors": [_term(*v) for v in applied]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _term(vector_hash: str, alpha: float, selection: Any = None) -> list[Any]:
    described = selection.describe() if hasattr(selection, "describe") else selection
    if not described or described == _EVERYTHING:
        return [vector_hash, repr(float(alpha))]
    return [vector_hash, repr(float(alpha)), described]


_EVERYTHING = {"include": [], "exclude": [], "layers": None, "schedule": "constant:1"}
"""``Selection().describe()``: the whole vector, written without the import (this module stays light)."""
