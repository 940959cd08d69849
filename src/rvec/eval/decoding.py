"""How responses are drawn: greedy (every preset's default), or ``n`` seeded samples per item.

``--samples n --temperature T --top-p P`` (a study's ``samples``, ``temperature``, ``top_p``) draws
``n`` responses per item (:class:`Sampling`, a preset's ``sampling``). Each is an ordinary
:class:`~rvec.eval.types.GenerateRequest` carrying a :class:`~rvec.eval.types.Draw`: the
temperature, the top-p and a seed of its own::

    seed(item, j) = first 63 bits of sha256("rvec-sample|<run seed>|<request digest>|<j>")

where the request digest (:func:`rvec.eval.cache.request_digest`) covers everything the item asks
(rendered turns or prompt, stops, budget, chat-template switches). Sample ``j`` of an item therefore
depends only on the run's ``--seed``, the item and ``j`` — not on the batch it lands in, on the
other tasks of the run or on the order of the items. Backends honour the per-request seed: the HF
engine draws from a ``torch.Generator`` seeded with it (:mod:`rvec.model.hf.sampler`), vLLM through
``SamplingParams(seed=...)``. The two engines use different random streams, so their samples
differ from each other; each is reproducible on its own.

Example:
    >>> Sampling(samples=8, temperature=0.6, top_p=0.95).label()
    'samples=8,temperature=0.6,top_p=0.95'
    >>> sample_seed(1234, "ab" * 32, 0) == sample_seed(1234, "ab" * 32, 0)
    True
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace

from rvec.errors import InvalidArgumentError
from rvec.eval.cache import request_digest
from rvec.eval.types import Draw, GenerateRequest

__all__ = ["Sampling", "draw_requests", "sample_seed", "sampling_problems"]


@dataclass(frozen=True)
class Sampling:
    """Sampled decoding of a run: ``samples`` responses per item at ``temperature`` and ``top_p``.

    A plain frozen dataclass (pydantic validates it inside :class:`~rvec.eval.presets.Preset`), so
    that building one directly raises rvec's one-line error.

    Args:
        samples (int, default 1): Responses drawn per item (>= 1).
        temperature (float, default 0.0): Softmax temperature; 0 is greedy (then ``samples`` must
            be 1 and ``top_p`` 1).
        top_p (float, default 1.0): Nucleus mass in (0, 1]; 1 keeps the whole vocabulary.

    Raises:
        InvalidArgumentError: any of :func:`sampling_problems`, joined in one line.
    """

    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        problems = sampling_problems(self.samples, self.temperature, self.top_p)
        if problems:
            raise InvalidArgumentError("; ".join(problems))

    @property
    def greedy(self) -> bool:
        """Temperature 0: one deterministic response per item."""
        return self.temperature == 0

    def label(self) -> str:
        """``samples=8,temperature=0.6,top_p=0.95``: how preset names and cache keys spell it."""
        return f"samples={self.samples},temperature={self.temperature:g},top_p={self.top_p:g}"


def sampling_problems(samples: int, temperature: float, top_p: float) -> list[str]:
    """Every problem of a sampling setting, one sentence each (empty when it is valid).

    Args:
        samples (int): Responses per item.
        temperature (float): Softmax temperature.
        top_p (float): Nucleus mass.

    Returns:
        list[str]: Messages naming the value found, what is expected and the fix.
    """
    problems = []
    if samples < 1:
        problems.append(f"samples {samples}: draw at least 1 sample per item")
    if not math.isfinite(temperature) or temperature < 0:
        problems.append(f"temperature {temperature}: must be a number >= 0 (0 is greedy decoding)")
    elif temperature == 0 and samples > 1:
        problems.append(
            f"temperature 0 with {samples} samples: greedy decoding gives the same response every time; "
            "set a temperature > 0 (e.g. 0.6) or draw 1 sample"
        )
    if not (math.isfinite(top_p) and 0 < top_p <= 1):
        problems.append(f"top_p {top_p}: must lie in (0, 1], e.g. 0.95 (1 keeps every token)")
    elif temperature == 0 and top_p != 1:
        problems.append(
            f"top_p {top_p:g} with temperature 0: greedy decoding ignores top-p; set a temperature > 0 "
            "or leave top_p at 1"
        )
    return problems


def sample_seed(seed: int, digest: str, index: int) -> int:
    """The seed of sample ``index`` of the item whose request has ``digest``, under run ``seed``.

    Returns:
        int: In ``[0, 2**63)``, so ``torch.Generator.manual_seed`` and vLLM both take it.
    """
    text = f"rvec-sample|{seed}|{digest}|{index}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def draw_requests(request: GenerateRequest, sampling: Sampling | None, *, seed: int) -> list[GenerateRequest]:
    """The requests one item is answered with: itself when greedy, else one per sample with its draw.

    Args:
        request (GenerateRequest): The item's request (without a draw).
        sampling (Sampling | None): The run's sampling; ``None`` or greedy keeps the request as is.
        seed (int): The run's seed (``--seed``).

    Returns:
        list[GenerateRequest]: ``[request]``, or ``sampling.samples`` requests, sample ``j`` seeded by
        :func:`sample_seed` of ``(seed, request_digest(request), j)``.
    """
    if sampling is None or sampling.greedy:
        return [request]
    digest = request_digest(request)
    return [
        replace(request, draw=Draw(sampling.temperature, sampling.top_p, sample_seed(seed, digest, j)))
        for j in range(sampling.samples)
    ]
