"""A running vLLM engine and the state of its weights: base checkpoint, attached vectors, current α.

:class:`VllmModelState` is the vLLM side of rvec's model-state seam: load a checkpoint into an engine
once, attach vectors, set α for them (``θ₀ + Σ αᵢ·vᵢ`` computed by the HF backend's arithmetic,
streamed into the live engine by :mod:`rvec.model._vllm_worker`), restore θ₀ bit-exactly, and name
the current weights by a fingerprint that response caches key on. Every switch resets the engine's
prefix cache: vLLM keys cached KV blocks by tokens only, so blocks computed under the old weights
would otherwise be served under the new ones.

Example:
    >>> state = VllmModelState.load("Qwen/Qwen2.5-1.5B-Instruct")    # doctest: +SKIP
    >>> state.attach(["vec/"])                                        # doctest: +SKIP
    >>> state.set_alphas([0.5]); lm = state.backend()                 # doctest: +SKIP
    >>> evaluate(lm, tasks=["gsm8k"], preset="paper", limit=50)       # doctest: +SKIP
    >>> state.restore()                                               # doctest: +SKIP
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
from rvec.eval.backends.vllm import VllmBackend
from rvec.model.vllm_engine import VllmEngineOptions, start_engine

__all__ = ["VllmModelState", "local_folder"]

logger = logging.getLogger(__name__)


class VllmModelState:
    """One engine, its base fingerprint, the vectors attached to it and their current α.

    Build it with :meth:`load`. The backend it hands out (:meth:`backend`) always carries the
    fingerprint of the weights in the engine: switches update it.
    """

    def __init__(
        self,
        llm: Any,
        tokenizer: Any,
        *,
        folder: Path,
        base_fingerprint: str,
        settings: dict[str, Any],
        eos_ids: frozenset[int],
        max_position_embeddings: int | None,
    ) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.folder = folder
        self.base_fingerprint = base_fingerprint
        self.settings = settings
        self.eos_ids = eos_ids
        self.max_position_embeddings = max_position_embeddings
        self.vector_hashes: list[str] = []
        self.alphas: list[float] = []
        self.selection: Any = None
        self.embeddings: str | None = None
        self.timings: dict[str, float] = {"start": settings["start_seconds"], "switch": 0.0, "switches": 0}
        self._backend: VllmBackend | None = None

    @classmethod
    def load(
        cls,
        source: str | Path,
        *,
        options: VllmEngineOptions | None = None,
        revision: str | None = None,
        convert_dir: Path | None = None,
    ) -> VllmModelState:
        """Start an engine on ``source`` (folder, hub id[@rev], or ``.gguf``, dequantized once).

        Args:
            source (str | Path): Anything :func:`rvec.checkpoint.resolve` accepts.
            options (VllmEngineOptions | None, default None): Engine settings (defaults: float32…).
            revision (str | None, default None): Hub revision.
            convert_dir (Path | None, default None): Where a GGUF source is dequantized; ``None`` =
                the rvec cache.

        Returns:
            VllmModelState: The engine with θ₀ loaded and no vector attached.

        Raises:
            BackendUnavailableError: vllm is not installed.
            SourceNotFoundError: the source cannot be resolved.
        """
        from transformers import AutoTokenizer

        from rvec.checkpoint.source import resolve

        ckpt = resolve(str(source), revision=revision)
        folder = local_folder(ckpt, convert_dir)
        llm, settings = start_engine(folder, options or VllmEngineOptions())
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        config = resolve(folder).config
        return cls(
            llm,
            tokenizer,
            folder=folder,
            base_fingerprint=ckpt.fingerprint(),
            settings=settings,
            eos_ids=eos_ids_of(folder, tokenizer),
            max_position_embeddings=config.get("max_position_embeddings"),
        )

    # ------------------------------------------------------------------------------ the weights
    @property
    def fingerprint(self) -> str:
        """The fingerprint of the weights in the engine (the base's when every α is 0)."""
        from rvec.eval.command import vector_fingerprint

        weights = vector_fingerprint(self.base_fingerprint, list(zip(self.vector_hashes, self.alphas)))
        if weights == self.base_fingerprint or (self.selection is None and self.embeddings is None):
            return weights
        # A selection or embedding policy changes which weights α reaches: part of the identity.
        policy = {
            "weights": weights,
            "selection": self.selection.describe() if self.selection is not None else None,
            "embeddings": self.embeddings,
        }
        return hashlib.sha256(json.dumps(policy, sort_keys=True, default=str).encode()).hexdigest()

    def attach(
        self,
        vectors: Sequence[str | Path | Any],
        *,
        embeddings: str | None = None,
        selection: Any = None,
    ) -> dict[str, Any]:
        """Hold vectors next to the engine (every worker reads them; the engine keeps θ₀).

        Args:
            vectors (Sequence): Vector folders (``rvec extract`` outputs) or read vectors; workers
                read them from disk, so paths must be visible where the engine runs.
            embeddings (str | None, default None): Embedding policy (``overlap``/``skip``), as for
                in-memory application.
            selection (Selection | None, default None): Which tensors get α and with what factor
                (``--include``/``--exclude``/``--layers``/schedule), as for in-memory application.

        Returns:
            dict: What each switch touches and streams (rank 0's view; every rank is the same).

        Raises:
            IncompatibleError: a vector does not fit the model.
        """
        from rvec.vector.artifact import read_vector

        self.restore()
        read = [v if hasattr(v, "content_hash") else read_vector(v) for v in vectors]
        summaries = self.llm.collective_rpc(
            "rvec_attach", args=([str(v.path) for v in read], embeddings, selection)
        )
        self.vector_hashes = [v.content_hash for v in read]
        self.alphas = [0.0] * len(read)
        self.selection, self.embeddings = selection, embeddings
        self._sync_backend()
        return summaries[0]

    def set_alphas(self, alphas: Sequence[float]) -> dict[str, float]:
        """Set the engine to ``θ₀ + Σ αᵢ·vᵢ`` (all zero: θ₀ exactly) and reset its prefix cache.

        Returns:
            dict: seconds spent computing θ, reloading it into the engine (slowest rank), and in total.

        Raises:
            InvalidArgumentError: not one α per attached vector.
            BackendError: the engine refused to reset its prefix cache.
        """
        alphas = [float(a) for a in alphas]
        if len(alphas) != len(self.vector_hashes):
            raise InvalidArgumentError(
                f"{len(self.vector_hashes)} vector(s) attached but {len(alphas)} α value(s); attach them first"
            )
        if alphas == self.alphas:
            return {"compute_seconds": 0.0, "reload_seconds": 0.0, "seconds": 0.0}
        if not any(alphas):
            return self._switch("rvec_restore", ())
        return self._switch("rvec_set_alphas", (alphas,))

    def restore(self) -> None:
        """Put θ₀ back (bit-exact) if any α is non-zero."""
        if any(self.alphas):
            self._switch("rvec_restore", ())

    def workers_state(self) -> list[dict[str, Any]]:
        """Each rank's α, sha256 of the tensors it last streamed, and checksum of its live weights."""
        return self.llm.collective_rpc("rvec_state")

    # ------------------------------------------------------------------------------- evaluation
    def backend(self, *, progress: bool = False, tie_margin: float | None = None) -> VllmBackend:
        """The engine as a :class:`~rvec.eval.types.LanguageModel` (one per state, reused)."""
        if self._backend is None or self._backend.progress != progress or tie_margin is not None:
            self._backend = VllmBackend(
                self.llm,
                self.tokenizer,
                fingerprint=self.fingerprint,
                settings=self.settings,
                eos_ids=self.eos_ids,
                max_position_embeddings=self.max_position_embeddings,
                progress=progress,
                tie_margin=tie_margin,
            )
        return self._backend

    def close(self) -> None:
        """Stop the engine's processes (the state is unusable afterwards)."""
        self.llm.llm_engine.engine_core.shutdown()

    # ------------------------------------------------------------------------------- internals
    def _switch(self, method: str, args: tuple[Any, ...]) -> dict[str, float]:
        start = time.perf_counter()
        reports = self.llm.collective_rpc(method, args=args)
        if not self.llm.reset_prefix_cache():
            raise BackendError(
                "vLLM refused to reset its prefix cache after an α switch, so cached blocks of the old weights "
                "would be reused; make sure no request is running during a switch"
            )
        self.alphas = list(reports[0]["alphas"])
        self._sync_backend()
        seconds = time.perf_counter() - start
        self.timings["switch"] += seconds
        self.timings["switches"] += 1
        return {
            "compute_seconds": max(r["compute_seconds"] for r in reports),
            "reload_seconds": max(r["reload_seconds"] for r in reports),
            "seconds": seconds,
        }

    def _sync_backend(self) -> None:
        if self._backend is not None:
            self._backend.fingerprint = self.fingerprint


def local_folder(ckpt: Any, convert_dir: Path | None = None) -> Path:
    """A folder vLLM can load: the checkpoint's own, or its GGUF dequantized once (float32, cached).

    vLLM could read GGUF itself, but it would keep the quantized weights; rvec's HF backend and
    ``rvec apply`` work on the dequantized float32 ones, so both backends load the same numbers.
    """
    if ckpt.gguf_file is None:
        return Path(ckpt.path)
    from rvec.checkpoint.gguf import convert
    from rvec.checkpoint.hashing import cache_dir

    folder = (convert_dir or cache_dir() / "converted") / f"{ckpt.gguf_file.stem}-{ckpt.fingerprint()}"
    if not (folder / "config.json").is_file():
        logger.info("dequantizing %s into %s for vLLM", ckpt.gguf_file.name, folder)
        convert(ckpt.gguf_file, folder, overwrite=True, progress=False)
    return folder


def eos_ids_of(folder: Path, tokenizer: Any) -> frozenset[int]:
    """The EOS set the HF backend uses for the same folder (generation config, else the model
    config's, plus the tokenizer's)."""
    from types import SimpleNamespace

    from transformers import AutoConfig, GenerationConfig

    from rvec.eval.backends.hf import _eos_ids

    try:
        generation = GenerationConfig.from_pretrained(str(folder))
    except OSError:  # no generation_config.json: transformers derives one from config.json
        generation = GenerationConfig.from_model_config(AutoConfig.from_pretrained(str(folder)))
    return _eos_ids(SimpleNamespace(generation_config=generation), tokenizer)
