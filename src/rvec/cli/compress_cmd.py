"""``rvec compress``: a vector stored smaller (truncated SVD per matrix, or largest entries), with its error."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rvec.cli.options import AsJson, NoVerify, Output, Overwrite, OverwriteForeign, ShowProgress
from rvec.cli.output import byte_progress, err, out, print_json, shown
from rvec.vector.compress import CompressResult, compress
from rvec.vector.encodings import storage_label


def compress_command(
    vector: Annotated[Path, typer.Argument(help="Vector folder to compress.")],
    output: Output,
    rank: Annotated[
        int | None,
        typer.Option(
            "--rank", help="Per-matrix truncated SVD rank, stored factored (1-D tensors stay dense)."
        ),
    ] = None,
    density: Annotated[
        float | None,
        typer.Option(
            "--density",
            help="Fraction in (0, 1] of each tensor's entries to keep (largest |v|), stored sparse.",
        ),
    ] = None,
    overwrite: Overwrite = False,
    overwrite_foreign: OverwriteForeign = False,
    no_verify: NoVerify = False,
    top: Annotated[int, typer.Option("--top", help="Show the N tensors with the largest error.")] = 10,
    progress: ShowProgress = True,
    as_json: AsJson = False,
) -> None:
    """Write a smaller copy of a vector and record its relative Frobenius error, per tensor and overall.

    --rank R keeps each matrix's R largest singular directions (the error is the SVD tail
    sqrt(Σ_{i>R} σᵢ²)/‖v‖; a matrix smaller than R is kept exactly). --density D keeps, in every
    tensor, exactly ⌊D·n + ½⌋ of its n entries, the largest in magnitude. The output is an ordinary
    vector folder: apply, eval --vector, anatomy and check read it as they read any other.

    Examples:
      rvec compress vec/ --rank 32 -o vec-r32/
      rvec compress vec/ --density 0.05 -o vec-d5/
    """
    with byte_progress("compress", enabled=progress) as update:
        result = compress(
            vector,
            output,
            rank=rank,
            density=density,
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
            shown(name), storage_label(rec), f"{rec['source_norm']:.4g}", f"{rec['relative_error']:.4g}"
        )
    out.print(table)
    if result.dense:
        err.print(
            f"kept dense (not matrices): {len(result.dense)} tensors, e.g. {shown(result.dense[0])}",
            soft_wrap=True,
        )
    if result.zero:
        err.print(f"exactly zero (stored with no entries): {len(result.zero)} tensors", soft_wrap=True)
    err.print(
        f"wrote {shown(output)}: {result.method} {result.setting:g}, relative error {result.relative_error:.4g}, "
        f"{result.bytes_before / 1e6:.2f} MB → {result.bytes_after / 1e6:.2f} MB",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("compress")(compress_command)
