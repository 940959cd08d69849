"""A merge named by its content: :class:`HashedMerge` (a :class:`~rvec.vector.merge.MergedDelta` of
vector folders with a ``content_hash``) and :class:`MergeRecipe`, the small picklable record another
process rebuilds it from.

A model state names its weights by the content hashes of the vectors added to them
(:func:`rvec.model.fingerprint.weights_fingerprint`), and caches key on that name. A merge computed
in memory has no file to hash, so its hash is made of everything that decides its values: the
method, every resolved parameter (shared and per vector), the seed where the method draws masks,
and each input's content hash, in order. Two merges share a hash only when they compute the same delta.

The vLLM workers read vectors from their folders; a merge travels to them as a :class:`MergeRecipe`
(the spec and the input folders) and each worker rebuilds the same :class:`HashedMerge`: DARE's
masks are keyed by (seed, vector, tensor name), so every rank computes the same bits.

Example:
    >>> ties = HashedMerge.of(["v0/", "v1/"], merge_spec("ties", 2, densities=[0.5, 0.5]))  # doctest: +SKIP
    >>> state.set_vectors([(ties, 1.0)])                                                     # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rvec.checkpoint.hashing import sha256_text
from rvec.errors import InvalidArgumentError
from rvec.vector.artifact import DeltaSource, ReasoningVector, read_vector
from rvec.vector.merge import MergedDelta, MergeSpec
from rvec.vector.methods.registry import get_method

__all__ = ["HashedMerge", "MergeRecipe", "delta_ref", "merge_hash", "open_delta_ref"]

_HASH_FORMAT = "rvec-merge-1"  # bump if the merge arithmetic of a method ever changes


def merge_hash(spec: MergeSpec, input_hashes: Sequence[str]) -> str:
    """The content hash of ``spec`` applied to the vectors of ``input_hashes`` (in merge order).

    Args:
        spec: the resolved merge (method, every parameter, seed).
        input_hashes: each input vector's ``content_hash``.

    Returns:
        16 hex digits, as a vector folder's ``content_hash``. The seed enters only for a method that
        draws random masks (DARE): for the others it changes nothing, so it does not name them.
    """
    payload: dict[str, Any] = {
        "format": _HASH_FORMAT,
        "method": spec.method,
        "parameters": spec.params.to_dict(),
        "inputs": list(input_hashes),
    }
    if get_method(spec.method).draws_masks:
        payload["seed"] = int(spec.seed)
    return sha256_text(json.dumps(payload, sort_keys=True))[:16]


@dataclass(frozen=True)
class MergeRecipe:
    """What rebuilds a :class:`HashedMerge` in another process: the spec and the input folders."""

    spec: MergeSpec
    inputs: tuple[str, ...]

    def open(self) -> HashedMerge:
        """The merge, its inputs read (and verified) from their folders."""
        return HashedMerge([read_vector(p) for p in self.inputs], self.spec)


class HashedMerge(MergedDelta):
    """A :class:`~rvec.vector.merge.MergedDelta` of vector folders that carries a content hash, so a
    model state can attach it like a vector folder (``set_vectors([(merge, 1.0)])``).

    Args:
        inputs: the opened vectors, in merge order (per-vector parameters follow it).
        spec: the resolved merge.

    Raises:
        InvalidArgumentError: an input that is not a vector folder (a donor pair has no content hash).
        IncompatibleError: inputs of different tensors, shapes or family.
    """

    def __init__(self, inputs: Sequence[DeltaSource], spec: MergeSpec) -> None:
        folders = [s for s in inputs if isinstance(s, ReasoningVector)]
        if len(folders) != len(inputs):
            raise InvalidArgumentError(
                "a merge applied in memory is named by its inputs' content hashes; pass vector folders "
                "(write a donor pair's vector with rvec extract first)"
            )
        super().__init__(folders, spec)
        self.vectors: tuple[ReasoningVector, ...] = tuple(folders)
        self._hash = merge_hash(spec, [v.content_hash for v in folders])

    @classmethod
    def of(cls, folders: Sequence[str | Path | ReasoningVector], spec: MergeSpec) -> HashedMerge:
        """The merge of vector folders (paths are read and verified)."""
        return cls([f if isinstance(f, ReasoningVector) else read_vector(f) for f in folders], spec)

    @property
    def content_hash(self) -> str:
        """See :func:`merge_hash`."""
        return self._hash

    def recipe(self) -> MergeRecipe:
        """The record another process rebuilds this merge from (:meth:`MergeRecipe.open`)."""
        return MergeRecipe(self.spec, tuple(str(v.path) for v in self.vectors))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "hash": self._hash}


def delta_ref(source: Any) -> str | MergeRecipe:
    """How a process that reads vectors from disk finds ``source``: a vector folder's path, or a
    :class:`HashedMerge`'s recipe.

    Raises:
        InvalidArgumentError: anything else (it has no folder to read).
    """
    if isinstance(source, HashedMerge):
        return source.recipe()
    path = getattr(source, "path", None)
    if path is None:
        raise InvalidArgumentError(
            f"{getattr(source, 'label', source)}: the vLLM workers read vectors from their folders; "
            "write it with rvec extract (or rvec.vector.control) and pass the folder"
        )
    return str(path)


def open_delta_ref(ref: str | Path | MergeRecipe) -> ReasoningVector | HashedMerge:
    """The vector (folder) or merge (recipe) that :func:`delta_ref` named."""
    return ref.open() if isinstance(ref, MergeRecipe) else read_vector(ref)
