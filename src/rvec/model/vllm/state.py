"""The vLLM backend's model state: a running engine whose weights take ``Σ αᵢ·vᵢ`` in place.

:class:`VllmModelState` is the vLLM side of rvec's model-state seam
(:class:`~rvec.model.state.ModelState`, ``docs/model-state.md``): load a checkpoint into an engine
once, attach vectors, set α for them (``θ₀ + Σ αᵢ·vᵢ`` computed by the HF backend's arithmetic,
streamed into the live engine by :mod:`rvec.model.vllm.worker` on every tensor-parallel rank),
restore θ₀ bit-exactly, and name the current weights by the fingerprint response caches key on.
Every switch resets the engine's prefix cache: vLLM keys cached KV blocks by tokens only, so blocks
computed under the old weights would otherwise be served under the new ones.

Example:
    >>> state = VllmModelState.load("Qwen/Qwen2.5-1.5B-Instruct", VLLMSettings())    # doctest: +SKIP
    >>> state.set_vectors([("vec/", 0.5)]); lm = state.language_model()              # doctest: +SKIP
    >>> evaluate(lm, tasks=["gsm8k"], preset="paper", limit=50)                      # doctest: +SKIP
    >>> state.restore(); state.fingerprint == state.base_fingerprint                 # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rvec.errors import BackendError, InvalidArgumentError
from rvec.model.fingerprint import weights_fingerprint
from rvec.model.state import HashedDelta, VectorPairs, open_hashed, open_pairs
from rvec.model.text import eos_ids
from rvec.model.vllm.backend import VllmBackend
from rvec.model.vllm.engine import start_engine, stop_engine
from rvec.model.vllm.settings import VLLMSettings

__all__ = ["VllmModelState", "eos_ids_of"]

logger = logging.getLogger(__name__)


class VllmModelState:
    """A :class:`~rvec.model.state.ModelState` over a running ``vllm.LLM``; build it with :meth:`load`.

    Besides the protocol: :meth:`select` (which tensors α reaches, ``--include``-style), the switch
    timings (:attr:`timings`) and :meth:`workers_state` (what every rank holds).
    """

    def __init__(
        self,
        llm: Any,
        tokenizer: Any,
        *,
        folder: Path,
        base_fingerprint: str,
        settings: VLLMSettings,
        engine: dict[str, Any],
        eos_ids: frozenset[int],
        max_position_embeddings: int | None,
    ) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.folder = folder
        self.base_fingerprint = base_fingerprint
        self.settings = settings
        self.engine = engine
        """Resolved engine settings (version, device, dtype, lengths…), recorded in results."""
        self.eos_ids = eos_ids
        self.max_position_embeddings = max_position_embeddings
        self._sources: list[HashedDelta] = []  # attached vectors, in the order first given
        self._alphas: list[float] = []
        self._selections: list[Any] = []  # a Selection per attached vector, None = all of it
        self.selection: Any = None
        self.embeddings: str | None = None
        self.streaming: dict[str, Any] = {"touched": [], "sent": [], "sent_bytes": 0}
        """What a switch touches and streams (rank 0's view; every rank is the same)."""
        self.timings: dict[str, float] = {"start": engine["start_seconds"], "switch": 0.0, "switches": 0}
        self._lm: VllmBackend | None = None

    @classmethod
    def load(cls, source: str | Path, settings: VLLMSettings | None = None) -> VllmModelState:
        """Start an engine on ``source`` (folder, hub id[@rev], or ``.gguf``, dequantized once).

        Args:
            source (str | Path): Anything :func:`rvec.checkpoint.resolve` accepts.
            settings (VLLMSettings | None, default None): Engine settings (defaults: float32…).

        Returns:
            VllmModelState: The engine with θ₀ loaded and no vector attached.

        Raises:
            BackendUnavailableError: vllm is not installed.
            InvalidArgumentError: ``settings.device`` is not vLLM's platform.
            SourceNotFoundError: the source cannot be resolved.
        """
        from transformers import AutoTokenizer

        from rvec.checkpoint.local import local_folder
        from rvec.checkpoint.source import resolve

        settings = settings or VLLMSettings()
        folder = local_folder(source)
        llm, engine = start_engine(folder, settings.engine_options())
        if settings.device not in ("auto", engine["device"]) and not settings.device.startswith(
            f"{engine['device']}:"
        ):
            stop_engine(llm)
            raise InvalidArgumentError(
                f"--device {settings.device}: the installed vLLM runs on {engine['device']}; "
                "use --device auto (select GPUs with CUDA_VISIBLE_DEVICES)"
            )
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        ckpt = resolve(folder)
        config = ckpt.config
        return cls(
            llm,
            tokenizer,
            folder=folder,
            base_fingerprint=ckpt.fingerprint(),
            settings=settings,
            engine=engine,
            eos_ids=eos_ids_of(folder, tokenizer),
            max_position_embeddings=config.get("max_position_embeddings"),
        )

    # ------------------------------------------------------------------------------ the weights
    @property
    def fingerprint(self) -> str:
        """See :attr:`rvec.model.state.ModelState.fingerprint`; a :meth:`select` policy is part of it."""
        applied = [
            (s.content_hash, a, sel)
            for s, a, sel in zip(self._sources, self._alphas, self._selections, strict=True)
        ]
        weights = weights_fingerprint(self.base_fingerprint, applied)
        if weights == self.base_fingerprint or (self.selection is None and self.embeddings is None):
            return weights
        # A selection or embedding policy changes which weights α reaches: part of the identity.
        policy = {
            "weights": weights,
            "selection": self.selection.describe() if self.selection is not None else None,
            "embeddings": self.embeddings,
        }
        return hashlib.sha256(json.dumps(policy, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def vector_hashes(self) -> list[str]:
        """Content hashes of the attached vectors, in order."""
        return [s.content_hash for s in self._sources]

    @property
    def alphas(self) -> list[float]:
        """The current α of each attached vector."""
        return list(self._alphas)

    def attach(self, vectors: Sequence[HashedDelta | str | Path]) -> None:
        """See :meth:`rvec.model.state.ModelState.attach`: every worker reads the vectors and the θ₀
        of the fused groups they touch; the engine's weights do not change. Vectors are read from
        their folders on the workers, so paths must be visible where the engine runs; a merge
        (:class:`~rvec.vector.merge_recipe.HashedMerge`) is rebuilt there from its input folders.

        Raises:
            IncompatibleError: a vector does not fit the model.
        """
        known = set(self.vector_hashes)
        new = []
        for vector in map(open_hashed, vectors):
            if vector.content_hash not in known:
                known.add(vector.content_hash)
                new.append(vector)
        if new:
            self._reattach([*self._sources, *new])

    def select(self, selection: Any = None, embeddings: str | None = None) -> dict[str, Any]:
        """Set which tensors α reaches (a :class:`~rvec.vector.masks.Selection`: ``--include``,
        ``--exclude``, ``--layers``, schedule) and the embedding policy, as in-memory application
        takes them; the attached vectors are read again under the new policy.

        Returns:
            dict: rank 0's view of what a switch touches (``touched``) and streams (``sent``).
        """
        self.selection, self.embeddings = selection, embeddings
        return self._reattach(list(self._sources))

    def set_vectors(self, pairs: VectorPairs) -> None:
        """See :meth:`rvec.model.state.ModelState.set_vectors`; the prefix cache is reset after it.

        Raises:
            InvalidArgumentError: a vector given twice.
            BackendError: the engine refused to reset its prefix cache.
        """
        terms = open_pairs(pairs)
        self.attach(terms.vectors)
        self.set_alphas(
            [terms.alphas.get(h, 0.0) for h in self.vector_hashes],
            [terms.selections.get(h) for h in self.vector_hashes],
        )

    def set_alphas(
        self, alphas: Sequence[float], selections: Sequence[Any] | None = None
    ) -> dict[str, float]:
        """Set one α (and optionally one :class:`~rvec.vector.masks.Selection`, ``None`` = all of the
        vector) per attached vector, in attach order (all α zero: θ₀ exactly).

        Returns:
            dict: seconds spent computing θ, reloading it into the engine (slowest rank), and in total;
            ``sent_bytes``, what the switch reloaded (only the fused groups whose values changed).

        Raises:
            InvalidArgumentError: not one α per attached vector.
            BackendError: the engine refused to reset its prefix cache.
        """
        alphas = [float(a) for a in alphas]
        chosen = list(selections) if selections is not None else [None] * len(alphas)
        if len(alphas) != len(self._sources) or len(chosen) != len(alphas):
            raise InvalidArgumentError(
                f"{len(self._sources)} vector(s) attached but {len(alphas)} α value(s); attach them first"
            )
        if alphas == self._alphas and chosen == self._selections:
            return {"compute_seconds": 0.0, "reload_seconds": 0.0, "sent_bytes": 0, "seconds": 0.0}
        self._selections = chosen if any(alphas) else [None] * len(alphas)
        if not any(alphas):
            return self._switch("rvec_restore", ())
        return self._switch("rvec_set_alphas", (alphas, chosen))

    def restore(self) -> None:
        """See :meth:`rvec.model.state.ModelState.restore` (bit-exact: vLLM's loaders copy θ₀ back)."""
        if any(self._alphas):
            self._switch("rvec_restore", ())

    def workers_state(self) -> list[dict[str, Any]]:
        """Each rank's α, sha256 of the tensors it last streamed, and checksum of its live weights."""
        return self.llm.collective_rpc("rvec_state")

    # ------------------------------------------------------------------------------- evaluation
    def language_model(self, *, progress: bool = False, tie_margin: float | None = None) -> VllmBackend:
        """See :meth:`rvec.model.state.ModelState.language_model` (one per state, reused while the
        arguments stay the same)."""
        if self._lm is None or self._lm.progress != progress or tie_margin is not None:
            self._lm = VllmBackend(
                self.llm,
                self.tokenizer,
                fingerprint=self.fingerprint,
                settings=self.engine,
                eos_ids=self.eos_ids,
                max_position_embeddings=self.max_position_embeddings,
                progress=progress,
                tie_margin=tie_margin,
                backend_settings=self.settings.model_dump(),
            )
        return self._lm

    def close(self) -> None:
        """See :meth:`rvec.model.state.ModelState.close`: restore θ₀, stop the engine's processes."""
        if self.llm is None:
            return
        try:
            self.restore()
            # The workers drop their vectors (and the readers holding the vector files open): an
            # in-process engine's worker can outlive its shutdown in vLLM's own references.
            self.llm.collective_rpc("rvec_detach")
        finally:
            stop_engine(self.llm)
            self.llm = self._lm = None

    def __enter__(self) -> VllmModelState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------- internals
    def _reattach(self, sources: list[HashedDelta]) -> dict[str, Any]:
        from rvec.vector.merge_recipe import delta_ref

        # The workers read vectors from their folders; a merge travels as its recipe (spec + input
        # folders) and every worker rebuilds the same merge (InvalidArgumentError for anything else).
        refs = [delta_ref(v) for v in sources]
        alphas = [*self._alphas, *[0.0] * (len(sources) - len(self._alphas))]
        self.restore()  # the workers take θ₀ as their originals
        selections = [*self._selections, *[None] * (len(sources) - len(self._selections))]
        if not sources:
            self.llm.collective_rpc("rvec_detach")
            self._sources, self._alphas, self._selections = [], [], []
            self.streaming = {"touched": [], "sent": [], "sent_bytes": 0}
            return self.streaming
        summaries = self.llm.collective_rpc("rvec_attach", args=(refs, self.embeddings, self.selection))
        self._sources = list(sources)
        self._alphas = [0.0] * len(sources)
        self._selections = [None] * len(sources)
        self.streaming = summaries[0]
        self._sync()
        if any(alphas):
            self.set_alphas(alphas, selections)
        return self.streaming

    def _switch(self, method: str, args: tuple[Any, ...]) -> dict[str, float]:
        start = time.perf_counter()
        reports = self.llm.collective_rpc(method, args=args)
        if not self.llm.reset_prefix_cache():
            raise BackendError(
                "vLLM refused to reset its prefix cache after an α switch, so cached blocks of the old weights "
                "would be reused; make sure no request is running during a switch"
            )
        self._alphas = list(reports[0]["alphas"])
        self._sync()
        seconds = time.perf_counter() - start
        self.timings["switch"] += seconds
        self.timings["switches"] += 1
        return {
            "compute_seconds": max(r["compute_seconds"] for r in reports),
            "reload_seconds": max(r["reload_seconds"] for r in reports),
            "sent_bytes": max(r["sent_bytes"] for r in reports),
            "seconds": seconds,
        }

    def _sync(self) -> None:
        if self._lm is not None:
            self._lm.fingerprint = self.fingerprint


def eos_ids_of(folder: Path, tokenizer: Any) -> frozenset[int]:
    """The EOS set the HF backend uses for the same folder (generation config, else the model
    config's, plus the tokenizer's)."""
    from transformers import AutoConfig, GenerationConfig

    try:
        generation = GenerationConfig.from_pretrained(str(folder))
    except OSError:  # no generation_config.json: transformers derives one from config.json
        generation = GenerationConfig.from_model_config(AutoConfig.from_pretrained(str(folder)))
    return eos_ids(generation, tokenizer)
