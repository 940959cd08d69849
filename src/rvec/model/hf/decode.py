"""Batched greedy decoding of a ``transformers`` causal LM, row by row to each row's own stop.

Rows are left padded (attention mask and position ids computed from the mask, so padding changes
no position) and decoded greedily until each hits EOS, one of its own stop strings, or its token
budget (:class:`~rvec.model.text.Row` decides). Two loops implement this:

* :meth:`Decoder.run_loop` (default on CPU): a hand-written decode loop over a dynamic KV cache that
  drops finished rows from the batch, so a batch costs what its unfinished rows cost;
* :meth:`Decoder.run_generate` (default on CUDA): ``model.generate`` with a static KV cache
  (transformers compiles the decode step) and a per-row stopping criterion; finished rows ride along
  padded.

Both choose tokens through :meth:`Decoder.choose`: greedy rows through
:class:`~rvec.model.hf.tie_guard.TieGuard`, so a request's text does not depend on the batch it was
in; rows with a draw (sampled requests) through :class:`~rvec.model.hf.sampler.Sampler`, from their
own seeded generator (inside ``model.generate`` the drawn token is forced, as the guard's is).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from rvec.model.hf.sampler import Sampler
from rvec.model.hf.tie_guard import TieGuard
from rvec.model.text import Row

__all__ = ["Decoder", "batches", "left_pad"]


class Decoder:
    """The two decoding loops over one model.

    Args:
        model (torch.nn.Module): The causal LM, in eval mode, on ``device``.
        device (torch.device): Where inputs go.
        guard (TieGuard): Chooses each step's token.
        eos_ids (frozenset[int]): Tokens that end a row.
        pad_id (int): The padding token.
        decode_raw (callable): Tokens → text with special tokens kept (for stop strings).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: torch.device,
        guard: TieGuard,
        eos_ids: frozenset[int],
        pad_id: int,
        decode_raw: Callable[[list[int]], str],
    ) -> None:
        self.model = model
        self.device = device
        self.guard = guard
        self.eos_ids = eos_ids
        self.pad_id = pad_id
        self.decode_raw = decode_raw
        self.sampler = Sampler()
        # transformers 5 renamed `past_key_values` to `cache` (the old name warns until 5.40).
        self._cache_kwarg = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )

    def reset(self) -> None:
        """Forget the random streams of an earlier call (rows are numbered per call)."""
        self.sampler = Sampler()

    def push(self, row: Row, token: int) -> bool:
        """Feed ``token`` to ``row``; True when the row is finished."""
        done = row.push(token, eos_ids=self.eos_ids, decode=self.decode_raw)
        if done:
            self.sampler.forget(row)
        return done

    def choose(self, logits: torch.Tensor, rows: list[Row]) -> list[int]:
        """The next token of each row from its logits (B, V): greedy rows through the tie guard,
        rows with a draw from their own generator."""
        drawn = [j for j, row in enumerate(rows) if row.draw is not None]
        if not drawn:
            return self.guard.choose(logits, rows)
        greedy = [j for j, row in enumerate(rows) if row.draw is None]
        tokens = [0] * len(rows)
        for part, chooser in ((greedy, self.guard.choose), (drawn, self.sampler.choose)):
            if part:
                chosen = chooser(logits[part], [rows[j] for j in part])
                for j, token in zip(part, chosen, strict=True):
                    tokens[j] = token
        return tokens

    @torch.inference_mode()
    def run_loop(self, rows: list[Row], finish: Callable[[Row], None]) -> None:
        """Decode with a dynamic KV cache, dropping finished rows from the batch as they finish."""
        from transformers import DynamicCache

        ids, mask = left_pad([r.prompt for r in rows], pad_id=self.pad_id, device=self.device)  # (B, T)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): padding shifts no position
        cache = _new_dynamic_cache(DynamicCache, self.model)
        logits = self._forward(ids, mask, positions, cache)  # (B, V)
        live = list(rows)
        while True:
            tokens = self.choose(logits, live)
            keep = []
            for j, (row, token) in enumerate(zip(live, tokens, strict=True)):
                if self.push(row, token):
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
    def run_generate(self, rows: list[Row], finish: Callable[[Row], None]) -> None:
        """Decode with ``model.generate``; on CUDA with a static cache (compiled decode step)."""
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        ids, mask = left_pad([r.prompt for r in rows], pad_id=self.pad_id, device=self.device)
        config = GenerationConfig(
            # greedy over forced scores: sampled rows get their drawn token forced (_ChoiceProcessor);
            # the model's own sampling or penalty defaults never apply
            do_sample=False,
            max_new_tokens=max(r.max_new_tokens for r in rows),
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos_ids),
            cache_implementation="static" if self.device.type == "cuda" else None,
        )
        # generate() fills every field we leave unset from model.generation_config (a repetition
        # penalty, suppressed tokens…); a neutral one in its place keeps this loop pure greedy, as
        # the other loop is.
        saved, self.model.generation_config = self.model.generation_config, GenerationConfig()
        try:
            self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                generation_config=config,
                logits_processor=LogitsProcessorList([_ChoiceProcessor(rows, self)]),
                stopping_criteria=StoppingCriteriaList([_RowCriteria(rows, self, finish)]),
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


class _RowCriteria:
    """Per-row stopping for ``model.generate``: a row is done at EOS, a stop string or its budget."""

    def __init__(self, rows: list[Row], decoder: Decoder, finish: Callable[[Row], None]) -> None:
        self.rows = rows
        self.decoder = decoder
        self.finish = finish

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        last = input_ids[:, -1].tolist()
        for row, token in zip(self.rows, last, strict=True):
            if not row.done and self.decoder.push(row, token):
                self.finish(row)
        return torch.tensor([r.done for r in self.rows], dtype=torch.bool, device=input_ids.device)


class _ChoiceProcessor:
    """Runs :meth:`Decoder.choose` inside ``model.generate``: near-tie greedy rows get their canonical
    token forced, sampled rows their drawn one."""

    def __init__(self, rows: list[Row], decoder: Decoder) -> None:
        self.rows = rows
        self.decoder = decoder

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        live = [j for j, row in enumerate(self.rows) if not row.done]
        guarded = self.decoder.guard.margin > 0
        if not live or not (guarded or any(self.rows[j].draw is not None for j in live)):
            return scores
        chosen = self.decoder.choose(scores[live].float(), [self.rows[j] for j in live])
        forced = scores.clone()
        rows = torch.tensor(live, device=scores.device)
        forced[rows] = float("-inf")
        forced[rows, torch.tensor(chosen, device=scores.device)] = 0.0
        return forced


def left_pad(
    sequences: list[list[int]], *, pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` (B, T) of ``sequences`` padded on the left with ``pad_id``."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[i, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def batches(items: list, *, key: Callable[[Any], int], size: int) -> list[list]:
    """Items sorted by ``key`` (longest first, stable), cut into batches of ``size``."""
    order = sorted(items, key=key, reverse=True)
    return [order[i : i + size] for i in range(0, len(order), size)]


def _new_dynamic_cache(cls: Any, model: torch.nn.Module) -> Any:
    # With the config, the cache knows sliding-window layers (Qwen2, Gemma); older versions lack it.
    try:
        return cls(config=model.config)
    except TypeError:
        return cls()
