"""``pair/log.jsonl`` (one line per optimizer step: loss, reward, accuracy, step time), the
progress callback, and ``pair/curves.png``.

Lines are appended as steps finish. On ``--resume`` the lines of the resumed phase beyond its
checkpoint are dropped first, so the log of a resumed run reads like the log of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rvec.atomic import write_text

__all__ = ["LOG_FIELDS", "Logbook", "StepReport", "plot_curves", "read_log", "step_rates"]

LOG_FIELDS: dict[str, str] = {
    # TRL log key → log.jsonl key
    "loss": "loss",
    "learning_rate": "lr",
    "grad_norm": "grad_norm",
    "mean_token_accuracy": "token_accuracy",
    "reward": "reward",
    "reward_std": "reward_std",
    "rewards/correctness/mean": "accuracy",
    "rewards/answer_format/mean": "format",
    "frac_reward_zero_std": "frac_reward_zero_std",
    "completions/mean_length": "completion_length",
    "kl": "kl",
    "entropy": "entropy",
}


@dataclass(frozen=True)
class StepReport:
    """What the progress bar shows after each logged step."""

    phase: str
    step: int
    total: int
    values: dict[str, float]
    step_seconds: float


@dataclass
class Logbook:
    """Appends one JSON line per logged optimizer step of either phase."""

    path: Path
    on_step: Callable[[StepReport], None] | None = None
    _last: float = field(default_factory=time.perf_counter)

    def truncate(self, phase: str, after_step: int) -> None:
        """Drop ``phase`` lines beyond ``after_step`` (and every later phase's lines)."""
        if not self.path.is_file():
            return
        order = ("sft", "grpo")
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if order.index(row["phase"]) < order.index(phase) or (
                row["phase"] == phase and row["step"] <= after_step
            ):
                kept.append(line)
        write_text(self.path, "".join(k + "\n" for k in kept))

    def callback(self, phase: str) -> Any:
        """A ``transformers.TrainerCallback`` that logs ``phase``'s steps here."""
        from transformers import TrainerCallback

        book = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                book._last = time.perf_counter()

            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
                if not logs or "train_runtime" in logs:
                    return
                book.record(phase, state.global_step, state.max_steps, logs)

        return _Callback()

    def record(self, phase: str, step: int, total: int, logs: dict[str, Any]) -> None:
        seconds = time.perf_counter() - self._last
        values = {
            ours: float(logs[theirs])
            for theirs, ours in LOG_FIELDS.items()
            if theirs in logs and isinstance(logs[theirs], (int, float)) and math.isfinite(logs[theirs])
        }
        values |= {
            key.replace("/", "_"): float(value)
            for key, value in logs.items()
            if key.startswith("accuracy/level") and isinstance(value, (int, float))
        }
        row = {"phase": phase, "step": step, **values, "step_seconds": round(seconds, 3)}
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.on_step is not None:
            self.on_step(StepReport(phase, step, total, values, seconds))


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every intact line of a ``log.jsonl``."""
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def step_rates(log: Path, *, completions_per_step: int) -> dict[str, float]:
    """Mean seconds per step of each phase, their total, and GRPO's generated tokens per second."""
    rows = read_log(log)
    rates: dict[str, float] = {}
    for phase in ("sft", "grpo"):
        times = [r["step_seconds"] for r in rows if r["phase"] == phase and r.get("step_seconds")]
        if times:
            rates[f"{phase}_seconds_per_step"] = round(sum(times) / len(times), 3)
            # Over every attempt of a resumed run (the log keeps the steps of the final trajectory),
            # unlike timings_seconds, which times the stage in the attempt that finished it.
            rates[f"{phase}_step_seconds_total"] = round(sum(times), 1)
    grpo = [r for r in rows if r["phase"] == "grpo" and r.get("completion_length") and r.get("step_seconds")]
    if grpo:
        tokens = sum(r["completion_length"] * completions_per_step for r in grpo)
        rates["grpo_generated_tokens_per_second"] = round(tokens / sum(r["step_seconds"] for r in grpo), 1)
    return rates


def plot_curves(log: Path, out: Path, *, held_out: dict[str, float] | None = None, title: str = "") -> None:
    """SFT loss and token accuracy, GRPO reward (sampled accuracy) with a moving mean, and the
    held-out greedy accuracy of init, SFT and RL as horizontal marks."""
    from rvec.plotting import new_figure, save_png

    rows = read_log(log)
    fig, (left, right) = new_figure(11, 4, cols=2)
    sft = [r for r in rows if r["phase"] == "sft" and "loss" in r]
    left.plot([r["step"] for r in sft], [r["loss"] for r in sft], color="tab:blue", lw=1)
    left.set(title="SFT", xlabel="step", ylabel="loss")
    grpo = [r for r in rows if r["phase"] == "grpo" and "accuracy" in r]
    steps, acc = [r["step"] for r in grpo], [r["accuracy"] for r in grpo]
    right.plot(steps, acc, color="tab:orange", lw=0.6, alpha=0.5, label="sampled accuracy (per step)")
    if len(acc) >= 5:
        k = max(5, len(acc) // 20)
        mean = [
            sum(acc[max(0, i - k + 1) : i + 1]) / len(acc[max(0, i - k + 1) : i + 1]) for i in range(len(acc))
        ]
        right.plot(steps, mean, color="tab:orange", lw=2, label=f"moving mean ({k} steps)")
    for (name, value), style in zip((held_out or {}).items(), ("dotted", "dashed", "solid"), strict=False):
        right.axhline(value, color="black", ls=style, lw=1, label=f"{name}: held-out greedy {value:.1%}")
    right.set(title="GRPO", xlabel="step", ylabel="accuracy", ylim=(0, 1))
    right.legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    save_png(fig, out)
