"""The recipe of a donor pair: everything that changes the weights ``rvec pair`` produces.

A :class:`PairRecipe` is parsed once at the edge (CLI flags or Python) and frozen. Its canonical
JSON is written to ``pair/recipe.json`` before any training, so ``--resume`` can refuse a folder
made by another recipe instead of silently mixing two runs.

Defaults are sized per device (:func:`default_recipe`): on a 2-core CPU the whole pair of
SmolLM2-135M takes about three hours (GRPO dominates: 45-90 s per step measured); on one GPU the
same recipe takes minutes, so the GPU profile trains longer on larger batches.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rvec.defaults import DEFAULT_SEED
from rvec.errors import InvalidArgumentError

__all__ = ["PROFILES", "PairRecipe", "default_recipe", "recipe_differences", "recipe_from_options"]

TrainTask = Literal["arith", "gsm8k"]


class PairRecipe(BaseModel):
    """How one SFT → GRPO pair is made from one initialisation.

    Args:
        init (str): The initialisation: folder, hub id[@rev], ``.gguf`` or ``pkg:`` source.
        task (str): ``arith`` (rvec's own generated task, offline) or ``gsm8k`` (its train split).
        seed (int): Seeds data order, LoRA init, sampling and the training items.
        sft_steps / grpo_steps (int): Optimizer steps per phase (``grpo_steps`` may be 0: SFT only).
        sft_lora_rank / grpo_lora_rank (int): LoRA rank per phase; 0 = full fine-tuning. A LoRA
            phase is merged when its folder is written.
        sft_lr / grpo_lr (float): Peak learning rates (LoRA wants ≈ 10x a full fine-tune's).
        sft_batch_size (int): Examples per SFT step.
        worked_fraction (float): Share of SFT examples that show their worked steps; the others
            state the answer alone (1 = every example worked).
        prompts_per_step (int): GRPO prompts per step; each gets ``num_generations`` completions.
        num_generations (int): Group size G of GRPO (≥ 2: the advantage is relative to the group).
        max_completion_length (int): Token budget of a GRPO completion.
        temperature (float): GRPO sampling temperature.
        beta (float): KL coefficient; 0 loads no reference model (TRL).
        format_reward (float): Weight of the format reward added to correctness (0 = off).
        levels (tuple[int, ...]): ``arith`` levels of the SFT data (GRPO's come from calibration).
        calibrate (bool): Before GRPO, sample the SFT model per level and weight GRPO's levels
            towards those it solves sometimes but not always (``arith`` only).
        calibration_prompts (int): Prompts per level for that calibration.
        eval_items (int): Held-out items scored greedily for init, SFT and RL at the end (0 = skip).
        save_steps (int): Checkpoint interval of each phase, for ``--resume``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    init: str
    task: TrainTask = "arith"
    seed: int = DEFAULT_SEED
    sft_steps: int = Field(150, ge=1)
    grpo_steps: int = Field(50, ge=0)
    sft_lora_rank: int = Field(16, ge=0)
    grpo_lora_rank: int = Field(8, ge=0)
    sft_lr: float = Field(3e-4, gt=0)
    grpo_lr: float = Field(5e-4, gt=0)
    sft_batch_size: int = Field(8, ge=1)
    worked_fraction: float = Field(0.5, gt=0, le=1)
    prompts_per_step: int = Field(4, ge=1)
    num_generations: int = Field(8, ge=2)
    max_completion_length: int = Field(64, ge=8)
    temperature: float = Field(1.0, gt=0)
    beta: float = Field(0.0, ge=0)
    format_reward: float = Field(0.0, ge=0)
    levels: tuple[int, ...] = (1, 2, 3, 4)
    calibrate: bool = True
    calibration_prompts: int = Field(16, ge=1)
    eval_items: int = Field(200, ge=0)
    save_steps: int = Field(25, ge=1)

    @model_validator(mode="after")
    def _check_task_options(self) -> PairRecipe:
        if self.task != "arith" and self.levels != (1, 2, 3, 4):
            raise ValueError("levels: only the arith task has levels")
        return self

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON form (what ``recipe.json`` holds)."""
        return self.model_dump(mode="json")

    @property
    def digest(self) -> str:
        """16 hex digits identifying the recipe (every field)."""
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


PROFILES: dict[str, dict[str, Any]] = {
    # The recipe of the shipped pair pairs/smollm2-135m-arith (docs/pair.md), the one that made RL
    # beat SFT on held-out items on the 2-core CPU: SFT ≈ 10 s/step, GRPO 45-90 s/step.
    "cpu": {},
    # One GPU generates a GRPO step's completions in about a second: more steps, larger groups.
    # Not yet run on a GPU: scaled from the CPU recipe.
    "gpu": {
        "sft_steps": 300,
        "grpo_steps": 200,
        "sft_batch_size": 16,
        "prompts_per_step": 8,
        "num_generations": 8,
        "calibration_prompts": 32,
        "eval_items": 1000,
        "save_steps": 50,
    },
}
"""Defaults per device kind; explicit options override them."""


def default_recipe(init: str, *, profile: str, **options: Any) -> PairRecipe:
    """A recipe with the ``profile``'s defaults and the given options (``None`` values ignored).

    Raises:
        InvalidArgumentError: unknown profile, or an option is out of range (one line per recipe).
    """
    if profile not in PROFILES:
        raise InvalidArgumentError(f"unknown profile {profile!r}; use one of: {', '.join(PROFILES)}")
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return PairRecipe(init=init, **{**PROFILES[profile], **given})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'recipe'}: {e['msg']}" for e in err.errors()
        )
        raise InvalidArgumentError(f"invalid pair recipe: {problems}") from None


def recipe_from_options(
    init: str,
    *,
    device: str,
    lora_rank: int | None = None,
    sft_lora_rank: int | None = None,
    grpo_lora_rank: int | None = None,
    levels: str | None = None,
    **options: Any,
) -> PairRecipe:
    """``rvec pair``'s options as a recipe: the device's profile (``gpu`` on CUDA, else ``cpu``),
    ``lora_rank`` standing for either phase's rank unless that is given, ``levels`` as ``1,2,3`` text.

    Raises:
        InvalidArgumentError: ``levels`` is not comma-separated integers, or an option is out of range.
    """
    parsed_levels = None
    if levels is not None:
        try:
            parsed_levels = tuple(int(p) for p in levels.split(",") if p.strip())
        except ValueError:
            raise InvalidArgumentError(
                f"--levels {levels!r}: expected comma-separated integers, e.g. 1,2,3"
            ) from None
    return default_recipe(
        init,
        profile="gpu" if device.startswith("cuda") else "cpu",
        sft_lora_rank=sft_lora_rank if sft_lora_rank is not None else lora_rank,
        grpo_lora_rank=grpo_lora_rank if grpo_lora_rank is not None else lora_rank,
        levels=parsed_levels,
        **options,
    )


def recipe_differences(saved: dict[str, Any], recipe: PairRecipe) -> list[str]:
    """``field: saved → new`` for every field where a saved recipe differs from ``recipe``."""
    new = recipe.to_json()
    keys = sorted(set(saved) | set(new))
    return [f"{k}: {saved.get(k)!r} → {new.get(k)!r}" for k in keys if saved.get(k) != new.get(k)]
