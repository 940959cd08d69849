"""The vLLM backend: rvec's requests answered by a running ``vllm.LLM``, decided as the HF backend decides.

What is shared with :class:`~rvec.model.hf.backend.HFBackend` (:mod:`rvec.model.text`), so texts are
built and cut the same way:
    * rendering (chat template with a generation prompt, or the raw prompt) and tokenisation (BOS
      added unless the text starts with it; lm-eval's context/continuation split): one
      :class:`~rvec.model.text.TextRules`;
    * stopping: every generated token goes through a :class:`~rvec.model.text.Row` (EOS, the
      request's own stop strings on the text with special tokens kept, the token budget), and the
      request is aborted in the engine as soon as its row is done; the text is cut by ``Row.text``.
      vLLM's own stop-string matching is not used, so the two backends cannot differ in where a stop
      string is found.

What vLLM does: batching (continuous, over every request of the call), decoding from token ids
(``TokensPrompt``): greedy (``temperature=0``), or, for a request with a draw (a sampled run,
:mod:`rvec.eval.decoding`), vLLM's own sampler at the draw's temperature and top-p with the draw's
seed as the request's ``SamplingParams.seed`` — a per-request generator, so the sample does not
depend on the batch (vLLM's random stream is not the HF engine's: the two engines' samples differ);
and the log-probabilities: ``prompt_logprobs`` of the
context + continuation for scoring (the sum over the continuation's tokens, lm-eval's
``loglikelihood``), top-2 ``logprobs`` of each generated token for the near-tie audit.

Near-tie audit
    The HF backend re-decides near-ties (top-two logit gap below a margin) with a canonical
    computation so texts do not depend on the batch; vLLM's scheduler cannot run that. This backend
    counts the generated steps whose top-two gap is below the same margin (``describe()["near_ties"]``):
    zero means no greedy choice of the run was close enough for batch noise to flip it. Sampled
    requests are not audited (their tokens are not an argmax).

Example:
    >>> state = VllmModelState.load("smol/", VLLMSettings())        # doctest: +SKIP
    >>> lm = state.language_model()                                 # doctest: +SKIP
    >>> lm.generate([GenerateRequest(None, "Q: 2+2?\\nA:", ("\\n",), 16)])[0].text  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rvec.errors import InvalidArgumentError
from rvec.eval.types import GenerateRequest, LoglikelihoodRequest, Response, ResultCallback
from rvec.model.text import TEXT_RULES_VERSION, TIE_MARGINS, Piece, Row, ScoreSheet, TextRules, complete
from rvec.progress import ProgressBar

__all__ = ["VLLM_DECODE_VERSION", "VllmBackend"]

logger = logging.getLogger(__name__)

VLLM_DECODE_VERSION = 1
"""Version of this module's request handling; with ``TEXT_RULES_VERSION`` (the shared stopping and
tokenisation rules) part of :attr:`VllmBackend.identity`."""

# Settings that do not change a response; kept out of the identity (cache keys).
_NOT_IN_IDENTITY = ("start_seconds",)


_LOGPROB_ENTRIES = 1 << 22  # log-probabilities vLLM returns per call of next_token_logprobs


class VllmBackend:
    """A :class:`~rvec.eval.types.LanguageModel` over a running ``vllm.LLM``.

    Args:
        llm: The engine (from :func:`rvec.model.vllm.engine.start_engine`).
        tokenizer: The model's ``transformers`` tokenizer (rvec tokenises; vLLM receives token ids).
        fingerprint (str): Identifies the weights in the engine (vectors applied included).
        settings (dict): The engine settings :func:`~rvec.model.vllm.engine.start_engine` returns.
        eos_ids (frozenset[int]): Tokens that end a generation (generation config and tokenizer).
        max_position_embeddings (int | None, default None): The model's trained length; scoring
            truncates contexts from the left to it, as lm-eval does.
        progress (bool, default True): Show a progress bar per call.
        tie_margin (float | None, default None): Gap below which a step counts as a near-tie;
            ``None`` = the HF backend's margin for the dtype (1e-3 for float32), ``0`` = no audit.
        backend_settings (dict | None, default None): The user's settings
            (:class:`~rvec.model.vllm.spec.VLLMSettings`), recorded as ``describe()["settings"]``.

    Raises:
        InvalidArgumentError: a negative ``tie_margin``.
    """

    model = None
    """Engines own their weights: α is set through :class:`~rvec.model.vllm.state.VllmModelState`."""

    def __init__(
        self,
        llm: Any,
        tokenizer: Any,
        *,
        fingerprint: str,
        settings: dict[str, Any],
        eos_ids: frozenset[int],
        max_position_embeddings: int | None = None,
        progress: bool = True,
        tie_margin: float | None = None,
        backend_settings: dict[str, Any] | None = None,
    ) -> None:
        if tie_margin is not None and tie_margin < 0:
            raise InvalidArgumentError(f"tie_margin {tie_margin} must be >= 0 (0 turns the audit off)")
        self.llm = llm
        self.tokenizer = tokenizer
        self.fingerprint = fingerprint
        self.settings = dict(settings)
        self.backend_settings = dict(backend_settings) if backend_settings is not None else None
        self.eos_ids = eos_ids
        self.text = TextRules(tokenizer, eos_ids=eos_ids)
        self.progress = progress
        self.tie_margin = (
            tie_margin if tie_margin is not None else TIE_MARGINS.get(self.settings["dtype"], 0.0)
        )
        self.score_limit = min(
            max_position_embeddings or self.settings["max_model_len"], self.settings["max_model_len"] - 1
        )
        self.batch_size = int(self.settings["max_num_seqs"])
        self.name = f"vllm/{self.settings['dtype']}"
        self.identity = self._identity()
        self.audited_steps = 0
        self.near_ties = 0
        self.truncated = 0
        """Requests cut short by the engine's ``max_model_len`` (generation) or truncated from the left (scoring)."""
        self._pending: set[str] = set()  # engine requests of the current call not yet finished

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
        """Engine settings and near-tie audit counters, for ``results.json``."""
        return {
            "name": self.name,
            "identity": self.identity,
            "engine": self.settings,
            "tie_margin": self.tie_margin,
            "audited_steps": self.audited_steps,
            "near_ties": self.near_ties,
            "truncated": self.truncated,
            **({"settings": self.backend_settings} if self.backend_settings is not None else {}),
        }

    def generate(
        self, requests: Sequence[GenerateRequest], *, on_result: ResultCallback | None = None
    ) -> list[Response]:
        """Generation for every request (greedy, or drawn with its own seed); results in input order.

        Args:
            requests (Sequence[GenerateRequest]): What to generate.
            on_result (callable | None, default None): Called with ``(index, response)`` as each
                request finishes.

        Returns:
            list[Response]: ``text`` without the stop string, and ``n_generated_tokens``.

        Raises:
            InvalidArgumentError: a malformed request (see ``render``), or a prompt longer than the
                engine's ``max_model_len``.
        """
        rows = [
            Row(i, self.text.prompt_tokens(r, i), tuple(r.stop), r.max_new_tokens, r.draw)
            for i, r in enumerate(requests)
        ]
        self._check_lengths(rows)
        results: list[Response | None] = [None] * len(rows)
        with ProgressBar("generate", total=len(rows), enabled=self.progress) as bar:

            def finish(row: Row) -> None:
                row.done = True
                response = Response(text=row.text(self.text.decode), n_generated_tokens=row.n_generated)
                results[row.index] = response
                bar.advance(tokens=response.n_generated_tokens)
                if on_result is not None:
                    on_result(row.index, response)

            for row in rows:
                if row.max_new_tokens <= 0:
                    finish(row)
            ties, steps = self.near_ties, self.audited_steps
            live = {self._submit(row.prompt, self._sampling(row)): row for row in rows if not row.done}
            for rid, output in self._outputs(list(live)):
                self._consume(live[rid], output, rid, finish)
        if self.near_ties > ties:
            # The HF backend re-decides these canonically; inside vLLM's scheduler they stay as computed.
            logger.warning(
                "%d of %d generated steps were near-ties (top-2 log-probability gap < %g): their tokens may "
                "depend on the batch; results.json counts them under rvec.backend.near_ties",
                self.near_ties - ties,
                self.audited_steps - steps,
                self.tie_margin,
            )
        return complete(results)

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], *, on_result: ResultCallback | None = None
    ) -> list[Response]:
        """Summed log-probability of each continuation after its context (lm-eval semantics).

        Args:
            requests (Sequence[LoglikelihoodRequest]): Contexts and their continuations.
            on_result (callable | None, default None): As in :meth:`generate`.

        Returns:
            list[Response]: ``loglikelihoods`` and ``continuation_lengths`` (characters).

        Raises:
            InvalidArgumentError: a malformed request, or an empty continuation.
        """
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            temperature=0.0,
            max_tokens=1,
            prompt_logprobs=0,  # the prompt token's own log-probability only
            detokenize=False,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        with ProgressBar("loglikelihood", total=len(requests), enabled=self.progress) as bar:

            def done(index: int, response: Response) -> None:
                bar.advance()
                if on_result is not None:
                    on_result(index, response)

            sheet = ScoreSheet(requests, self.text, on_done=done)
            submitted: dict[str, tuple[Piece, list[int]]] = {}  # engine request id → (piece, tokens)
            for piece in sheet.pieces:
                whole = piece.context + piece.continuation
                if len(whole) - 1 > self.score_limit:
                    whole = whole[-(self.score_limit + 1) :]  # lm-eval truncates the context from the left
                    self.truncated += 1
                submitted[self._submit(whole, params)] = (piece, whole)
            for rid, output in self._outputs(list(submitted)):
                piece, whole = submitted[rid]
                logprobs = output.prompt_logprobs  # [None, {token: Logprob}, …] one per prompt token
                first = len(whole) - len(piece.continuation)
                sheet.record(piece, sum(logprobs[p][whole[p]].logprob for p in range(first, len(whole))))
        return sheet.responses()

    def next_token_logprobs(self, requests: Sequence[GenerateRequest | LoglikelihoodRequest]) -> np.ndarray:
        """Log-probabilities of the token after each rendered prompt, over the whole vocabulary (what a
        study's KL needs; :class:`~rvec.eval.types.NextTokenScoring`).

        One step per request asking vLLM for every token's log-probability (``logprobs=-1``; the
        engine is started with ``max_logprobs=-1`` to allow it), from the raw logits as the HF backend's
        ``log_softmax`` of the last position; a log-likelihood request's prompt is its context.

        Returns:
            np.ndarray: float32, shape (len(requests), vocabulary rows of the model), input order.

        Raises:
            InvalidArgumentError: a prompt renders to no tokens, or is longer than the engine allows.
        """
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        vocab = int(self.llm.llm_engine.vllm_config.model_config.get_vocab_size())
        out = np.full((len(requests), vocab), -np.inf, dtype=np.float32)
        params = SamplingParams(
            temperature=0.0,
            max_tokens=1,
            logprobs=-1,
            detokenize=False,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        rows = [self.text.prompt_tokens(r, i) for i, r in enumerate(requests)]  # type: ignore[arg-type]
        self._check_lengths([Row(i, tokens, (), 1, None) for i, tokens in enumerate(rows)])
        # vLLM hands each log-probability back as a Python object (~100 bytes): a few requests at a
        # time keep that under ~0.5 GB whatever the vocabulary (2²² entries: 27 rows of a 152k vocab).
        per_call = max(1, _LOGPROB_ENTRIES // vocab)
        for first in range(0, len(rows), per_call):
            chunk = range(first, min(len(rows), first + per_call))
            submitted = {self._submit(rows[i], params): i for i in chunk}
            for rid, output in self._outputs(list(submitted)):
                (step,) = output.outputs[0].logprobs  # {token id: Logprob} over the vocabulary
                ids = np.fromiter(step.keys(), dtype=np.int64, count=len(step))
                out[submitted[rid], ids] = np.fromiter(
                    (x.logprob for x in step.values()), np.float32, len(step)
                )
        return out

    # ---------------------------------------------------------------------------------- engine
    def _sampling(self, row: Row) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        budget = self.settings["max_model_len"] - len(row.prompt)
        if row.max_new_tokens > budget:
            logger.warning(
                "request %d: %d prompt tokens + %d new tokens exceed max_model_len %d; generation stops at the limit "
                "(raise --max-model-len to match the HF backend)",
                row.index,
                len(row.prompt),
                row.max_new_tokens,
                self.settings["max_model_len"],
            )
            self.truncated += 1
        drawn = (
            {"temperature": row.draw.temperature, "top_p": row.draw.top_p, "seed": row.draw.seed}
            if row.draw is not None
            else {"temperature": 0.0}
        )
        return SamplingParams(
            **drawn,
            max_tokens=max(1, min(row.max_new_tokens, budget)),
            stop_token_ids=sorted(self.eos_ids),
            logprobs=2 if self.tie_margin > 0 and row.draw is None else None,  # the greedy near-tie audit
            detokenize=False,  # rvec decodes and finds stop strings itself (Row)
            output_kind=RequestOutputKind.DELTA,
        )

    def _check_lengths(self, rows: list[Row]) -> None:
        """Refuse the call before anything reaches the engine when a prompt leaves no room for one
        token: vLLM would raise its own validation error mid-call, after other requests were sent."""
        limit = self.settings["max_model_len"]
        long = [row for row in rows if len(row.prompt) >= limit and row.max_new_tokens > 0]
        if long:
            raise InvalidArgumentError(
                f"request {long[0].index}: the prompt has {len(long[0].prompt)} tokens but the vLLM engine's "
                f"max_model_len is {limit} ({len(long)} such request(s)); raise --max-model-len or shorten the prompt"
            )

    def _submit(self, tokens: list[int], params: Any) -> str:
        from vllm.inputs import TokensPrompt

        # Outputs and aborts name a request by the id given here (vLLM appends a suffix internally).
        rid = f"rvec-{uuid.uuid4().hex}"
        try:
            self.llm.llm_engine.add_request(rid, TokensPrompt(prompt_token_ids=tokens), params)
            return rid
        except ValueError as err:
            raise InvalidArgumentError(
                f"vLLM refused a request of {len(tokens)} tokens ({err}); raise --max-model-len "
                f"(now {self.settings['max_model_len']}) or shorten the prompt"
            ) from err

    def _outputs(self, ids: list[str]) -> Any:
        """Step the engine until every request in ``ids`` is finished or aborted; yield ``(id, output)``
        for each output of those requests. Requests still running on an error are aborted."""
        engine = self.llm.llm_engine
        self._pending = set(ids)
        try:
            while self._pending and engine.has_unfinished_requests():
                for output in engine.step():
                    if output.request_id in self._pending:
                        if output.finished:
                            self._pending.discard(output.request_id)
                        yield output.request_id, output
        finally:
            if self._pending:
                engine.abort_request(sorted(self._pending))
            self._pending = set()

    def _consume(self, row: Row, output: Any, rid: str, finish: Callable[[Row], None]) -> None:
        """Feed new tokens to the row; abort the request when the row ends before the engine does."""
        if row.done:
            return
        completion = output.outputs[0]
        steps = completion.logprobs or [None] * len(completion.token_ids)
        for token, top in zip(completion.token_ids, steps, strict=True):
            self._audit(top)
            if row.push(int(token), eos_ids=self.eos_ids, decode=self.text.decode_raw):
                break
        if row.done:
            finish(row)
            if not output.finished:
                self._pending.discard(rid)
                self.llm.llm_engine.abort_request([rid])
        elif output.finished:  # the token budget or max_model_len
            finish(row)

    def _audit(self, top: Any) -> None:
        if top is None or self.tie_margin <= 0:
            return
        ranked = sorted(top.values(), key=lambda lp: lp.rank)[:2]
        self.audited_steps += 1
        if len(ranked) == 2 and ranked[0].logprob - ranked[1].logprob < self.tie_margin:
            self.near_ties += 1

    def _identity(self) -> str:
        """What besides the weights changes a response: engine settings, tokenizer, decoding rules."""
        template = getattr(self.tokenizer, "chat_template", None) or ""
        payload = {
            "backend": "vllm",
            "decode_version": [TEXT_RULES_VERSION, VLLM_DECODE_VERSION],
            "engine": {k: v for k, v in self.settings.items() if k not in _NOT_IN_IDENTITY},
            "tie_margin": self.tie_margin,
            "tokenizer": type(self.tokenizer).__name__,
            "vocab": len(self.tokenizer),
            "chat_template": hashlib.sha256(str(template).encode()).hexdigest(),
            "eos": sorted(self.eos_ids),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
