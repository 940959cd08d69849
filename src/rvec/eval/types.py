"""The contracts between tasks, backends, the eval runner and the study runner.

Data flows: a :class:`Task` turns dataset rows into :class:`Doc`s, a doc plus a preset into a
:class:`GenerateRequest` or :class:`LoglikelihoodRequest`; a backend (:class:`LanguageModel`) answers
requests with :class:`Response`s; the task scores a response into a :class:`Scored`; the runner
collects :class:`SampleRecord`s into an :class:`EvalResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Message = dict[str, str]
"""One chat turn: ``{"role": "system"|"user"|"assistant", "content": str}``."""


@dataclass(frozen=True)
class Doc:
    """One benchmark item.

    ``doc_id`` is stable across runs (the row index in the source file, or the dataset's own id), so
    the same item can be paired across models, conditions and perturbations.
    """

    task: str
    doc_id: str
    fields: Mapping[str, Any]


TemplateArgs = tuple[tuple[str, Any], ...]
"""Extra keyword arguments of the chat template (``(("enable_thinking", True),)``), sorted by name."""


@dataclass(frozen=True)
class Draw:
    """How a sampled response is drawn (:mod:`rvec.eval.decoding`): softmax ``temperature`` (> 0),
    nucleus ``top_p`` in (0, 1] and the request's own ``seed``, which alone decides its random
    stream (never the batch)."""

    temperature: float
    top_p: float
    seed: int


@dataclass(frozen=True)
class GenerateRequest:
    """One generation. Exactly one of ``messages`` (chat template applied by the backend, with a
    generation prompt) or ``prompt`` (raw text, no template) is set. Greedy unless ``draw`` is set;
    ``template_args`` go to the chat template (``enable_thinking``)."""

    messages: tuple[Message, ...] | None
    prompt: str | None
    stop: tuple[str, ...]
    max_new_tokens: int
    draw: Draw | None = None
    template_args: TemplateArgs = ()


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score ``continuations`` after a context. Context is ``messages`` (rendered with the chat
    template and a generation prompt) or raw ``prompt``; each continuation is appended verbatim."""

    messages: tuple[Message, ...] | None
    prompt: str | None
    continuations: tuple[str, ...]
    template_args: TemplateArgs = ()


Request = GenerateRequest | LoglikelihoodRequest


@dataclass(frozen=True)
class Response:
    """A backend's answer: ``text`` for generation (stop string excluded), ``loglikelihoods`` (one
    summed log-probability per continuation) and ``continuation_lengths`` (characters, for
    lm-eval's ``acc_norm``) for scoring. ``n_generated_tokens`` feeds tokens/s."""

    text: str | None = None
    loglikelihoods: tuple[float, ...] | None = None
    continuation_lengths: tuple[int, ...] | None = None
    n_generated_tokens: int = 0


@dataclass(frozen=True)
class Scored:
    """A task's verdict on one response. ``metrics`` maps lm-eval style keys (``"exact_match,strict-match"``,
    ``"acc,none"``) to 0/1 (or a float); ``primary`` names the metric used for statistics."""

    metrics: Mapping[str, float]
    primary: str
    extracted: str | None
    gold: str


@dataclass(frozen=True)
class SampleRecord:
    """One line of ``samples/<task>.jsonl``; ``correct`` is the primary metric as a bool."""

    task: str
    doc_id: str
    prompt: str
    response: str | None
    extracted: str | None
    gold: str
    correct: bool
    metrics: Mapping[str, float]
    perturbation: str | None = None
    primary: str | None = None
    """The metric ``correct`` reflects (tasks may differ per item type, e.g. GSM-Plus critical thinking)."""
    n_generated_tokens: int = 0
    """Tokens the model generated for this response (EOS included; 0 for log-likelihoods)."""
    sample: int | None = None
    """Which of the item's samples this is (sampled runs, :mod:`rvec.eval.decoding`); ``None`` greedy."""
    think: Mapping[str, Any] | None = None
    """The think-block record of a thinking run (:func:`rvec.eval.thinking.think_record`)."""


@dataclass
class EvalResult:
    """Everything one ``evaluate`` call produced.

    ``scores[task_key][metric]`` is the mean over ``samples[task_key]``. A ``task_key`` is the task
    name, plus ``+perturbation`` for a perturbed copy (``"gsm8k+typo:0.05"``) whose doc_ids equal the
    clean ones, so clean and perturbed scores pair item by item.
    """

    scores: dict[str, dict[str, float]]
    samples: dict[str, list[SampleRecord]]
    preset: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    generated_tokens: int = 0
    disagreements: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per task key whose preset compares two verdicts: where they differ (:mod:`rvec.eval.verdicts`)."""


ResultCallback = Callable[[int, Response], None]
"""``on_result(index, response)``: called once per request as soon as it is finished."""


@runtime_checkable
class LanguageModel(Protocol):
    """A backend's evaluation object: answers requests with the weights of its model state
    (:meth:`rvec.model.state.ModelState.language_model`). Everything the eval runner and the study
    read from a backend is declared here."""

    name: str
    """Backend and dtype as results show them (``"hf/float32"``)."""
    fingerprint: str
    """Identifies the current weights (vectors applied in memory included); caches key on it."""
    identity: str
    """Hash of everything besides the weights that changes a response (dtype, tokenizer, chat
    template, decoding rules, engine options); part of every response cache key."""
    batch_size: int | None
    """Requests per forward batch, or ``None`` where the engine schedules its own; recorded."""

    def describe(self) -> dict[str, Any]:
        """Settings and counters for ``results.json`` (its ``rvec.backend``)."""
        ...

    def generate(
        self, requests: Sequence[GenerateRequest], *, on_result: ResultCallback | None = None
    ) -> list[Response]:
        """Generation (greedy, or drawn as each request's ``draw`` says), results in input order;
        ``on_result`` streams each as it finishes."""
        ...

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], *, on_result: ResultCallback | None = None
    ) -> list[Response]:
        """Summed log-probability of each continuation (lm-eval semantics), streamed likewise."""
        ...


@runtime_checkable
class TokenCounting(Protocol):
    """A backend that can count tokens with its model's tokenizer. Optional: with it, thinking runs
    record the tokens inside and outside each think block (:mod:`rvec.eval.thinking`) and check the
    think tag before generating; without it, only characters are counted."""

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the model's tokenizer splits it, special tokens not added."""
        ...

    def round_trips(self, text: str) -> bool:
        """Whether ``text`` encodes to known tokens (none unknown) that decode, as responses are
        decoded (special tokens skipped), back to exactly ``text``: a think tag that does not
        could never be found in a response."""
        ...


@runtime_checkable
class NextTokenScoring(Protocol):
    """A backend that can give the whole next-token distribution at the end of a prompt. Optional:
    with it, a study measures KL(p_target ‖ p_variant) per cell (a forgetting proxy without labels,
    :mod:`rvec.study.kl`). The HF and vLLM backends implement it (vLLM: every token's log-probability
    of one step, ``logprobs=-1``)."""

    def next_token_logprobs(self, requests: Sequence[GenerateRequest | LoglikelihoodRequest]) -> Any:
        """Log-probabilities over the model's whole vocabulary of the token after each request's
        rendered prompt (a log-likelihood request's context): a float32 ``numpy`` array of shape
        (len(requests), vocabulary rows), in input order."""
        ...


OutputType = Literal["generate", "loglikelihood"]
