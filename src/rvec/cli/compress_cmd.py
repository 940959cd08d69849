"""``rvec compress``: a vector stored smaller (truncated SVD per matrix, largest entries, or a merge
method's sparsification), with its error."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rvec.cli.options import (
    DEFAULT_SEED,
    AsJson,
    DareSeed,
    NoVerify,
    Output,
    Overwrite,
    OverwriteForeign,
    ShowProgress,
)
from rvec.cli.output import byte_progress, err, out, print_json, shown
from rvec.vector.compress import CompressResult
from rvec.vector.encodings import storage_label
from rvec.vector.prune import shrink

Opt = typer.Option


def compress_command(
    vector: Annotated[Path, typer.Argument(help="Vector folder to compress.")],
    output: Output,
    rank: Annotated[
        int | None,
        Opt("--rank", help="Per-matrix truncated SVD rank, stored factored (1-D tensors stay dense)."),
    ] = None,
    density: Annotated[
        float | None,
        Opt(
            "--density",
            help="Fraction in (0, 1] of each tensor's entries to keep (largest |v|, or by --method), stored sparse.",
        ),
    ] = None,
    method: Annotated[
        str | None,
        Opt(
            "--method",
            help="With --density: dare (random, seeded, L1-rescaled), magnitude (TIES's trim) or breadcrumbs "
            "(drop outliers and smallest), as rvec merge sparsifies each input.",
        ),
    ] = None,
    gamma: Annotated[
        float | None, Opt("--gamma", help="--method breadcrumbs: fraction of largest |v| dropped (0.01).")
    ] = None,
    seed: DareSeed = DEFAULT_SEED,
    rescale: Annotated[
        bool | None,
        Opt(
            "--rescale/--no-rescale",
            help="--method: keep each tensor's L1 norm (default: dare yes, others no).",
        ),
    ] = None,
    overwrite: Overwrite = False,
    overwrite_foreign: OverwriteForeign = False,
    no_verify: NoVerify = False,
    top: Annotated[int, Opt("--top", help="Show the N tensors with the largest error.")] = 10,
    progress: ShowProgress = True,
    as_json: AsJson = False,
) -> None:
    """Write a smaller copy of a vector and record its relative Frobenius error, per tensor and overall.

    --rank R keeps each matrix's R largest singular directions (the error is the SVD tail
    sqrt(Σ_{i>R} σᵢ²)/‖v‖; a matrix smaller than R is kept exactly). --density D keeps, in every
    tensor, exactly ⌊D·n + ½⌋ of its n entries, the largest in magnitude. --method dare|magnitude|breadcrumbs
    --density D sparsifies each tensor as rvec merge sparsifies its inputs (mergekit's counts: int(D·n)
    kept; DARE seeded by --seed). The output is an ordinary vector folder: apply, eval --vector,
    anatomy and check read it as they read any other.

    Examples:
      rvec compress vec/ --rank 32 -o vec-r32/
      rvec compress vec/ --density 0.05 -o vec-d5/
      rvec compress vec/ --method dare --density 0.1 --seed 7 -o vec-dare/
    """
    with byte_progress("compress", enabled=progress) as update:
        result = shrink(
            vector,
            output,
            rank=rank,
            density=density,
            method=method,
            gamma=gamma,
            seed=seed,
            rescale=rescale,
            overwrite=overwrite,
            overwrite_foreign=overwrite_foreign,
            verify=not no_verify,
            on_progress=update,
        )
    if as_json:
        print_json(result.to_dict())
    else:
        _report(result, output, top=top)


def _report(result: CompressResult, output: Path, *, top: int) -> None:
    table = Table("tensor", "stored", "‖v‖", "relative error")
    worst = sorted(result.per_tensor.items(), key=lambda kv: -kv[1]["relative_error"])[:top]
    for name, rec in worst:
        table.add_row(
            shown(name),
            shown(storage_label(rec)),
            f"{rec['source_norm']:.4g}",
            f"{rec['relative_error']:.4g}",
        )
    out.print(table)
    if result.dense:
        err.print(
            f"kept dense (not matrices): {len(result.dense)} tensors, e.g. {shown(result.dense[0])}",
            soft_wrap=True,
        )
    if result.zero:
        err.print(f"exactly zero (stored with no entries): {len(result.zero)} tensors", soft_wrap=True)
    if result.kept_fraction is not None:
        err.print(
            f"kept {100 * result.kept_fraction:.4f}% of entries ({shown(result.settings)})", soft_wrap=True
        )
    err.print(
        f"wrote {shown(output)}: {shown(result.method)} {result.setting:g}, relative error {result.relative_error:.4g}, "
        f"{result.bytes_before / 1e6:.2f} MB → {result.bytes_after / 1e6:.2f} MB",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("compress")(compress_command)
