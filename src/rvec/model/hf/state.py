"""The HF backend's model state: a live ``transformers`` module whose parameters take ``Σ αᵢ·vᵢ`` in
place through :class:`~rvec.vector.inmemory.InMemoryVectors` (the arithmetic ``rvec apply`` writes),
and the :class:`~rvec.model.hf.backend.HFBackend` that evaluates it.

Example:
    >>> state = HFModelState.load("HuggingFaceTB/SmolLM2-135M-Instruct", HFSettings())  # doctest: +SKIP
    >>> state.set_vectors([("vec/", 0.5)]); lm = state.language_model()                  # doctest: +SKIP
    >>> state.restore(); state.fingerprint == state.base_fingerprint                      # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rvec.model.fingerprint import weights_fingerprint
from rvec.model.hf.backend import HFBackend
from rvec.model.hf.loading import load_causal_lm, pick_device, pick_dtype
from rvec.model.hf.settings import HFSettings
from rvec.model.state import HashedDelta, VectorPairs, open_hashed, open_pairs
from rvec.vector.inmemory import InMemoryVectors

__all__ = ["HFModelState"]

logger = logging.getLogger(__name__)


class HFModelState:
    """A :class:`~rvec.model.state.ModelState` over a ``transformers`` causal LM.

    Args:
        model (torch.nn.Module): The causal LM in eval mode (its parameters are changed in place).
        tokenizer: Its tokenizer (chat template included).
        base_fingerprint (str): Content fingerprint of the checkpoint it was loaded from.
        settings (HFSettings, default HFSettings()): Recorded in results; ``batch_size`` is the
            language model's.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        base_fingerprint: str,
        settings: HFSettings | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.base_fingerprint = base_fingerprint
        self.settings = settings or HFSettings()
        self._sources: list[HashedDelta] = []  # attached vectors, in the order first given
        self._alphas: list[float] = []
        self._selections: list[Any] = []  # a Selection per attached vector, None = all of it
        self._vectors: InMemoryVectors | None = None
        self._lm: HFBackend | None = None

    @classmethod
    def load(cls, source: str | Path, settings: HFSettings) -> HFModelState:
        """Load ``source`` on ``settings.device`` in ``settings.dtype`` (``auto`` resolved here).

        Raises:
            SourceNotFoundError: ``source`` cannot be resolved.
        """
        device = pick_device(settings.device)
        model, tokenizer, fingerprint = load_causal_lm(
            source, dtype=pick_dtype(settings.dtype, device), device=device
        )
        return cls(model, tokenizer, base_fingerprint=fingerprint, settings=settings)

    @property
    def fingerprint(self) -> str:
        """See :attr:`rvec.model.state.ModelState.fingerprint`."""
        applied = [
            (s.content_hash, a, sel)
            for s, a, sel in zip(self._sources, self._alphas, self._selections, strict=True)
        ]
        return weights_fingerprint(self.base_fingerprint, applied)

    def attach(self, vectors: Sequence[HashedDelta | str | Path]) -> None:
        """Read ``vectors`` next to the model now, so later α switches read nothing.

        :meth:`set_vectors` attaches what it has not seen; attach every vector of a sweep up front,
        since a vector attached later makes the ones before it be read again. The weights and the
        fingerprint do not change.
        """
        known = {s.content_hash for s in self._sources}
        new = []
        for vector in map(open_hashed, vectors):
            if vector.content_hash not in known:
                known.add(vector.content_hash)
                new.append(vector)
        if not new:
            return
        alphas = [*self._alphas, *[0.0] * len(new)]
        selections = [*self._selections, *[None] * len(new)]
        self.restore()  # the rebuilt holder takes θ₀ as its originals; if building fails, θ₀ stays
        self._vectors = InMemoryVectors(self.model, [*self._sources, *new])
        self._sources += new
        self._alphas = [0.0] * len(self._sources)
        self._selections = [None] * len(self._sources)
        if any(alphas):
            self._apply(alphas, selections)

    def set_vectors(self, pairs: VectorPairs) -> None:
        """See :meth:`rvec.model.state.ModelState.set_vectors`."""
        terms = open_pairs(pairs)
        self.attach(terms.vectors)
        self._apply(
            [terms.alphas.get(s.content_hash, 0.0) for s in self._sources],
            [terms.selections.get(s.content_hash) for s in self._sources],
        )

    def restore(self) -> None:
        """See :meth:`rvec.model.state.ModelState.restore`."""
        if self._vectors is not None:
            self._vectors.restore()
        self._alphas = [0.0] * len(self._sources)
        self._selections = [None] * len(self._sources)
        self._sync()

    def language_model(self) -> HFBackend:
        """See :meth:`rvec.model.state.ModelState.language_model` (made once, on first use)."""
        if self._lm is None:
            self._lm = HFBackend(
                self.model,
                self.tokenizer,
                fingerprint=self.fingerprint,
                batch_size=self.settings.batch_size,
                progress=False,
                settings=self.settings.model_dump(),
            )
        return self._lm

    def close(self) -> None:
        """See :meth:`rvec.model.state.ModelState.close`; the module itself is freed with the state."""
        self.restore()
        self._vectors = self._lm = None
        self._sources, self._alphas, self._selections = [], [], []

    def __enter__(self) -> HFModelState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _apply(self, alphas: list[float], selections: list[Any]) -> None:
        if self._vectors is None:  # no vector attached: the weights are θ₀ already
            return
        self._vectors.set_alphas(alphas, selections)
        self._alphas = list(alphas)
        self._selections = list(selections)
        self._sync()

    def _sync(self) -> None:
        # The language model checks its fingerprint against the weights; give it the new state's.
        if self._lm is not None:
            self._lm.fingerprint = self.fingerprint
