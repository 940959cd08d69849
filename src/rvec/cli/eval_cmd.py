"""``rvec eval``: one model (optionally + α·v in memory) on the benchmarks, under a pinned preset."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rvec.cli._common import data_dir_option, err, no_verify_option, out


def eval_command(
    model: str = typer.Argument(..., help="Model folder, hub id[@rev], or .gguf file."),
    tasks: str = typer.Option(
        ...,
        "--tasks",
        "-t",
        help="Comma-separated: gsm8k, humaneval, sciq, bbh, bbh:<subtask>, gsm-plus[:type], gsm-symbolic, "
        "math500, aime24.",
    ),
    preset: str = typer.Option(
        "paper", "--preset", help="paper | lm-eval | lm-eval-chat | reasoning (see docs/eval-protocol.md)."
    ),
    condition: str | None = typer.Option(
        None, "--condition", help="paper preset: plain or think (default: the preset's first)."
    ),
    vector: list[Path] = typer.Option(
        None, "--vector", help="Vector folder added in memory (repeatable; one --alpha each)."
    ),
    alpha: list[float] = typer.Option(None, "--alpha", "-a", help="α for each --vector, in order."),
    no_verify: bool = no_verify_option(),
    perturb: str | None = typer.Option(
        None, "--perturb", help="Seeded perturbations, e.g. distractor,hint,shuffle,typo:0.05,system:alt."
    ),
    limit: int | None = typer.Option(
        None, "--limit", help="First N items of each task (BBH: of each subtask)."
    ),
    data_dir: Path | None = data_dir_option(),
    allow_code_execution: bool = typer.Option(
        False,
        "--allow-code-execution",
        help="Let HumanEval run model-written code (isolated by bubblewrap, see docs/security.md).",
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Folder for results.json, samples/ and the resume cache."
    ),
    backend: str = typer.Option(
        "hf",
        "--backend",
        help="Engine: hf (transformers, built in) or vllm (the vllm extra; docs/vllm.md).",
    ),
    batch_size: int = typer.Option(16, "--batch-size", help="Sequences per batch."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:1… (auto: cuda when available)."),
    dtype: str = typer.Option(
        "auto",
        "--dtype",
        help="float32 | bfloat16 | float16, or bf16, fp16, fp32 (auto: float32 on CPU, bfloat16 on GPU). Only float32 gives "
        "the same texts whatever the batch size and the other tasks of the run.",
    ),
    tensor_parallel: int | None = typer.Option(
        None, "--tensor-parallel", help="vllm: GPUs one engine spans (default 1)."
    ),
    gpu_memory: float | None = typer.Option(
        None, "--gpu-memory", help="vllm: fraction of each GPU the engine may take (default 0.9)."
    ),
    max_model_len: int | None = typer.Option(
        None, "--max-model-len", help="vllm: prompt + generation limit (default: the model's)."
    ),
    attention_backend: str | None = typer.Option(
        None, "--attention-backend", help="vllm: FLASH_ATTN, TRITON_ATTN, CPU_ATTN… (default: vLLM's choice)."
    ),
    seed: int = typer.Option(1234, "--seed", help="Seed of the perturbations."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Evaluate a model on GSM8K, HumanEval, SciQ, BIG-Bench Hard, adversarial variants, MATH-500, AIME 2024.

    Writes results.json (lm-evaluation-harness layout), samples/<task>.jsonl and a cache: a rerun
    with the same -o resumes without redoing finished items. --vector/--alpha add α·v in memory
    (no checkpoint written).

    Examples:
      rvec eval MODEL --tasks gsm8k,humaneval,sciq,bbh --preset paper --condition think --limit 50 -o runs/x/ --allow-code-execution
      rvec eval MODEL --tasks gsm8k --preset lm-eval --backend hf --dtype float32 --batch-size 32
      rvec eval MODEL --vector vec/ --alpha 1.0 --tasks gsm8k
      rvec eval MODEL --tasks gsm8k,sciq --backend vllm --tensor-parallel 2 --gpu-memory 0.85
      rvec eval MODEL --tasks gsm8k --perturb distractor,hint,typo:0.05
      rvec eval MODEL --tasks math500,aime24,gsm8k --preset reasoning -o runs/r/
    """
    from rvec.eval.command import eval_command as run
    from rvec.model.registry import parse_backend_settings

    engine = {
        "tensor_parallel": tensor_parallel,
        "gpu_memory": gpu_memory,
        "max_model_len": max_model_len,
        "attention_backend": attention_backend,
    }
    settings = parse_backend_settings(  # engine flags only when given: --backend hf refuses them
        {
            "name": backend,
            "device": device,
            "dtype": dtype,
            "batch_size": batch_size,
            **{k: v for k, v in engine.items() if v is not None},
        }
    )
    result = run(
        model,
        vectors=[str(v) for v in vector or []],
        alphas=list(alpha or []),
        tasks=[t.strip() for t in tasks.split(",") if t.strip()],
        preset=preset,
        condition=condition,
        perturb=[p.strip() for p in perturb.split(",")] if perturb else [],
        limit=limit,
        data_dir=data_dir,
        allow_code_execution=allow_code_execution,
        out_dir=output,
        backend=settings,
        seed=seed,
        progress=progress,
        verify=not no_verify,
    )
    table = Table("task", "metric", "value", "n")
    for task, metrics in result.scores.items():
        n = len(result.samples.get(task, []))
        for metric, value in metrics.items():
            table.add_row(task, metric, f"{value:.4f}", str(n))
    out.print(table)
    if output:
        err.print(f"wrote {output / 'results.json'}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
