"""``rvec apply``: θ_target + Σ αᵢ·vᵢ, written as a Hugging Face model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rvec.checkpoint.dtypes import parse_output_dtype
from rvec.checkpoint.writer import parse_size
from rvec.cli.options import (
    AllowPickle,
    AsJson,
    Dtype,
    Lineage,
    MaxShardSize,
    NoVerify,
    Output,
    Overwrite,
    OverwriteForeign,
    ShowProgress,
)
from rvec.cli.output import byte_progress, err, print_json, shown
from rvec.errors import InvalidArgumentError
from rvec.vector.apply import ApplyResult, apply
from rvec.vector.apply_plan import vector_sources
from rvec.vector.embeddings import parse_policy
from rvec.vector.masks import parse_selection
from rvec.vector.mergekit import apply_mergekit, load_mergekit


def apply_command(
    vectors: Annotated[
        list[Path] | None, typer.Argument(help="Vector folders (rvec extract); or --sft/--rl.")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Target model: folder, hub id[@rev] or .gguf.")
    ] = None,
    alpha: Annotated[
        list[float] | None,
        typer.Option("--alpha", "-a", help="α per vector, in order (repeat the flag). Negative subtracts."),
    ] = None,
    output: Output = ...,  # type: ignore[assignment]
    sft: Annotated[
        str | None, typer.Option("--sft", help="SFT donor: compute v on the fly (no vector written).")
    ] = None,
    rl: Annotated[str | None, typer.Option("--rl", help="RL donor, with --sft.")] = None,
    mergekit: Annotated[
        Path | None,
        typer.Option(
            "--mergekit",
            help="Run a mergekit YAML instead (linear, task_arithmetic, ties, dare_*, breadcrumbs*, ram).",
        ),
    ] = None,
    dtype: Dtype = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Regex; only matching tensors get the vector (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Regex; matching tensors keep the target's values (repeatable)."),
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option(
            "--layers", help="Blocks that get the vector, e.g. 0-13,20 (non-block tensors then excluded)."
        ),
    ] = None,
    schedule: Annotated[
        str | None,
        typer.Option("--schedule", help="Per-depth α factor: linear:START:END or constant:C [:outside=X]."),
    ] = None,
    embeddings: Annotated[
        str | None,
        typer.Option("--embeddings", help="apply | skip | overlap (required when vocabularies differ)."),
    ] = None,
    overwrite: Overwrite = False,
    overwrite_foreign: OverwriteForeign = False,
    no_verify: NoVerify = False,
    lineage: Lineage = True,
    allow_pickle: AllowPickle = False,
    max_shard_size: MaxShardSize = "4GB",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Threads computing blocks (default: the usable cores, at most 4); a writer thread comes on top.",
        ),
    ] = None,
    progress: ShowProgress = True,
    as_json: AsJson = False,
) -> None:
    """Add α·v to a target and write a normal Hugging Face model folder (config and tokenizer from the target).

    Float32 arithmetic, one cast to the output dtype (default: the target's); reports how much of α·v
    survived that cast. The folder appears only when complete. Each vector's shards are checked
    against the sha256 in its rvec.json first (--no-verify skips that); dense, factored and sparse
    vectors all apply.

    Examples:
      rvec apply vec/ --to Qwen/Qwen2.5-1.5B-Instruct --alpha 1 -o out/
      rvec apply vec/ --to T --alpha -1 -o out-neg/                  (subtraction ablation)
      rvec apply v1/ v2/ --alpha 0.5 --alpha 1 --to T -o out/        (several vectors)
      rvec apply --sft A --rl B --to T --alpha 1 --dtype bfloat16 -o out/   (no vector on disk)
      rvec apply --mergekit merge.yml -o out/      (a mergekit config; see docs/merging.md)
    """
    writing = {
        "overwrite": overwrite,
        "overwrite_foreign": overwrite_foreign,
        "lineage": lineage,
        "allow_pickle": allow_pickle,
        "max_shard_bytes": parse_size(max_shard_size),
        "workers": workers,
    }
    if mergekit is not None:
        if any([vectors, sft, rl, alpha, to, dtype, include, exclude, layers, schedule, embeddings]):
            raise InvalidArgumentError(
                "--mergekit takes the models, weights and dtype from the YAML; pass only -o and output flags"
            )
        with byte_progress("apply", enabled=progress) as update:
            result = apply_mergekit(load_mergekit(mergekit), output, on_progress=update, **writing)
        _report(result, output, as_json=as_json)
        return
    if to is None:
        raise InvalidArgumentError("pass --to TARGET (the model to add the vector to)")
    sources = vector_sources(vectors or [], sft=sft, rl=rl, verify=not no_verify, allow_pickle=allow_pickle)
    with byte_progress("apply", enabled=progress) as update:
        result = apply(
            sources,
            to,
            output,
            alphas=list(alpha or []),
            dtype=parse_output_dtype(dtype),
            selection=parse_selection(include=include, exclude=exclude, layers=layers, schedule=schedule),
            embeddings=parse_policy(embeddings),
            on_progress=update,
            **writing,
        )
    _report(result, output, as_json=as_json)


def _report(result: ApplyResult, output: Path, *, as_json: bool) -> None:
    surv = result.survival
    if as_json:
        print_json(
            {"path": str(output), "delta_survival": surv.to_dict(), "policies": result.provenance["policies"]}
        )
        return
    err.print(f"wrote {shown(output)}")
    err.print(
        f"delta survival: {100 * (1 - surv.erased_fraction):.4f}% of {surv.nonzero:,} non-zero α·v entries kept "
        f"({surv.erased:,} erased by rounding)"
    )
    for row in surv.worst(3):
        if row["erased"]:
            err.print(f"  {shown(row['tensor'])}: {100 * row['erased_fraction']:.2f}% erased")
    for p in result.provenance["policies"]:
        err.print(f"policy: {shown(p)}")


def register(app: typer.Typer) -> None:
    app.command("apply")(apply_command)
