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

__all__ = ["weights_fingerprint"]


def weights_fingerprint(base: str, vectors: Sequence[tuple[str, float]]) -> str:
    """The fingerprint of ``base + Σ αᵢ·vᵢ``: sha256 over the base fingerprint and each (hash, α).

    Args:
        base (str): The fingerprint of the weights without vectors.
        vectors (Sequence[tuple[str, float]]): ``(vector content hash, α)`` in the order the
            vectors are summed; pairs with α = 0 are left out.

    Returns:
        str: ``base`` itself when no α is non-zero, else a sha256 hex digest.

    Example:
        >>> weights_fingerprint("abc", [])
        'abc'
    """
    applied = [(h, a) for h, a in vectors if float(a) != 0.0]  # α = 0 leaves the weights bit-identical
    if not applied:
        return base
    payload = {"base": base, "vectors": [[h, repr(float(a))] for h, a in applied]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
