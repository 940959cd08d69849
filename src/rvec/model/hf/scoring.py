"""Log-likelihoods on the HF engine, lm-eval's semantics, two ways to compute them.

Every continuation is scored as lm-eval scores it (:meth:`rvec.model.text.TextRules.encode_pair`):
the sum of the log-probabilities of its tokens after the context's tokens.

* :meth:`Scorer.plain` — one row per (context, continuation) piece, ``context + continuation[:-1]``
  run whole, as lm-eval does. A multiple-choice item with four options runs its context four times.
* :meth:`Scorer.shared` (the default) — each request's context runs once, with a KV cache; the
  cache rows are then repeated once per continuation and every continuation of the batch is run
  from it in one forward. The context's last logits give each continuation's first token; the
  continuation forward gives the rest. The same sums, up to float rounding (the attention over the
  cached prefix is computed in another order), for about ``1/k`` of the work on ``k`` options.

The shared path never truncates: a request too long for the model's ``max_position_embeddings``
goes through :meth:`Scorer.plain`, which cuts the context from the left as lm-eval does.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from rvec.model.hf.decode import _new_dynamic_cache, left_pad
from rvec.model.text import Piece

__all__ = ["Scorer"]


class Scorer:
    """Scores :class:`~rvec.model.text.Piece` s with one causal LM.

    Args:
        model (torch.nn.Module): The causal LM in eval mode, on ``device``.
        device (torch.device): Where inputs go.
        pad_id (int): The padding token.
    """

    def __init__(self, model: torch.nn.Module, *, device: torch.device, pad_id: int) -> None:
        self.model = model
        self.device = device
        self.pad_id = pad_id
        self.max_len: int | None = getattr(model.config, "max_position_embeddings", None)
        # transformers 5 renamed `past_key_values` to `cache` (the old name warns until 5.40).
        self._cache_kwarg = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )

    def fits(self, group: list[Piece]) -> bool:
        """Whether a request's pieces can share their context: one context, and no piece longer
        than the model's positions (those are truncated by :meth:`plain`)."""
        context = group[0].context
        longest = max(len(p.continuation) for p in group)
        same = all(p.context == context for p in group)
        return same and (self.max_len is None or len(context) + longest - 1 <= self.max_len)

    @torch.inference_mode()
    def plain(self, batch: list[Piece]) -> list[float]:
        """Summed log-probabilities of each piece's continuation, every piece run whole.

        Left padding aligns every continuation at the right edge, so only the last
        ``max(len(cont))`` positions need vocabulary logits.
        """
        inputs, conts = [], []
        for piece in batch:
            cont = piece.continuation
            whole = piece.context + cont
            if self.max_len is not None and len(whole) - 1 > self.max_len:
                whole = whole[-(self.max_len + 1) :]  # lm-eval truncates the context from the left
            inputs.append(whole[:-1])
            conts.append(cont)
        ids, mask = left_pad(inputs, pad_id=self.pad_id, device=self.device)  # (B, T)
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

    @torch.inference_mode()
    def shared(self, groups: list[list[Piece]]) -> list[list[float]]:
        """Summed log-probabilities of every piece of every group, each group's context run once.

        Args:
            groups (list[list[Piece]]): The pieces of one request each (they share its context;
                see :meth:`fits`).

        Returns:
            list[list[float]]: Per group, per piece, in the given order.
        """
        from transformers import DynamicCache

        ids, mask = left_pad([g[0].context for g in groups], pad_id=self.pad_id, device=self.device)  # (G, T)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = _new_dynamic_cache(DynamicCache, self.model)
        logits = self._forward(ids, mask, positions, cache, keep=1)  # (G, 1, V)
        first = torch.log_softmax(logits[:, -1].float(), dim=-1)  # (G, V): each continuation's first token
        owner = [g for g, group in enumerate(groups) for _ in group]  # (N,) the group of each piece
        conts = [p.continuation for group in groups for p in group]
        values = [float(first[g, cont[0]]) for g, cont in zip(owner, conts, strict=True)]
        rest = max(len(c) for c in conts) - 1
        if rest > 0:
            rows = torch.tensor(owner, device=self.device)
            cache.batch_select_indices(rows)  # (N, …): the context's keys and values, once per piece
            tail = torch.full((len(conts), rest), self.pad_id, dtype=torch.long)  # (N, L) right padded
            tail_mask = torch.zeros((len(conts), rest), dtype=torch.long)
            for n, cont in enumerate(conts):
                tail[n, : len(cont) - 1] = torch.tensor(cont[:-1], dtype=torch.long)
                tail_mask[n, : len(cont) - 1] = 1
            full_mask = torch.cat([mask[rows], tail_mask.to(self.device)], dim=1)  # (N, T + L)
            tail_positions = positions[rows, -1:] + 1 + torch.arange(rest, device=self.device)  # (N, L)
            logits = self._forward(tail.to(self.device), full_mask, tail_positions, cache, keep=rest)
            logprobs = torch.log_softmax(logits.float(), dim=-1)  # (N, L, V)
            for n, cont in enumerate(conts):
                if len(cont) > 1:
                    target = torch.tensor(cont[1:], device=self.device)  # (c − 1,)
                    values[n] += float(logprobs[n, : len(cont) - 1].gather(-1, target[:, None]).sum())
        out, start = [], 0
        for group in groups:
            out.append(values[start : start + len(group)])
            start += len(group)
        return out

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any, *, keep: int
    ) -> torch.Tensor:
        return self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=keep,
            **{self._cache_kwarg: cache},
        ).logits
