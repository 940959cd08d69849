"""Choose what GRPO trains on: sample the SFT model per level and weight the levels where its groups
are mixed.

GRPO learns only from groups whose completions differ in reward (the advantage is relative to the
group): a prompt the SFT model always solves, or never does, gives a zero gradient. Measured on
SmolLM2-135M: GRPO started from the instruct model got reward 0 in every group. So before GRPO,
``calibration_prompts`` train prompts per level are sampled ``G`` times at the training temperature,
and each level gets the weight

    w = m · (1 − p)

where ``m`` is the fraction of its prompts whose ``G`` samples were mixed (some right, some wrong) and
``p`` its sampled accuracy: the share of GRPO steps that can learn anything, tilted toward what the
SFT model leaves unsolved. ``m`` is measured, not derived from ``p``: prompts of one level differ in
difficulty, so ``1 − p^G − (1 − p)^G`` overestimated it (a first SmolLM2 run predicted 70% mixed
groups and trained with 25–30%). Levels with ``w`` below 2% of the best are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rvec.pair.data import TrainingItem, TrainingSet

__all__ = ["Calibration", "calibrate_levels", "level_weight"]

logger = logging.getLogger(__name__)

_DROP_BELOW = 0.02
_BATCH_SEQUENCES = 64


@dataclass(frozen=True)
class Calibration:
    """Sampled accuracy and GRPO weight per level."""

    accuracy: dict[int, float]
    mixed: dict[int, float]
    weights: dict[int, float]
    samples_per_level: int

    def to_json(self) -> dict[str, object]:
        return {
            "accuracy": {str(k): v for k, v in self.accuracy.items()},
            "mixed_groups": {str(k): v for k, v in self.mixed.items()},
            "weights": {str(k): v for k, v in self.weights.items()},
            "samples_per_level": self.samples_per_level,
        }


def level_weight(accuracy: float, mixed: float) -> float:
    """The GRPO weight of a level (see the module docstring)."""
    return mixed * (1.0 - accuracy)


def calibrate_levels(
    model: torch.nn.Module,
    tokenizer: object,
    items: Sequence[TrainingItem],
    training: TrainingSet,
    *,
    group: int,
    temperature: float,
    max_new_tokens: int,
    seed: int,
) -> Calibration:
    """Sample every item ``group`` times and weight each level by :func:`level_weight`.

    Returns:
        Calibration: accuracy, share of mixed groups and normalised weights per level (a level kept with weight 0 is not
        trained on; if every level has weight 0 the levels are kept equally, and GRPO will learn
        little: the caller reports it).
    """
    torch.manual_seed(seed)
    correct: dict[int, list[float]] = {}
    mixed: dict[int, list[bool]] = {}
    per_batch = max(1, _BATCH_SEQUENCES // group)
    for start in range(0, len(items), per_batch):
        batch = items[start : start + per_batch]
        texts = _sample(
            model, tokenizer, batch, group=group, temperature=temperature, max_new_tokens=max_new_tokens
        )
        for k, item in enumerate(batch):
            level = item.level if item.level is not None else 0
            rewards = [training.reward(item.doc, t) for t in texts[k * group : (k + 1) * group]]
            correct.setdefault(level, []).extend(rewards)
            mixed.setdefault(level, []).append(len(set(rewards)) > 1)
    accuracy = {lv: sum(v) / len(v) for lv, v in sorted(correct.items())}
    mixed_share = {lv: sum(v) / len(v) for lv, v in sorted(mixed.items())}
    raw = {lv: level_weight(accuracy[lv], mixed_share[lv]) for lv in accuracy}
    best = max(raw.values())
    if best <= 0:
        logger.warning("no level has mixed groups (sampled accuracy %s): GRPO will learn little", accuracy)
        weights = {lv: 1.0 / len(raw) for lv in raw}
    else:
        kept = {lv: w for lv, w in raw.items() if w >= _DROP_BELOW * best}
        total = sum(kept.values())
        weights = {lv: kept.get(lv, 0.0) / total for lv in raw}
    return Calibration(accuracy, mixed_share, weights, len(items) // max(1, len(accuracy)) * group)


@torch.no_grad()
def _sample(
    model: torch.nn.Module,
    tokenizer: object,
    items: Sequence[TrainingItem],
    *,
    group: int,
    temperature: float,
    max_new_tokens: int,
) -> list[str]:
    prompts = [
        tokenizer.apply_chat_template(list(it.prompt), add_generation_prompt=True, tokenize=False)  # type: ignore[attr-defined]
        for it in items
    ]
    tokenizer.padding_side = "left"  # type: ignore[attr-defined]
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)  # type: ignore[operator]
    encoded = {k: v.to(model.device) for k, v in encoded.items()}
    out = model.generate(
        **encoded,
        do_sample=True,
        temperature=temperature,
        top_p=1.0,
        top_k=0,
        max_new_tokens=max_new_tokens,
        num_return_sequences=group,
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
    )
    new = out[:, encoded["input_ids"].shape[1] :]
    return tokenizer.batch_decode(new, skip_special_tokens=True)  # type: ignore[attr-defined]
