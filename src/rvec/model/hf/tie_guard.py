"""Greedy choices independent of the batch a row happens to be in (the HF backend's tie guard).

Why the guard exists: in float32 on CPU the logits of one row differ in the last bits with the
batch around it, because the GEMM kernel MKL/oneDNN picks depends on the number of rows (on this
machine rows come out identical for M = 1, for 2 ≤ M ≤ 15 and for M ≥ 16, but not across those
groups), and left padding shifts where keys sit in the attention reductions. Measured on
SmolLM2-135M: |Δlogit| ≈ 5e-5 between batch sizes 1 and 4. Greedy decoding only flips when the top
two logits are closer than that, which happens (about once in 10⁴–10⁵ tokens) and then changes
everything after it. The guard re-decides every step whose top-two margin is below ``margin`` with
a *canonical* computation (the row alone, unpadded, no cache), which depends on the token prefix
only. Two runs with different batches agree whenever their noise is below ``margin``: steps above
the margin in both pick the same clear winner; a step below it in either picks the canonical token,
which is the same clear winner when the other run saw a margin above ``margin − 2·noise``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rvec.model.text import Row

__all__ = ["TieGuard"]


class TieGuard:
    """Pick greedy tokens so that near-ties are decided independently of the batch.

    Args:
        model (torch.nn.Module): The causal LM (for the canonical recomputation).
        margin (float): Top-two logit gap below which a step is recomputed; ``0`` turns it off.
        device (torch.device): Where the model runs.
    """

    def __init__(self, model: torch.nn.Module, *, margin: float, device: torch.device) -> None:
        self.model = model
        self.margin = margin
        self.device = device
        self.recomputed = 0
        self.overridden = 0
        """Recomputed steps whose canonical token differed from the batch's argmax (flips avoided)."""

    @torch.inference_mode()
    def choose(self, logits: torch.Tensor, rows: Sequence[Row]) -> list[int]:
        """Greedy tokens for ``rows`` from their next-token ``logits`` (B, V)."""
        choice = logits.argmax(dim=-1)  # (B,) first index among exact ties, as torch documents
        if self.margin > 0:
            top2 = logits.topk(2, dim=-1).values  # (B, 2)
            close = ((top2[:, 0] - top2[:, 1]) < self.margin).nonzero().flatten().tolist()
            for j in close:
                token = self.canonical(rows[j].prompt + rows[j].tokens)
                self.overridden += int(token != int(choice[j]))
                choice[j] = token
        return choice.tolist()

    @torch.inference_mode()
    def canonical(self, sequence: list[int]) -> int:
        """argmax of the next-token logits of ``sequence`` computed alone: no batch, no padding,
        no cache, so the result depends on the tokens only."""
        self.recomputed += 1
        ids = torch.tensor([sequence], dtype=torch.long, device=self.device)  # (1, T)
        logits = self.model(input_ids=ids, use_cache=False, logits_to_keep=1).logits  # (1, 1, V)
        return int(logits[0, -1].float().argmax())
