"""The default backend: a live ``transformers`` causal LM, batched greedy generation and scoring.

Generation
    Requests are sorted by prompt length (longest first), cut into batches of ``batch_size``, left
    padded (attention mask and position ids computed from the mask, so padding changes no
    position), and decoded greedily until each row hits EOS, one of its own stop strings, or its
    token budget. The stop string and everything after it is cut from the text; results come back
    in input order. Two loops implement this (``decode=``):

    * ``"loop"`` (default on CPU): a hand-written decode loop over a dynamic KV cache that drops
      finished rows from the batch, so a batch costs what its unfinished rows cost;
    * ``"generate"`` (default on CUDA): ``model.generate`` with a static KV cache (transformers
      compiles the decode step) and a per-row stopping criterion; finished rows ride along padded.

    Both choose tokens through :class:`~rvec.eval.backends._decode.TieGuard`, so a request's text
    does not depend on the batch it was in (see that module for the measurements and the argument).

Scoring (log-likelihood)
    lm-evaluation-harness semantics: trailing spaces of the context move to the continuation; the
    continuation's tokens are those of ``tok(context + continuation)`` beyond ``tok(context)``; the
    result is the sum of their log-probabilities. Character lengths of the continuations are
    returned for ``acc_norm``.

Tokenisation
    The tokenizer adds its special tokens (BOS) unless the text already starts with the BOS string,
    which a rendered chat template usually does: the rule lm-eval 0.4.13 follows, so nothing is
    added twice.

Usually made by the HF model state (:meth:`rvec.model.hf.HFModelState.language_model`), which keeps
its fingerprint in step with vectors applied in memory.

Example:
    >>> model, tokenizer, fingerprint = load_causal_lm("HuggingFaceTB/SmolLM2-135M-Instruct")
    >>> lm = HFBackend(model, tokenizer, fingerprint=fingerprint, batch_size=8, progress=False)
    >>> lm.generate([GenerateRequest(None, "Q: 2+2?\\nA:", ("\\n",), 16)])[0].text
    ' 4'
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch

from rvec.errors import InvalidArgumentError
from rvec.eval.backends._decode import Row, TieGuard
from rvec.eval.progress import EvalProgress
from rvec.eval.types import GenerateRequest, LoglikelihoodRequest, Response, ResultCallback

__all__ = ["DECODE_VERSION", "HFBackend", "ResultCallback"]

logger = logging.getLogger(__name__)

DECODE_VERSION = 1
"""Version of the decoding rules below; part of :attr:`HFBackend.identity`, hence of cache keys."""

# Top-two logit gap below which a greedy step is recomputed canonically, by parameter dtype. The
# float32 value is 20x the largest batch-to-batch logit difference measured on SmolLM2 (5e-5).
# Half precisions differ by ~1e-1 between batches, so the guard is off there and texts depend on
# the batch. Measured on an H200 (docs/benchmarks.md), 64 GSM8K answers of SmolLM2, batch 64 vs 24:
# bfloat16 42 differ (16 with a 0.25 margin); float32 0 differ, the guard recomputing 2-3 steps.
_AUTO_TIE_MARGIN: dict[torch.dtype, float] = {torch.float32: 1e-3, torch.float64: 1e-6}


class HFBackend:
    """A :class:`~rvec.eval.types.LanguageModel` over a ``transformers`` causal LM.

    Args:
        model (torch.nn.Module): The causal LM, in eval mode (from
            :func:`rvec.model.loading.load_causal_lm`).
        tokenizer: Its tokenizer (chat template included).
        fingerprint (str): Identifies the weights (vectors applied in memory included).
        batch_size (int, default 16): Requests per forward batch.
        device (str | None, default None): Where inputs go; ``None`` = where the model's weights are.
            A different device moves the model there.
        progress (bool, default True): Show a progress bar per call.
        tie_margin (float | None, default None): See :class:`~rvec.eval.backends._decode.TieGuard`;
            ``None`` picks by dtype (1e-3 for float32, off for half precision), ``0`` turns it off.
        decode (str, default "auto"): ``"loop"``, ``"generate"``, or ``"auto"`` (``"generate"`` with
            a static cache on CUDA, ``"loop"`` elsewhere).
        settings (Mapping | None, default None): The backend settings it was made from
            (:class:`~rvec.model.settings.HFSettings`), recorded by :meth:`describe`.

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
        margin = tie_margin if tie_margin is not None else _AUTO_TIE_MARGIN.get(self.dtype, 0.0)
        self.guard = TieGuard(model, margin=margin, device=self.device)
        if margin == 0 and self.dtype in (torch.bfloat16, torch.float16):
            logger.warning(
                "%s: greedy texts can change with the batch size and with the other tasks of a run "
                "(an H200 gave 42 of 64 GSM8K answers different between batch sizes 64 and 24); "
                "use float32 (--dtype float32) for batch-invariant responses",
                str(self.dtype).removeprefix("torch."),
            )
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.name = f"hf/{str(self.dtype).removeprefix('torch.')}"
        self.identity = self._identity()
        self.settings = dict(settings) if settings is not None else None
        self._cache_kwarg = _cache_kwarg(model)
        self.fingerprint = fingerprint  # after the move: the checksum is taken where the weights live

    @property
    def fingerprint(self) -> str:
        """The weights' fingerprint, checked against the weights themselves.

        Caches key responses on it, so a stale one would serve another model's answers. Whoever
        changes the weights in place (vectors applied in memory) must assign the new state's
        fingerprint (:func:`rvec.model.fingerprint.vector_fingerprint`); reading it costs one pass over
        the weights, so read it once per evaluation.

        Raises:
            InvalidArgumentError: the weights changed since the fingerprint was assigned.
        """
        if _weights_checksum(self.model) != self._checksum:
            raise InvalidArgumentError(
                "the model's weights changed since HFBackend.fingerprint was set; assign the new state's "
                "fingerprint (e.g. rvec.model.fingerprint.vector_fingerprint(base, [(vector hash, alpha)])) "
                "before evaluating, or cached responses of the old weights would be reused"
            )
        return self._fingerprint

    @fingerprint.setter
    def fingerprint(self, value: str) -> None:
        self._fingerprint = value
        self._checksum = _weights_checksum(self.model)

    # -------------------------------------------------------------------------------- public API
    def render(self, request: GenerateRequest | LoglikelihoodRequest) -> str:
        """The exact text the request is tokenised from (chat template applied when it has messages).

        Raises:
            InvalidArgumentError: the request sets both or neither of ``messages`` and ``prompt``,
                or has messages but the tokenizer has no chat template.
        """
        if (request.messages is None) == (request.prompt is None):
            raise InvalidArgumentError("a request needs exactly one of messages or prompt")
        if request.prompt is not None:
            return request.prompt
        if not getattr(self.tokenizer, "chat_template", None):
            raise InvalidArgumentError(
                "the request has chat messages but the tokenizer has no chat template; "
                "use a raw-prompt preset such as --preset lm-eval"
            )
        return self.tokenizer.apply_chat_template(
            [dict(m) for m in request.messages], add_generation_prompt=True, tokenize=False
        )

    def describe(self) -> dict[str, Any]:
        """Settings and tie-guard counters, for ``results.json``."""
        return {
            "name": self.name,
            "identity": self.identity,
            "device": str(self.device),
            "batch_size": self.batch_size,
            "decode": self.decode_mode,
            "tie_margin": self.guard.margin,
            "tie_recomputed": self.guard.recomputed,
            "tie_overridden": self.guard.overridden,
            **({"settings": self.settings} if self.settings is not None else {}),
        }

    def generate(
        self, requests: Sequence[GenerateRequest], *, on_result: ResultCallback | None = None
    ) -> list[Response]:
        """Greedy generation for every request; results in input order.

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
            Row(i, self._prompt_tokens(r, i), tuple(r.stop), r.max_new_tokens) for i, r in enumerate(requests)
        ]
        results: list[Response | None] = [None] * len(rows)
        with EvalProgress(len(rows), description="generate", enabled=self.progress) as bar:

            def finish(row: Row) -> None:
                response = Response(text=row.text(self._decode), n_generated_tokens=row.n_generated)
                results[row.index] = response
                bar.advance(tokens=response.n_generated_tokens)
                if on_result is not None:
                    on_result(row.index, response)

            for batch in _batches(rows, key=lambda r: len(r.prompt), size=self.batch_size):
                done_early = [r for r in batch if r.max_new_tokens <= 0]
                for row in done_early:
                    row.done = True
                    finish(row)
                live = [r for r in batch if not r.done]
                if live and self.decode_mode == "loop":
                    self._run_loop(live, finish)
                elif live:
                    self._run_generate(live, finish)
        return _complete(results)

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
        pieces: list[tuple[int, int, list[int], list[int]]] = []  # (request, choice, context, cont)
        for i, request in enumerate(requests):
            context = self.render(request)
            for k, continuation in enumerate(request.continuations):
                ctx, cont = self._encode_pair(context, continuation)
                pieces.append((i, k, ctx, cont))
        scores: list[list[float | None]] = [[None] * len(r.continuations) for r in requests]
        results: list[Response | None] = [None] * len(requests)
        with EvalProgress(len(requests), description="loglikelihood", enabled=self.progress) as bar:
            for batch in _batches(pieces, key=lambda p: len(p[2]) + len(p[3]), size=self.batch_size):
                for (i, k, _, _), value in zip(batch, self._score_batch(batch), strict=True):
                    scores[i][k] = value
                    if all(s is not None for s in scores[i]):
                        results[i] = self._ll_response(requests[i], scores[i])
                        bar.advance()
                        if on_result is not None:
                            on_result(i, results[i])
        for i, request in enumerate(requests):
            if not request.continuations and results[i] is None:
                results[i] = Response(loglikelihoods=(), continuation_lengths=())
                if on_result is not None:
                    on_result(i, results[i])
        return _complete(results)

    # -------------------------------------------------------------------------------- tokenising
    def _encode(self, text: str) -> list[int]:
        bos = getattr(self.tokenizer, "bos_token", None)
        add_special = not (bos and text.startswith(bos))
        return list(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def _prompt_tokens(self, request: GenerateRequest, index: int) -> list[int]:
        tokens = self._encode(self.render(request))
        if not tokens:
            raise InvalidArgumentError(f"request {index} renders to no tokens; give it a non-empty prompt")
        return tokens

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def _decode_raw(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=False)

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's ``_encode_pair`` for causal models (``lm_eval/api/model.py``, 0.4.13)."""
        if not continuation:
            raise InvalidArgumentError("a log-likelihood continuation is empty; nothing to score")
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        if not context:
            # lm-eval conditions an empty context on its prefix token (BOS, else EOS).
            bos = self.tokenizer.bos_token_id
            prefix = bos if bos is not None else min(self.eos_ids)
            return [prefix], self._encode(continuation)
        whole = self._encode(context + continuation)
        ctx = self._encode(context)
        return ctx, whole[len(ctx) :]

    # ---------------------------------------------------------------------------------- decoding
    @torch.inference_mode()
    def _run_loop(self, rows: list[Row], finish: Callable[[Row], None]) -> None:
        """Decode with a dynamic KV cache, dropping finished rows from the batch as they finish."""
        from transformers import DynamicCache

        ids, mask = self._left_pad([r.prompt for r in rows])  # (B, T) each
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): padding shifts no position
        cache = _new_dynamic_cache(DynamicCache, self.model)
        logits = self._forward(ids, mask, positions, cache)  # (B, V)
        live = list(rows)
        while True:
            tokens = self.guard.choose(logits, live)
            keep = []
            for j, (row, token) in enumerate(zip(live, tokens, strict=True)):
                if row.push(token, eos_ids=self.eos_ids, decode=self._decode_raw):
                    finish(row)
                else:
                    keep.append(j)
            if not keep:
                return
            if len(keep) < len(live):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, positions = mask[index], positions[index]
                live = [live[j] for j in keep]
            next_ids = torch.tensor([[r.tokens[-1]] for r in live], device=self.device)  # (B', 1)
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)  # (B', T + t)
            positions = positions[:, -1:] + 1  # (B', 1)
            logits = self._forward(next_ids, mask, positions, cache)

    @torch.inference_mode()
    def _run_generate(self, rows: list[Row], finish: Callable[[Row], None]) -> None:
        """Decode with ``model.generate``; on CUDA with a static cache (compiled decode step)."""
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        ids, mask = self._left_pad([r.prompt for r in rows])
        config = GenerationConfig(
            do_sample=False,  # pure greedy: the model's own sampling or penalty defaults never apply
            max_new_tokens=max(r.max_new_tokens for r in rows),
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos_ids),
            cache_implementation="static" if self.device.type == "cuda" else None,
        )
        criteria = _RowCriteria(rows, self, finish)
        processor = _GuardProcessor(rows, self.guard)
        # generate() fills every field we leave unset from model.generation_config (a repetition
        # penalty, suppressed tokens…); a neutral one in its place keeps this loop pure greedy, as
        # the other loop is.
        saved, self.model.generation_config = self.model.generation_config, GenerationConfig()
        try:
            self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                generation_config=config,
                logits_processor=LogitsProcessorList([processor]),
                stopping_criteria=StoppingCriteriaList([criteria]),
            )
        finally:
            self.model.generation_config = saved
        for row in rows:  # rows cut off by the batch-wide budget end here
            if not row.done:
                row.done = True
                finish(row)

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any
    ) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kwarg: cache},
        )
        return out.logits[:, -1].float()  # (B, V)

    def _left_pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, seq in enumerate(sequences):
            ids[i, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[i, width - len(seq) :] = 1
        return ids.to(self.device), mask.to(self.device)

    # ----------------------------------------------------------------------------------- scoring
    @torch.inference_mode()
    def _score_batch(self, batch: list[tuple[int, int, list[int], list[int]]]) -> list[float]:
        """Summed log-probabilities of each piece's continuation tokens.

        Left padding aligns every continuation at the right edge, so only the last
        ``max(len(cont))`` positions need vocabulary logits.
        """
        max_len = getattr(self.model.config, "max_position_embeddings", None)
        inputs, conts = [], []
        for _, _, ctx, cont in batch:
            whole = ctx + cont
            if max_len is not None and len(whole) - 1 > max_len:
                whole = whole[-(max_len + 1) :]  # lm-eval truncates the context from the left
            inputs.append(whole[:-1])
            conts.append(cont)
        ids, mask = self._left_pad(inputs)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        keep = max(len(c) for c in conts)
        logits = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=keep
        ).logits  # (B, keep, V)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        values = []
        for j, cont in enumerate(conts):
            target = torch.tensor(cont, device=self.device)  # (c,)
            rows = logprobs[j, keep - len(cont) :]  # (c, V): positions predicting each cont token
            values.append(float(rows.gather(-1, target[:, None]).sum()))
        return values

    @staticmethod
    def _ll_response(request: LoglikelihoodRequest, scores: list[float | None]) -> Response:
        return Response(
            loglikelihoods=tuple(float(s) for s in scores if s is not None),
            continuation_lengths=tuple(len(c) for c in request.continuations),
        )

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


class _RowCriteria:
    """Per-row stopping for ``model.generate``: a row is done at EOS, a stop string or its budget."""

    def __init__(self, rows: list[Row], backend: HFBackend, finish: Callable[[Row], None]) -> None:
        self.rows = rows
        self.backend = backend
        self.finish = finish

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        last = input_ids[:, -1].tolist()
        for row, token in zip(self.rows, last, strict=True):
            if not row.done and row.push(
                token, eos_ids=self.backend.eos_ids, decode=self.backend._decode_raw
            ):
                self.finish(row)
        return torch.tensor([r.done for r in self.rows], dtype=torch.bool, device=input_ids.device)


class _GuardProcessor:
    """Runs the tie guard inside ``model.generate``: near-tie rows get their canonical token forced."""

    def __init__(self, rows: list[Row], guard: TieGuard) -> None:
        self.rows = rows
        self.guard = guard

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        live = [j for j, row in enumerate(self.rows) if not row.done]
        if self.guard.margin <= 0 or not live:
            return scores
        chosen = self.guard.choose(scores[live].float(), [self.rows[j] for j in live])
        forced = scores.clone()
        rows = torch.tensor(live, device=scores.device)
        forced[rows] = float("-inf")
        forced[rows, torch.tensor(chosen, device=scores.device)] = 0.0
        return forced


def _complete(results: list[Response | None]) -> list[Response]:
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:  # a bug, not a user error: every path above must finish every row
        raise RuntimeError(f"internal error: no response for request(s) {missing[:5]}")
    return [r for r in results if r is not None]


def _batches(items: list, *, key: Callable[[Any], int], size: int) -> list[list]:
    """Items sorted by ``key`` (longest first, stable), cut into batches of ``size``."""
    order = sorted(items, key=key, reverse=True)
    return [order[i : i + size] for i in range(0, len(order), size)]


def _eos_ids(model: torch.nn.Module, tokenizer: Any) -> frozenset[int]:
    """Every token that ends a generation: the generation config's EOS ids and the tokenizer's."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if not ids:
        raise InvalidArgumentError(
            "neither the model nor the tokenizer defines an EOS token; cannot generate"
        )
    return frozenset(ids)


@torch.inference_mode()
def _weights_checksum(model: torch.nn.Module) -> float:
    """Sum of every parameter (float32 per tensor, summed on their device, one transfer). Not a
    hash: it only has to change when α·v is added, which it does unless the deltas cancel exactly."""
    sums = [p.detach().sum() for p in model.parameters()]
    return float(torch.stack([s.float() for s in sums]).double().sum()) if sums else 0.0


def _cache_kwarg(model: torch.nn.Module) -> str:
    # transformers 5 renamed `past_key_values` to `cache` (the old name warns until 5.40).
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _new_dynamic_cache(cls: Any, model: torch.nn.Module) -> Any:
    # With the config, the cache knows sliding-window layers (Qwen2, Gemma); older versions lack it.
    try:
        return cls(config=model.config)
    except TypeError:
        return cls()
