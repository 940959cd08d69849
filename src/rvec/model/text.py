"""The text rules both engines share: how a request becomes tokens, and how generated tokens
become the response text.

One module, so the HF and vLLM backends cannot differ in where a text comes from or where it is cut:

* :class:`TextRules` — rendering (the chat template with a generation prompt, or the raw prompt),
  tokenisation (the tokenizer adds its special tokens unless the text already starts with the BOS
  string, which a rendered chat template usually does: lm-eval 0.4.13's rule, so nothing is added
  twice), lm-eval's context/continuation split for log-likelihoods, and decoding.
* :class:`Row` — one request being generated: prompt tokens, stops, budget and the tokens so far; it
  decides when the request is finished (EOS, a stop string on the text with special tokens kept, the
  token budget) and cuts the final text.
* :func:`eos_ids` — every token that ends a generation (generation config and tokenizer).
* :data:`TIE_MARGINS` — the top-two logit gap below which a greedy step is a near-tie, by dtype.

Example:
    >>> rules = TextRules(tokenizer, eos_ids=frozenset({2}))            # doctest: +SKIP
    >>> rules.encode_pair("Q: 2+2? A:", " 4")                           # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rvec.errors import InvalidArgumentError
from rvec.eval.types import GenerateRequest, LoglikelihoodRequest, Response

__all__ = [
    "TEXT_RULES_VERSION",
    "TIE_MARGINS",
    "Piece",
    "Row",
    "ScoreSheet",
    "TextRules",
    "complete",
    "eos_ids",
]

TEXT_RULES_VERSION = 1
"""Version of the rules below; part of every backend's identity (hence of cache keys)."""

TIE_MARGINS: dict[str, float] = {"float32": 1e-3, "float64": 1e-6}
"""Top-two logit gap below which a greedy step is re-decided (HF) or counted as a near-tie (vLLM),
by parameter dtype. The float32 value is 20x the largest batch-to-batch logit difference measured on
SmolLM2 (5e-5). Half precisions differ by ~1e-1 between batches, so there is no margin for them and
texts depend on the batch. Measured on an H200 (docs/benchmarks.md), 64 GSM8K answers of SmolLM2,
batch 64 vs 24: bfloat16 42 differ (16 with a 0.25 margin); float32 0 differ."""


class TextRules:
    """Rendering, tokenisation and decoding for one tokenizer.

    Args:
        tokenizer: A ``transformers`` tokenizer (chat template included).
        eos_ids (frozenset[int]): Tokens that end a generation (:func:`eos_ids`).
    """

    def __init__(self, tokenizer: Any, *, eos_ids: frozenset[int]) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids

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

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; BOS added unless the text starts with the BOS string."""
        bos = getattr(self.tokenizer, "bos_token", None)
        add_special = not (bos and text.startswith(bos))
        return list(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def prompt_tokens(self, request: GenerateRequest, index: int) -> list[int]:
        """The tokens of a generation request's rendered prompt.

        Raises:
            InvalidArgumentError: the prompt renders to no tokens.
        """
        tokens = self.encode(self.render(request))
        if not tokens:
            raise InvalidArgumentError(f"request {index} renders to no tokens; give it a non-empty prompt")
        return tokens

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``, special tokens not added (the think-block counts of a response)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    def decode(self, tokens: list[int]) -> str:
        """The response text: special tokens skipped, as lm-eval's final decode does."""
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def decode_raw(self, tokens: list[int]) -> str:
        """The text with special tokens kept, which stop strings are looked for in (lm-eval's rule)."""
        return self.tokenizer.decode(tokens, skip_special_tokens=False)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's ``_encode_pair`` for causal models (``lm_eval/api/model.py``, 0.4.13): trailing
        spaces of the context move to the continuation; the continuation's tokens are those of
        ``tok(context + continuation)`` beyond ``tok(context)``.

        Raises:
            InvalidArgumentError: an empty continuation.
        """
        if not continuation:
            raise InvalidArgumentError("a log-likelihood continuation is empty; nothing to score")
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        if not context:
            # lm-eval conditions an empty context on its prefix token (BOS, else EOS).
            bos = self.tokenizer.bos_token_id
            prefix = bos if bos is not None else min(self.eos_ids)
            return [prefix], self.encode(continuation)
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx) :]


def eos_ids(generation_config: Any, tokenizer: Any) -> frozenset[int]:
    """Every token that ends a generation: the generation config's EOS ids and the tokenizer's.

    Raises:
        InvalidArgumentError: neither defines one.
    """
    ids: set[int] = set()
    configured = getattr(generation_config, "eos_token_id", None)
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


@dataclass(frozen=True)
class Piece:
    """One continuation of one log-likelihood request, tokenised: what an engine scores."""

    request: int
    choice: int
    context: list[int]
    continuation: list[int]


class ScoreSheet:
    """Log-likelihood requests split into :class:`Piece` s, scored in any order by an engine and
    assembled back per request (in the request's choice order), each reported as soon as its last
    continuation is scored.

    Args:
        requests: The requests.
        rules (TextRules): Renders and splits them (lm-eval's context/continuation rule).
        on_done (callable): Called with ``(index, response)`` when a request is complete.
    """

    def __init__(
        self,
        requests: Sequence[LoglikelihoodRequest],
        rules: TextRules,
        *,
        on_done: Callable[[int, Response], None],
    ) -> None:
        self.requests = requests
        self.on_done = on_done
        self.pieces: list[Piece] = []
        for i, request in enumerate(requests):
            context = rules.render(request)
            for k, continuation in enumerate(request.continuations):
                self.pieces.append(Piece(i, k, *rules.encode_pair(context, continuation)))
        self._scores: list[list[float | None]] = [[None] * len(r.continuations) for r in requests]
        self._results: list[Response | None] = [None] * len(requests)

    def record(self, piece: Piece, value: float) -> None:
        """The summed log-probability of ``piece``'s continuation."""
        scores = self._scores[piece.request]
        scores[piece.choice] = value
        if all(s is not None for s in scores):
            request = self.requests[piece.request]
            response = Response(
                loglikelihoods=tuple(float(s) for s in scores if s is not None),
                continuation_lengths=tuple(len(c) for c in request.continuations),
            )
            self._results[piece.request] = response
            self.on_done(piece.request, response)

    def responses(self) -> list[Response]:
        """Every response in request order (a request without continuations gets an empty one)."""
        for i, request in enumerate(self.requests):
            if not request.continuations and self._results[i] is None:
                self._results[i] = Response(loglikelihoods=(), continuation_lengths=())
        return complete(self._results)


def complete(results: Sequence[Response | None]) -> list[Response]:
    """``results`` once every request has its response (in input order)."""
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:  # a bug, not a user error: every path of a backend must finish every row
        raise RuntimeError(f"internal error: no response for request(s) {missing[:5]}")
    return [r for r in results if r is not None]


# Decode this many tokens more than the longest stop string spans: a stop occurrence then lies
# inside the decoded window, away from its first token (whose leading space decoders may drop).
_STOP_WINDOW_SLACK = 8


@dataclass
class Row:
    """One generation request in flight.

    Args:
        index (int): Position of the request in the caller's list.
        prompt (list[int]): Prompt token ids.
        stops (tuple[str, ...]): Stop strings (cut from the text, with everything after them).
        max_new_tokens (int): Token budget.
    """

    index: int
    prompt: list[int]
    stops: tuple[str, ...]
    max_new_tokens: int
    tokens: list[int] = field(default_factory=list)
    done: bool = False
    hit_eos: bool = False

    @property
    def n_generated(self) -> int:
        """Tokens the model produced for this row, the EOS that ended it included."""
        return len(self.tokens) + int(self.hit_eos)

    def push(self, token: int, *, eos_ids: frozenset[int], decode: Callable[[list[int]], str]) -> bool:
        """Record the next token; return True when the row is finished.

        ``decode`` must keep special tokens, as lm-eval's stop check does: a stop such as
        ``<|im_end|>`` that is a special token but not EOS then still ends the row.
        """
        if token in eos_ids:
            self.hit_eos = self.done = True
            return True
        self.tokens.append(token)
        self.done = (bool(self.stops) and self._stopped(decode)) or len(self.tokens) >= self.max_new_tokens
        return self.done

    def text(self, decode: Callable[[list[int]], str]) -> str:
        """The generated text, cut before the first occurrence of any stop string (``decode``
        skips special tokens, as lm-eval's final decode does)."""
        text = decode(self.tokens)
        cut = min((i for i in (text.find(s) for s in self.stops if s) if i >= 0), default=len(text))
        return text[:cut]

    def _stopped(self, decode: Callable[[list[int]], str]) -> bool:
        # Cheap check on a window of recent tokens, confirmed on the whole text: a window can
        # decode differently at its left edge, and a false positive would end the row early.
        window = max(len(s) for s in self.stops) + _STOP_WINDOW_SLACK
        tail = decode(self.tokens[-window:])
        if not any(s and s in tail for s in self.stops):
            return False
        full = decode(self.tokens)
        return any(s and s in full for s in self.stops)
