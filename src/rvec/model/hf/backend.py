"""The default backend: a live ``transformers`` causal LM, batched generation and scoring.

Generation
    Requests are sorted by prompt length (longest first), cut into batches of ``batch_size`` and
    decoded by :mod:`rvec.model.hf.decode` (``decode="loop"`` on CPU, ``"generate"`` with a static
    cache on CUDA) until each row hits EOS, one of its own stop strings, or its token budget; the
    stop string and everything after it is cut from the text; results come back in input order.
    Greedy near-ties are re-decided canonically (:mod:`rvec.model.hf.tie_guard`), so a request's
    text does not depend on the batch it was in. A request with a draw (a sampled run) takes its
    tokens from its own seeded generator (:mod:`rvec.model.hf.sampler`).

Scoring (log-likelihood)
    lm-evaluation-harness semantics (:meth:`rvec.model.text.TextRules.encode_pair`): the sum of the
    continuation tokens' log-probabilities. Character lengths of the continuations are returned for
    ``acc_norm``. Each request's context runs once for all its continuations
    (:mod:`rvec.model.hf.scoring`; ``share_contexts=False`` runs every piece whole, as lm-eval).

Rendering, tokenisation and stopping are :mod:`rvec.model.text`'s, shared with the vLLM backend.
Usually made by the HF model state (:meth:`rvec.model.hf.state.HFModelState.language_model`), which
keeps its fingerprint in step with vectors applied in memory.

Example:
    >>> model, tokenizer, fingerprint = load_causal_lm("HuggingFaceTB/SmolLM2-135M-Instruct")
    >>> lm = HFBackend(model, tokenizer, fingerprint=fingerprint, batch_size=8, progress=False)
    >>> lm.generate([GenerateRequest(None, "Q: 2+2?\\nA:", ("\\n",), 16)])[0].text
    ' 4'
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from rvec.errors import InvalidArgumentError
from rvec.eval.types import GenerateRequest, LoglikelihoodRequest, Response, ResultCallback
from rvec.model.hf.decode import Decoder, batches, left_pad
from rvec.model.hf.scoring import Scorer
from rvec.model.hf.tie_guard import TieGuard
from rvec.model.text import TIE_MARGINS, Piece, Row, ScoreSheet, TextRules, complete, eos_ids
from rvec.progress import ProgressBar

__all__ = ["DECODE_VERSION", "HFBackend"]

logger = logging.getLogger(__name__)

DECODE_VERSION = 1
"""Version of the decoding rules below; part of :attr:`HFBackend.identity`, hence of cache keys."""


class HFBackend:
    """A :class:`~rvec.eval.types.LanguageModel` over a ``transformers`` causal LM.

    Args:
        model (torch.nn.Module): The causal LM, in eval mode (from
            :func:`rvec.model.hf.loading.load_causal_lm`).
        tokenizer: Its tokenizer (chat template included).
        fingerprint (str): Identifies the weights (vectors applied in memory included).
        batch_size (int, default 16): Requests per forward batch.
        device (str | None, default None): Where inputs go; ``None`` = where the model's weights are.
            A different device moves the model there.
        progress (bool, default True): Show a progress bar per call.
        tie_margin (float | None, default None): See :class:`~rvec.model.hf.tie_guard.TieGuard`;
            ``None`` picks by dtype (1e-3 for float32, off for half precision), ``0`` turns it off.
        decode (str, default "auto"): ``"loop"``, ``"generate"``, or ``"auto"`` (``"generate"`` with
            a static cache on CUDA, ``"loop"`` elsewhere).
        settings (Mapping | None, default None): The backend settings it was made from
            (:class:`~rvec.model.hf.settings.HFSettings`), recorded by :meth:`describe`.
        share_contexts (bool, default True): Score each log-likelihood request's context once for
            all its continuations (:meth:`~rvec.model.hf.scoring.Scorer.shared`); ``False`` runs
            every continuation with its whole context (lm-eval's way; equal within float rounding).

    Raises:
        InvalidArgumentError: ``batch_size`` < 1, a negative ``tie_margin``, or an unknown ``decode``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        fingerprint: str,
        batch_size: int = 16,
        device: str | None = None,
        progress: bool = True,
        tie_margin: float | None = None,
        decode: Literal["auto", "loop", "generate"] = "auto",
        settings: Mapping[str, Any] | None = None,
        share_contexts: bool = True,
    ) -> None:
        if batch_size < 1:
            raise InvalidArgumentError(f"batch_size {batch_size} must be at least 1; e.g. --batch-size 16")
        if tie_margin is not None and tie_margin < 0:
            raise InvalidArgumentError(f"tie_margin {tie_margin} must be >= 0 (0 turns the guard off)")
        if decode not in ("auto", "loop", "generate"):
            raise InvalidArgumentError(f"decode {decode!r} is not one of: auto, loop, generate")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.progress = progress
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        if next(model.parameters()).device != self.device:
            logger.info("moving the model to %s", self.device)
            model.to(self.device)
        self.dtype = next(model.parameters()).dtype
        self.decode_mode = (
            decode if decode != "auto" else ("generate" if self.device.type == "cuda" else "loop")
        )
        dtype_name = str(self.dtype).removeprefix("torch.")
        margin = tie_margin if tie_margin is not None else TIE_MARGINS.get(dtype_name, 0.0)
        self.guard = TieGuard(model, margin=margin, device=self.device)
        if margin == 0 and self.dtype in (torch.bfloat16, torch.float16):
            logger.warning(
                "%s: greedy texts can change with the batch size and with the other tasks of a run "
                "(an H200 gave 42 of 64 GSM8K answers different between batch sizes 64 and 24); "
                "use float32 (--dtype float32) for batch-invariant responses",
                dtype_name,
            )
        self.eos_ids = eos_ids(getattr(model, "generation_config", None), tokenizer)
        self.text = TextRules(tokenizer, eos_ids=self.eos_ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.decoder = Decoder(
            model,
            device=self.device,
            guard=self.guard,
            eos_ids=self.eos_ids,
            pad_id=self.pad_id,
            decode_raw=self.text.decode_raw,
        )
        self.scorer = Scorer(model, device=self.device, pad_id=self.pad_id)
        self.share_contexts = share_contexts
        self.name = f"hf/{dtype_name}"
        self.identity = self._identity()
        self.settings = dict(settings) if settings is not None else None
        self.fingerprint = fingerprint  # after the move: the checksum is taken where the weights live

    @property
    def fingerprint(self) -> str:
        """The weights' fingerprint, checked against the weights themselves.

        Caches key responses on it, so a stale one would serve another model's answers. Whoever
        changes the weights in place (vectors applied in memory) must assign the new state's
        fingerprint (:func:`rvec.model.fingerprint.weights_fingerprint`); reading it costs one pass over
        the weights, so read it once per evaluation.

        Raises:
            InvalidArgumentError: the weights changed since the fingerprint was assigned.
        """
        if _weights_checksum(self.model) != self._checksum:
            raise InvalidArgumentError(
                "the model's weights changed since HFBackend.fingerprint was set; assign the new state's "
                "fingerprint (e.g. rvec.model.fingerprint.weights_fingerprint(base, [(vector hash, alpha)])) "
                "before evaluating, or cached responses of the old weights would be reused"
            )
        return self._fingerprint

    @fingerprint.setter
    def fingerprint(self, value: str) -> None:
        self._fingerprint = value
        self._checksum = _weights_checksum(self.model)

    # -------------------------------------------------------------------------------- public API
    def render(self, request: GenerateRequest | LoglikelihoodRequest) -> str:
        """See :meth:`rvec.model.text.TextRules.render`."""
        return self.text.render(request)

    def count_tokens(self, text: str) -> int:
        """See :meth:`rvec.model.text.TextRules.count_tokens` (:class:`~rvec.eval.types.TokenCounting`)."""
        return self.text.count_tokens(text)

    def round_trips(self, text: str) -> bool:
        """See :meth:`rvec.model.text.TextRules.round_trips` (:class:`~rvec.eval.types.TokenCounting`)."""
        return self.text.round_trips(text)

    def describe(self) -> dict[str, Any]:
        """Settings and tie-guard counters, for ``results.json``."""
        return {
            "name": self.name,
            "identity": self.identity,
            "device": str(self.device),
            "batch_size": self.batch_size,
            "decode": self.decode_mode,
            "loglikelihood": "shared-context" if self.share_contexts else "plain",
            "tie_margin": self.guard.margin,
            "tie_recomputed": self.guard.recomputed,
            "tie_overridden": self.guard.overridden,
            **({"settings": self.settings} if self.settings is not None else {}),
        }

    def generate(
        self, requests: Sequence[GenerateRequest], *, on_result: ResultCallback | None = None
    ) -> list[Response]:
        """Generation for every request (greedy, or drawn from its own seed); results in input order.

        Args:
            requests (Sequence[GenerateRequest]): What to generate.
            on_result (callable | None, default None): Called with ``(index, response)`` as each
                request finishes (the eval runner appends it to its cache there).

        Returns:
            list[Response]: ``text`` without the stop string, and ``n_generated_tokens``.

        Raises:
            InvalidArgumentError: a malformed request (see :meth:`render`).
        """
        rows = [
            Row(i, self.text.prompt_tokens(r, i), tuple(r.stop), r.max_new_tokens, r.draw)
            for i, r in enumerate(requests)
        ]
        results: list[Response | None] = [None] * len(rows)
        self.decoder.reset()
        with ProgressBar("generate", total=len(rows), enabled=self.progress) as bar:

            def finish(row: Row) -> None:
                response = Response(text=row.text(self.text.decode), n_generated_tokens=row.n_generated)
                results[row.index] = response
                bar.advance(tokens=response.n_generated_tokens)
                if on_result is not None:
                    on_result(row.index, response)

            for batch in batches(rows, key=lambda r: len(r.prompt), size=self.batch_size):
                done_early = [r for r in batch if r.max_new_tokens <= 0]
                for row in done_early:
                    row.done = True
                    finish(row)
                live = [r for r in batch if not r.done]
                if live and self.decode_mode == "loop":
                    self.decoder.run_loop(live, finish)
                elif live:
                    self.decoder.run_generate(live, finish)
        return complete(results)

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], *, on_result: ResultCallback | None = None
    ) -> list[Response]:
        """Summed log-probability of each continuation after its context (lm-eval semantics).

        Args:
            requests (Sequence[LoglikelihoodRequest]): Contexts and their continuations.
            on_result (callable | None, default None): As in :meth:`generate`.

        Returns:
            list[Response]: ``loglikelihoods`` and ``continuation_lengths`` (characters), one per
            continuation, in the request's order.

        Raises:
            InvalidArgumentError: a malformed request, or an empty continuation.
        """
        with ProgressBar("loglikelihood", total=len(requests), enabled=self.progress) as bar:

            def done(index: int, response: Response) -> None:
                bar.advance()
                if on_result is not None:
                    on_result(index, response)

            sheet = ScoreSheet(requests, self.text, on_done=done)
            groups = _by_request(sheet.pieces)
            shared = [g for g in groups if self.share_contexts and self.scorer.fits(g)]
            alone = [p for g in groups if not (self.share_contexts and self.scorer.fits(g)) for p in g]
            for batch in batches(shared, key=lambda g: len(g[0].context), size=self.batch_size):
                for group, values in zip(batch, self.scorer.shared(batch), strict=True):
                    for piece, value in zip(group, values, strict=True):
                        sheet.record(piece, value)
            for batch in batches(
                alone, key=lambda p: len(p.context) + len(p.continuation), size=self.batch_size
            ):
                for piece, value in zip(batch, self.scorer.plain(batch), strict=True):
                    sheet.record(piece, value)
        return sheet.responses()

    @torch.inference_mode()
    def next_token_logprobs(self, requests: Sequence[GenerateRequest | LoglikelihoodRequest]) -> np.ndarray:
        """Log-probabilities of the token after each rendered prompt, over the whole vocabulary.

        One forward pass per batch, left padded like generation, keeping only the last position's
        logits; a log-likelihood request's prompt is its context.

        Args:
            requests (Sequence[GenerateRequest | LoglikelihoodRequest]): The prompts.

        Returns:
            np.ndarray: float32, shape (len(requests), vocabulary rows of the model), input order.

        Raises:
            InvalidArgumentError: a prompt renders to no tokens.
        """
        rows = [self.text.prompt_tokens(r, i) for i, r in enumerate(requests)]  # type: ignore[arg-type]
        out: np.ndarray | None = None
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))  # like generate: longest first
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            ids, mask = left_pad([rows[i] for i in chosen], pad_id=self.pad_id, device=self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=1
            ).logits[:, -1]  # (B, V)
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
            if out is None:
                out = np.empty((len(rows), logprobs.shape[-1]), dtype=np.float32)
            out[chosen] = logprobs
        return out if out is not None else np.empty((0, 0), dtype=np.float32)

    def _identity(self) -> str:
        """What besides the weights changes a response: dtype, tokenizer, chat template, decoding."""
        template = getattr(self.tokenizer, "chat_template", None) or ""
        payload = {
            "backend": "hf",
            "decode_version": DECODE_VERSION,
            "dtype": str(self.dtype),
            "tie_margin": self.guard.margin,
            "tokenizer": type(self.tokenizer).__name__,
            "vocab": len(self.tokenizer),
            "chat_template": hashlib.sha256(str(template).encode()).hexdigest(),
            "eos": sorted(self.eos_ids),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _by_request(pieces: list[Piece]) -> list[list[Piece]]:
    """The pieces of each request together, in request order."""
    groups: dict[int, list[Piece]] = {}
    for piece in pieces:
        groups.setdefault(piece.request, []).append(piece)
    return list(groups.values())


@torch.inference_mode()
def _weights_checksum(model: torch.nn.Module) -> str:
    """A checksum of every parameter's raw bits that changes when any element changes.

    Each parameter's bytes are read as 64-bit words and summed modulo 2**64 on its device (one
    transfer for all): a changed element changes its word, and so the sum, by a non-zero amount
    below 2**64, whatever the dtype. A sum of the values in their own dtype missed that: in
    bfloat16 a small α·v rounds away in the running sum. Integer sums are also exact and
    order-free, so the checksum does not depend on how the device reduces. As fast as a float sum.
    """
    sums = [_bit_sum(p.detach()) for p in model.parameters()]
    if not sums:
        return ""
    words = torch.stack(sums).cpu().numpy().tobytes()
    return hashlib.sha256(words).hexdigest()


def _bit_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Σ of ``tensor``'s bytes as little-endian int64 words, mod 2**64; trailing bytes weighted by place."""
    raw = tensor.contiguous().view(-1).view(torch.uint8)  # (bytes,)
    whole = raw.numel() // 8 * 8
    total = raw[:whole].view(torch.int64).sum()
    if whole < raw.numel():  # at most 7 bytes: each at its own place so two cannot trade values
        tail = raw[whole:].to(torch.int64)
        places = torch.arange(tail.numel(), device=tail.device, dtype=torch.int64) * 8
        total = total + torch.bitwise_left_shift(tail, places).sum()
    return total
