"""The two training phases of ``rvec pair``, each one TRL trainer: SFT, then GRPO from the SFT result.

Facts from TRL 1.16's source, checked on a 2-core CPU, that shape the arguments below:

* on CPU, ``use_cpu=True, bf16=False, gradient_checkpointing=False`` (TRL's defaults raise or slow
  down there);
* SFT rows are conversational prompt–completion pairs, which gives completion-only loss;
  ``assistant_only_loss`` fails on chat templates without generation markers (SmolLM2's);
* GRPO's ``per_device_train_batch_size`` counts completions and must be divisible by
  ``num_generations``; ``beta=0`` loads no reference model.

A LoRA phase is merged before its folder is written, so ``sft/`` and ``rl/`` are ordinary
checkpoints of the initialisation; the merged delta's factors are returned so the vector can be
stored exactly in low-rank form. Trainer checkpoints (weights or adapter, optimizer, scheduler and
RNG states) go to ``work/<phase>/checkpoint-N`` every ``save_steps``: ``--resume`` continues from
the last one and, on the same machine, ends with the weights an uninterrupted run gives.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvec.pair.data import TrainingItem, TrainingSet
from rvec.pair.recipe import PairRecipe

__all__ = [
    "LORA_ALPHA_PER_RANK",
    "Factors",
    "latest_checkpoint",
    "load_model",
    "lora_factors",
    "run_grpo",
    "run_sft",
]

logger = logging.getLogger(__name__)

LORA_ALPHA_PER_RANK = 2
"""``lora_alpha = 2·r`` in every LoRA phase (PEFT's scaling ``alpha / r`` is then 2)."""

Factors = dict[str, tuple[np.ndarray, np.ndarray]]
"""Parameter name → ``(A (r, in), B (out, r))`` float32, the scaling folded into B: ΔW = B @ A."""

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(folder: Path) -> Path | None:
    """The trainer checkpoint with the highest step under ``folder`` that finished saving."""
    if not folder.is_dir():
        return None
    done = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and (p / "trainer_state.json").is_file()
    ]
    return max(done)[1] if done else None


def run_sft(
    model_dir: Path,
    items: Sequence[TrainingItem],
    recipe: PairRecipe,
    training: TrainingSet,
    *,
    work: Path,
    device: str,
    callbacks: Sequence[Any] = (),
) -> tuple[torch.nn.Module, Factors | None]:
    """Supervised fine-tuning of ``model_dir`` on the gold solutions of ``items`` (``training`` is
    unused: the signature matches :func:`run_grpo`).

    Returns:
        tuple: ``(merged model, LoRA factors or None for full fine-tuning)``.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = [
        {"prompt": list(it.prompt), "completion": [{"role": "assistant", "content": it.solution}]}
        for it in items
    ]
    model, tokenizer = load_model(model_dir)
    args = SFTConfig(
        output_dir=str(work),
        max_steps=recipe.sft_steps,
        per_device_train_batch_size=recipe.sft_batch_size,
        learning_rate=recipe.sft_lr,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, recipe.sft_steps // 20),
        max_length=1024,
        **_common_args(recipe, device),
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=_lora(recipe.sft_lora_rank),
        callbacks=list(callbacks),
    )
    _train(trainer, work)
    return _finish(trainer.model, recipe.sft_lora_rank)


def run_grpo(
    model_dir: Path,
    items: Sequence[TrainingItem],
    recipe: PairRecipe,
    training: TrainingSet,
    *,
    work: Path,
    device: str,
    callbacks: Sequence[Any] = (),
) -> tuple[torch.nn.Module, Factors | None]:
    """GRPO of ``model_dir`` (the SFT result) on ``items``, rewarded by the task's own scorer.

    Returns:
        tuple: ``(merged model, LoRA factors or None for full fine-tuning)``.
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    docs = {it.doc.doc_id: it.doc for it in items}
    rows = [{"prompt": list(it.prompt), "doc_id": it.doc.doc_id} for it in items]

    def correctness(
        completions: list[list[dict[str, str]]], doc_id: list[str], log_metric: Any = None, **_: Any
    ) -> list[float]:
        rewards = [
            training.reward(docs[d], c[-1]["content"]) for c, d in zip(completions, doc_id, strict=True)
        ]
        by_level: dict[int, list[float]] = {}
        for d, r in zip(doc_id, rewards, strict=True):
            level = docs[d].fields.get("level")
            if level is not None:
                by_level.setdefault(int(level), []).append(r)
        for level, values in by_level.items():  # which levels GRPO is learning on, step by step
            if log_metric is not None:
                log_metric(f"accuracy/level{level}", sum(values) / len(values))
        return rewards

    def answer_format(completions: list[list[dict[str, str]]], **_: Any) -> list[float]:
        return [float(training.format_ok(c[-1]["content"])) for c in completions]

    rewards: list[Callable[..., list[float]]] = [correctness]
    weights = [1.0]
    if recipe.format_reward > 0:
        rewards.append(answer_format)
        weights.append(recipe.format_reward)
    model, tokenizer = load_model(model_dir)
    args = GRPOConfig(
        output_dir=str(work),
        max_steps=recipe.grpo_steps,
        per_device_train_batch_size=recipe.prompts_per_step * recipe.num_generations,
        num_generations=recipe.num_generations,
        max_completion_length=recipe.max_completion_length,
        temperature=recipe.temperature,
        beta=recipe.beta,
        learning_rate=recipe.grpo_lr,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=max(1, recipe.grpo_steps // 20),
        reward_weights=weights,
        shuffle_dataset=False,  # items are already in a seeded order
        **_common_args(recipe, device),
    )
    trainer = GRPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        reward_funcs=rewards,
        peft_config=_lora(recipe.grpo_lora_rank),
        callbacks=list(callbacks),
    )
    _train(trainer, work)
    return _finish(trainer.model, recipe.grpo_lora_rank)


def _common_args(recipe: PairRecipe, device: str) -> dict[str, Any]:
    return {
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": recipe.save_steps,
        "save_total_limit": 1,  # full fine-tuning checkpoints are the size of the model
        "report_to": [],
        "disable_tqdm": True,  # rvec draws its own bar (reward and step time)
        "seed": recipe.seed,
        "data_seed": recipe.seed,
        "use_cpu": device == "cpu",
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
    }


def _train(trainer: Any, work: Path) -> None:
    """Train from the last checkpoint under ``work`` (if any), with rvec's own progress only."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
    checkpoint = latest_checkpoint(work)
    if checkpoint is not None:
        logger.warning("resuming %s from %s", work.name, checkpoint.name)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)


def quiet_training_libraries() -> None:
    """Silence what TRL, datasets and transformers print on their own during a pair run: dataset
    map bars, and deprecation warnings about arguments TRL passes itself (not the user's to fix)."""
    import warnings

    import datasets

    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    warnings.filterwarnings("ignore", message=r".*generation flags are not valid.*")


def load_model(model_dir: Path) -> tuple[torch.nn.Module, Any]:
    """A float32 causal LM on the CPU and its tokenizer, from a local folder (rvec's one loader)."""
    from rvec.model.hf.loading import load_causal_lm

    model, tokenizer, _ = load_causal_lm(model_dir, dtype=torch.float32, device="cpu")
    return model, tokenizer


def _lora(rank: int) -> Any:
    if rank == 0:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=LORA_ALPHA_PER_RANK * rank,
        lora_dropout=0.0,
        target_modules="all-linear",  # every linear layer but the output head
        task_type="CAUSAL_LM",
    )


def _finish(model: torch.nn.Module, rank: int) -> tuple[torch.nn.Module, Factors | None]:
    if rank == 0:
        return model, None
    factors = lora_factors(model)
    return model.merge_and_unload(), factors


def lora_factors(peft_model: Any) -> Factors:
    """Each adapted weight's exact update ΔW = (α/r)·B @ A as float32 factors, keyed by the base
    model's parameter name (``model.layers.0.self_attn.q_proj.weight``)."""
    factors: Factors = {}
    for name, module in peft_model.named_modules():
        if not hasattr(module, "lora_A") or "default" not in getattr(module, "lora_A", {}):
            continue
        a = module.lora_A["default"].weight.detach().to(torch.float32)  # (r, in)
        b = module.lora_B["default"].weight.detach().to(torch.float32)  # (out, r)
        scaled = (b * float(module.scaling["default"])).numpy().copy()
        factors[_base_name(name) + ".weight"] = (a.numpy().copy(), scaled)
    return factors


def _base_name(peft_module_name: str) -> str:
    # PEFT wraps the model as base_model.model.<original path>
    return peft_module_name.removeprefix("base_model.model.")
