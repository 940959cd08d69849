"""``rvec eval``: one model (optionally + α·v in memory) on the benchmarks, under a pinned preset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rvec.cli.options import (
    DEFAULT_SEED,
    AsJson,
    DataDir,
    Device,
    Dtype,
    EvalSeed,
    NoVerify,
    OptionalOutput,
    ShowProgress,
)
from rvec.cli.output import err, out, print_json, shown
from rvec.eval.types import EvalResult


def eval_command(
    model: Annotated[str, typer.Argument(help="Model folder, hub id[@rev], .gguf or pkg:MODULE/FILE.gguf.")],
    tasks: Annotated[
        str,
        typer.Option(
            "--tasks",
            "-t",
            help="Comma-separated: gsm8k, humaneval, sciq, bbh, bbh:<subtask>, gsm-plus[:type], gsm-symbolic, arith, math500, aime24.",
        ),
    ],
    preset: Annotated[
        str,
        typer.Option(
            "--preset", help="paper | lm-eval | lm-eval-chat | reasoning (see docs/eval-protocol.md)."
        ),
    ] = "paper",
    condition: Annotated[
        str | None,
        typer.Option("--condition", help="paper preset: plain or think (default: the preset's first)."),
    ] = None,
    vector: Annotated[
        list[Path] | None,
        typer.Option("--vector", help="Vector folder added in memory (repeatable; one --alpha each)."),
    ] = None,
    alpha: Annotated[
        list[float] | None, typer.Option("--alpha", "-a", help="α for each --vector, in order.")
    ] = None,
    no_verify: NoVerify = False,
    perturb: Annotated[
        str | None,
        typer.Option(
            "--perturb", help="Seeded perturbations, e.g. distractor,hint,shuffle,typo:0.05,system:alt."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="First N items of each task (BBH: of each subtask).")
    ] = None,
    data_dir: DataDir = None,
    allow_code_execution: Annotated[
        bool,
        typer.Option(
            "--allow-code-execution",
            help="Let HumanEval run model-written code (isolated by bubblewrap, see docs/security.md).",
        ),
    ] = False,
    output: OptionalOutput = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend", help="Engine: hf (transformers, built in) or vllm (the vllm extra; docs/vllm.md)."
        ),
    ] = "hf",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences per batch (hf).")] = 16,
    device: Device = "auto",
    dtype: Dtype = None,
    tensor_parallel: Annotated[
        int | None, typer.Option("--tensor-parallel", help="vllm: GPUs one engine spans (default 1).")
    ] = None,
    gpu_memory: Annotated[
        float | None,
        typer.Option("--gpu-memory", help="vllm: fraction of each GPU the engine may take (default 0.9)."),
    ] = None,
    max_model_len: Annotated[
        int | None,
        typer.Option("--max-model-len", help="vllm: prompt + generation limit (default: the model's)."),
    ] = None,
    attention_backend: Annotated[
        str | None,
        typer.Option(
            "--attention-backend", help="vllm: FLASH_ATTN, TRITON_ATTN, CPU_ATTN… (default: vLLM's choice)."
        ),
    ] = None,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-new-tokens", help="Token budget of every generating task (default: the preset's)."
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option("--samples", help="Responses drawn per item (avg@n, pass@k); needs --temperature.")
    ] = 1,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Sampling temperature (default 0: greedy).")
    ] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus mass in (0, 1] (default 1).")] = 1.0,
    think: Annotated[
        bool, typer.Option("--think", help="Thinking model: score the answer after the closing think tag.")
    ] = False,
    think_end_tag: Annotated[
        str | None, typer.Option("--think-end-tag", help="The closing tag with --think (default </think>).")
    ] = None,
    chat_template_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--chat-template-arg",
            help="NAME=VALUE for the chat template, e.g. enable_thinking=true (repeatable).",
        ),
    ] = None,
    seed: EvalSeed = DEFAULT_SEED,
    progress: ShowProgress = True,
    as_json: AsJson = False,
) -> None:
    """Evaluate a model on GSM8K, HumanEval, SciQ, BIG-Bench Hard, arith, MATH-500, AIME 2024 and adversarial variants.

    Writes results.json (lm-evaluation-harness layout), samples/<task>.jsonl and a cache: a rerun
    with the same -o resumes without redoing finished items. --vector/--alpha add α·v in memory
    (no checkpoint written). --dtype defaults to float32 on CPU and bfloat16 on GPU; only float32
    gives the same texts whatever the batch size and the other tasks of the run. --samples N with
    --temperature/--top-p draws N responses per item, seeded by --seed (avg@N, pass@k).

    Examples:
      rvec eval MODEL --tasks gsm8k,humaneval,sciq,bbh --preset paper --condition think --limit 50 -o runs/x/ --allow-code-execution
      rvec eval MODEL --tasks gsm8k --preset lm-eval --backend hf --dtype float32 --batch-size 32
      rvec eval MODEL --vector vec/ --alpha 1.0 --tasks gsm8k
      rvec eval MODEL --tasks gsm8k,sciq --backend vllm --tensor-parallel 2 --gpu-memory 0.85
      rvec eval MODEL --tasks gsm8k --perturb distractor,hint,typo:0.05
      rvec eval MODEL --tasks math500,aime24,gsm8k --preset reasoning -o runs/r/
      rvec eval MODEL --tasks math500 --preset reasoning --samples 8 --temperature 0.6 --top-p 0.95 --seed 0 --max-new-tokens 4096 --think --chat-template-arg enable_thinking=true
    """
    from rvec.eval.overrides import RunOverrides, parse_template_args
    from rvec.model.evaluate import evaluate_model
    from rvec.model.registry import parse_backend_flags

    overrides = RunOverrides(
        max_new_tokens=max_new_tokens,
        samples=samples,
        temperature=temperature,
        top_p=top_p,
        think=think,
        think_end_tag=think_end_tag,
        chat_template_args=parse_template_args(chat_template_arg or []),
    )

    settings = parse_backend_flags(
        backend,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        tensor_parallel=tensor_parallel,
        gpu_memory=gpu_memory,
        max_model_len=max_model_len,
        attention_backend=attention_backend,
    )
    result = evaluate_model(
        model,
        vectors=[str(v) for v in vector or []],
        alphas=list(alpha or []),
        tasks=_names(tasks),
        preset=preset,
        condition=condition,
        perturb=_names(perturb or ""),
        limit=limit,
        data_dir=data_dir,
        allow_code_execution=allow_code_execution,
        out_dir=output,
        backend=settings,
        seed=seed,
        progress=progress,
        verify=not no_verify,
        overrides=overrides,
    )
    _report(result, output, as_json=as_json)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _report(result: EvalResult, output: Path | None, *, as_json: bool) -> None:
    from rvec.eval.verdicts import disagreement_line

    # items, not responses: a sampled run answers every item several times
    counts = {task: len({r.doc_id for r in samples}) for task, samples in result.samples.items()}
    if as_json:
        results = str(output / "results.json") if output else None
        document = {"scores": result.scores, "items": counts, "results": results}
        print_json({**document, "disagreements": result.disagreements})
        return
    table = Table("task", "metric", "value", "n")
    for task, metrics in result.scores.items():
        for metric, value in metrics.items():
            table.add_row(shown(task), shown(metric), f"{value:.4f}", str(counts.get(task, 0)))
    out.print(table)
    for key, summary in result.disagreements.items():
        out.print(shown(disagreement_line(key, summary)))
    if output:
        err.print(f"wrote {shown(output / 'results.json')}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
