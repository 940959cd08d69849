"""The model-state seam: what every backend implements so ``rvec eval`` and ``rvec run`` drive any
engine the same way.

A :class:`ModelState` is one loaded target on one backend. Its weights move between the base
``θ₀`` and ``θ₀ + Σ αᵢ·vᵢ`` in place, never cumulatively, and back to ``θ₀`` bit for bit; its
``fingerprint`` always names the current weights; its ``language_model()`` answers evaluation
requests with those weights. A :class:`BackendSpec` is what the registry
(:mod:`rvec.model.registry`) holds per backend: the name, the settings type and how to load a
state. ``docs/model-state.md`` describes the seam and how a backend plugs in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from rvec.vector.artifact import DeltaSource

if TYPE_CHECKING:
    from rvec.eval.types import LanguageModel
    from rvec.model.settings import BackendSettings

__all__ = [
    "BackendSpec",
    "HashedDelta",
    "ModelState",
    "OpenedTerms",
    "VectorPairs",
    "open_hashed",
    "open_pairs",
]


@runtime_checkable
class HashedDelta(DeltaSource, Protocol):
    """A :class:`~rvec.vector.artifact.DeltaSource` with a content hash, which names the vector in
    fingerprints (a :class:`~rvec.vector.artifact.ReasoningVector` is one)."""

    @property
    def content_hash(self) -> str: ...


VectorPairs = Sequence[
    tuple["HashedDelta | str | Path", float] | tuple["HashedDelta | str | Path", float, Any]
]
"""``[(vector, α), …]`` or ``[(vector, α, selection), …]``: a vector is an opened one
(:func:`~rvec.vector.artifact.read_vector`) or its folder; a selection
(:class:`~rvec.vector.masks.Selection`) applies only that part of it (a slice of layers or module
classes, its complement, a per-depth α profile), as ``rvec apply --include/--layers/--schedule`` would."""


@runtime_checkable
class ModelState(Protocol):
    """One loaded target on one backend, whose weights can be set to ``θ₀ + Σ αᵢ·vᵢ`` and back.

    Example:
        >>> with open_model_state("HuggingFaceTB/SmolLM2-135M-Instruct", HFSettings()) as state:  # doctest: +SKIP
        ...     state.set_vectors([(read_vector("vec/"), 1.0)])
        ...     evaluate(state.language_model(), tasks=["gsm8k"], preset="paper")
    """

    settings: BackendSettings
    """The settings it was loaded with."""
    base_fingerprint: str
    """Content fingerprint of the loaded checkpoint (stable across machines)."""

    @property
    def fingerprint(self) -> str:
        """The current weights': :func:`~rvec.model.fingerprint.weights_fingerprint` of the base and
        each vector with a non-zero α, in the order the vectors were first given."""
        ...

    def attach(self, vectors: Sequence[HashedDelta | str | Path]) -> None:
        """Make ``vectors`` ready to apply (read them, stage them beside the weights) without
        changing the weights; :meth:`set_vectors` attaches what it has not seen, but a sweep that
        attaches every vector first pays the reading once."""
        ...

    def set_vectors(self, pairs: VectorPairs) -> None:
        """Set the weights to ``θ₀ + Σ αᵢ·fᵢ·vᵢ``, computed from the originals (never cumulatively);
        ``fᵢ`` is the factor of a pair's selection for each tensor (1 without one).

        Vectors given earlier and absent now get α = 0; an empty list gives back ``θ₀``. The
        arithmetic is ``rvec apply``'s: float32, one cast to the parameter's dtype.

        Raises:
            InvalidArgumentError: a vector appears twice, or matches no parameter of the model.
            IncompatibleError: a vector's shapes do not fit the model.
        """
        ...

    def restore(self) -> None:
        """Put back ``θ₀`` bit for bit; the fingerprint becomes ``base_fingerprint``."""
        ...

    def language_model(self) -> LanguageModel:
        """The backend object that answers evaluation requests with the current weights; its
        ``fingerprint`` follows every :meth:`set_vectors` and :meth:`restore`."""
        ...

    def close(self) -> None:
        """Restore ``θ₀`` and release the weights (and the engine's processes, where it has any)."""
        ...


@runtime_checkable
class BackendSpec(Protocol):
    """A backend the registry selects by name. :meth:`load` imports the backend's engine, so
    choosing one backend never imports another's (vLLM is optional)."""

    name: str
    """Registry name, as ``--backend`` and a study's ``backend.name`` spell it."""
    reference_url: str
    """Where the engine is documented."""
    settings_type: type[BackendSettings]
    """Its settings model, whose ``name`` field is ``Literal[<name>]``."""

    def load(self, source: str | Path, settings: BackendSettings) -> ModelState:
        """Load ``source`` (folder, hub id[@rev], ``.gguf`` file) as a :class:`ModelState`."""
        ...

    def cache_identity(self, settings: BackendSettings) -> dict[str, Any]:
        """What the settings add to a study cell's cache key, known before loading: everything
        besides weights, task, data and preset that changes a response (dtype, engine options)."""
        ...


def open_hashed(vector: HashedDelta | str | Path) -> HashedDelta:
    """A vector to fingerprint a model state by: a folder read with :func:`~rvec.vector.artifact.read_vector`,
    or an already opened vector that carries a content hash.

    Args:
        vector (HashedDelta | str | Path): A vector folder or an opened vector.

    Returns:
        HashedDelta: The opened vector.

    Raises:
        InvalidArgumentError: the vector has no content hash (not written as a vector folder).
    """
    from rvec.errors import InvalidArgumentError
    from rvec.vector.artifact import read_vector

    opened = read_vector(vector) if isinstance(vector, (str, Path)) else vector
    if not hasattr(opened, "content_hash"):  # not isinstance: that would evaluate every property
        raise InvalidArgumentError(
            f"{getattr(opened, 'label', opened)}: has no content hash to fingerprint the model state by; "
            "write it as a vector folder with rvec extract first"
        )
    return opened


class OpenedTerms(NamedTuple):
    """``set_vectors`` pairs opened once: the vectors, and each one's α and selection by content hash."""

    vectors: list[HashedDelta]
    alphas: dict[str, float]
    selections: dict[str, Any]


def open_pairs(pairs: VectorPairs) -> OpenedTerms:
    """The vectors of ``set_vectors`` pairs, opened once, with the α and the selection (``None``:
    all of it) of each by content hash (what every backend's ``set_vectors`` attaches and then sets).

    Raises:
        InvalidArgumentError: a vector given twice, or one without a content hash.
    """
    from rvec.errors import InvalidArgumentError

    opened = [(open_hashed(p[0]), float(p[1]), p[2] if len(p) > 2 else None) for p in pairs]
    hashes = [v.content_hash for v, _, _ in opened]
    repeated = sorted({v.label for v, _, _ in opened if hashes.count(v.content_hash) > 1})
    if repeated:
        raise InvalidArgumentError(
            f"vector {', '.join(repeated)} given twice; pass each vector once with the sum of its α values"
        )
    return OpenedTerms(
        [v for v, _, _ in opened],
        {h: a for h, (_, a, _) in zip(hashes, opened, strict=True)},
        {h: s for h, (_, _, s) in zip(hashes, opened, strict=True)},
    )
