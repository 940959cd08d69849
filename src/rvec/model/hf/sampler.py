"""Drawn tokens for the HF engine: temperature and top-p, from one seeded random stream per request.

Why hand-written: ``model.generate(do_sample=True)`` draws every row from torch's one global
generator, so a row's sample would depend on the rows beside it and on their order. Here each
request has its own ``torch.Generator`` (CPU), seeded with its draw's seed
(:mod:`rvec.eval.decoding`) and advanced by exactly one uniform number per generated token, so the
token stream of a request depends only on its seed and on its own next-token distributions.

One step of one row, from its next-token logits ``z`` (V,):

1. ``p = softmax(z / T)`` in float64;
2. top-p (nucleus, Holtzman et al. 2019, as vLLM and transformers' ``TopPLogitsWarper``): sort ``p``
   descending (stable, so equal probabilities keep token order), keep the shortest prefix whose mass
   reaches ``top_p`` — a token is kept when the mass *before* it is below ``top_p``, so the first
   always is;
3. inverse CDF: ``u ~ U[0, 1)`` from the row's generator, and the token is the first kept one whose
   cumulative mass exceeds ``u × (kept mass)``.

The greedy tie guard (:mod:`rvec.model.hf.tie_guard`) does not apply to sampled rows: their token is
not an argmax. In float32 the batch changes a row's logits by about 5e-5 (see the tie guard), which
moves the cumulative masses by about that much; a sampled token changes with the batch only when
``u`` falls that close to a boundary between two tokens' masses — about once in 10⁴ steps or fewer,
against the greedy flip the guard exists for. Texts of a seeded run are checked equal across batch
sizes in float32 by a test; in bfloat16 they can differ, as greedy texts can.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rvec.eval.types import Draw
from rvec.model.text import Row

__all__ = ["Sampler", "sample_token"]


class Sampler:
    """Draws the next token of sampled rows, one generator per row (made from its draw's seed)."""

    def __init__(self) -> None:
        self._generators: dict[int, torch.Generator] = {}

    def choose(self, logits: torch.Tensor, rows: Sequence[Row]) -> list[int]:
        """The next token of each row (every row has a draw) from its logits (B, V)."""
        return [sample_token(logits[j], row.draw, self._generator(row)) for j, row in enumerate(rows)]  # type: ignore[arg-type]

    def forget(self, row: Row) -> None:
        """Drop a finished row's generator."""
        self._generators.pop(row.index, None)

    def _generator(self, row: Row) -> torch.Generator:
        generator = self._generators.get(row.index)
        if generator is None:
            generator = torch.Generator(device="cpu")
            generator.manual_seed(row.draw.seed)  # type: ignore[union-attr]
            self._generators[row.index] = generator
        return generator


def sample_token(logits: torch.Tensor, draw: Draw, generator: torch.Generator) -> int:
    """One token drawn from next-token ``logits`` (V,) at ``draw.temperature`` within ``draw.top_p``.

    Args:
        logits (torch.Tensor): (V,) next-token logits of one row, any float dtype, any device.
        draw (Draw): Temperature (> 0) and top-p.
        generator (torch.Generator): The row's CPU generator; advanced by one uniform draw.

    Returns:
        int: The token id.
    """
    u = float(torch.rand((), generator=generator, dtype=torch.float64))  # one number per step
    probs = torch.softmax(logits.double() / draw.temperature, dim=-1)  # (V,)
    sorted_p, order = torch.sort(probs, descending=True, stable=True)  # (V,), (V,)
    before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass of the tokens ranked above each
    kept = sorted_p[before < draw.top_p]  # (K,), K >= 1: a prefix of the ranking
    cdf = torch.cumsum(kept, dim=-1)  # (K,)
    position = int(
        torch.searchsorted(
            cdf, torch.tensor([u * float(cdf[-1])], dtype=cdf.dtype, device=cdf.device), right=True
        )
    )
    return int(order[min(position, len(kept) - 1)])
