"""``rvec apply``: θ_target + Σ αᵢ·vᵢ, written as a Hugging Face model folder."""

from __future__ import annotations

from pathlib import Path

import typer

from rvec.checkpoint.source import resolve
from rvec.checkpoint.writer import parse_size
from rvec.cli._common import (
    byte_progress,
    err,
    no_verify_option,
    overwrite_foreign_option,
    overwrite_option,
    print_json,
)
from rvec.errors import InvalidArgumentError
from rvec.vector.apply import ApplyResult, apply, parse_dtype
from rvec.vector.artifact import DonorPair, read_vector
from rvec.vector.embeddings import parse_policy
from rvec.vector.masks import Selection, parse_layers, parse_schedule
from rvec.vector.mergekit import apply_mergekit, load_mergekit


def apply_command(
    vectors: list[Path] = typer.Argument(None, help="Vector folders (rvec extract); or use --sft/--rl."),
    to: str | None = typer.Option(None, "--to", help="Target model: folder or hub id[@rev]."),
    alpha: list[float] = typer.Option(
        None, "--alpha", "-a", help="α per vector, in order (repeat the flag). Negative subtracts."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Model folder to create."),
    sft: str | None = typer.Option(
        None, "--sft", help="SFT donor: compute v on the fly (no vector written)."
    ),
    rl: str | None = typer.Option(None, "--rl", help="RL donor, with --sft."),
    mergekit: Path | None = typer.Option(
        None,
        "--mergekit",
        help="Run a mergekit YAML instead (linear, task_arithmetic, ties, dare_*, breadcrumbs*, ram).",
    ),
    dtype: str | None = typer.Option(
        None,
        "--dtype",
        help="Output dtype: float32, bfloat16, float16, or fp32, bf16, fp16 (default: the target's).",
    ),
    include: list[str] = typer.Option(
        None, "--include", help="Regex; only matching tensors get the vector (repeatable)."
    ),
    exclude: list[str] = typer.Option(
        None, "--exclude", help="Regex; matching tensors keep the target's values (repeatable)."
    ),
    layers: str | None = typer.Option(
        None, "--layers", help="Blocks that get the vector, e.g. 0-13,20 (non-block tensors then excluded)."
    ),
    schedule: str | None = typer.Option(
        None, "--schedule", help="Per-depth α factor: linear:START:END or constant:C [:outside=X]."
    ),
    embeddings: str | None = typer.Option(
        None, "--embeddings", help="apply | skip | overlap (required when vocabularies differ)."
    ),
    overwrite: bool = overwrite_option(),
    overwrite_foreign: bool = overwrite_foreign_option(),
    no_verify: bool = no_verify_option(),
    skip_lineage: bool = typer.Option(
        False, "--skip-lineage", help="Apply even if the target looks unrelated to the donors."
    ),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept pickled .bin checkpoints."),
    max_shard_size: str = typer.Option("4GB", "--max-shard-size", help="Largest shard, e.g. 2GB."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Threads computing blocks (default: the usable cores, at most 4); a writer thread comes on top.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the provenance summary as JSON."),
) -> None:
    """Add α·v to a target and write a normal Hugging Face model folder (config and tokenizer from the target).

    Float32 arithmetic, one cast to the output dtype; reports how much of α·v survived that cast.
    The folder appears only when complete. Each vector's shards are checked against the sha256 in
    its rvec.json first (--no-verify skips that); dense, factored and sparse vectors all apply.

    Examples:
      rvec apply vec/ --to Qwen/Qwen2.5-1.5B-Instruct --alpha 1 -o out/
      rvec apply vec/ --to T --alpha -1 -o out-neg/                  (subtraction ablation)
      rvec apply v1/ v2/ --alpha 0.5 --alpha 1 --to T -o out/        (several vectors)
      rvec apply --sft A --rl B --to T --alpha 1 --dtype bfloat16 -o out/   (no vector on disk)
      rvec apply --mergekit merge.yml -o out/      (a mergekit config; see docs/merging.md)
    """
    if mergekit is not None:
        given = [vectors, sft, rl, alpha, to, dtype, include, exclude, layers, schedule, embeddings]
        if any(given):
            raise InvalidArgumentError(
                "--mergekit takes the models, weights and dtype from the YAML; pass only -o and output flags"
            )
        job = load_mergekit(mergekit)
        with byte_progress("apply", enabled=progress) as update:
            result = apply_mergekit(
                job, output, overwrite=overwrite, overwrite_foreign=overwrite_foreign, skip_lineage=skip_lineage,
                allow_pickle=allow_pickle, max_shard_bytes=parse_size(max_shard_size), workers=workers,
                on_progress=update,
            )  # fmt: skip
        _report(result, output, as_json=as_json)
        return
    if to is None:
        raise InvalidArgumentError("pass --to TARGET (the model to add the vector to)")
    sources: list = [read_vector(v, verify=not no_verify) for v in vectors or []]
    if sft or rl:
        if not (sft and rl):
            raise InvalidArgumentError("--sft and --rl go together")
        sources.append(
            DonorPair(sft=resolve(sft, allow_pickle=allow_pickle), rl=resolve(rl, allow_pickle=allow_pickle))
        )
    alphas = list(alpha or [])
    if not alphas:
        raise InvalidArgumentError("pass --alpha (one per vector), e.g. --alpha 1.0")
    selection = Selection(
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
        layers=parse_layers(layers),
        schedule=parse_schedule(schedule),
    )
    with byte_progress("apply", enabled=progress) as update:
        result = apply(
            sources,
            to,
            output,
            alphas=alphas,
            dtype=parse_dtype(dtype),
            selection=selection,
            embeddings=parse_policy(embeddings),
            overwrite=overwrite,
            overwrite_foreign=overwrite_foreign,
            skip_lineage=skip_lineage,
            allow_pickle=allow_pickle,
            max_shard_bytes=parse_size(max_shard_size),
            workers=workers,
            on_progress=update,
        )
    _report(result, output, as_json=as_json)


def _report(result: ApplyResult, output: Path, *, as_json: bool) -> None:
    surv = result.survival
    if as_json:
        print_json(
            {"path": str(output), "delta_survival": surv.to_dict(), "policies": result.provenance["policies"]}
        )
        return
    err.print(f"wrote {output}")
    err.print(
        f"delta survival: {100 * (1 - surv.erased_fraction):.4f}% of {surv.nonzero:,} non-zero α·v entries kept ({surv.erased:,} erased by rounding)"
    )
    for row in surv.worst(3):
        if row["erased"]:
            err.print(f"  {row['tensor']}: {100 * row['erased_fraction']:.2f}% erased")
    for p in result.provenance["policies"]:
        err.print(f"policy: {p}")


def register(app: typer.Typer) -> None:
    app.command("apply")(apply_command)
