"""``rvec compress``: a vector stored smaller (truncated SVD per matrix, or largest entries), with its error."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rvec.cli._common import byte_progress, err, no_verify_option, out, print_json
from rvec.errors import InvalidArgumentError
from rvec.vector.compress import compress
from rvec.vector.encodings import storage_label
from rvec.vector.prune import prune


def compress_command(
    vector: Path = typer.Argument(..., help="Vector folder to compress."),
    output: Path = typer.Option(..., "-o", "--output", help="Compressed vector folder to create."),
    rank: int | None = typer.Option(
        None, "--rank", help="Per-matrix truncated SVD rank, stored factored (1-D tensors stay dense)."
    ),
    density: float | None = typer.Option(
        None,
        "--density",
        help="Fraction in (0, 1] of each tensor's entries to keep (largest |v|), stored sparse.",
    ),
    method: str | None = typer.Option(
        None,
        "--method",
        help="With --density: dare (random, seeded, L1-rescaled), magnitude (TIES's trim) or breadcrumbs "
        "(drop outliers and smallest), as rvec merge sparsifies each input.",
    ),
    gamma: float | None = typer.Option(
        None, "--gamma", help="--method breadcrumbs: fraction of largest |v| dropped (0.01)."
    ),
    seed: int = typer.Option(0, "--seed", help="--method dare: the mask's seed."),
    rescale: bool | None = typer.Option(
        None,
        "--rescale/--no-rescale",
        help="--method: keep each tensor's L1 norm (default: dare yes, others no).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output folder if it exists."),
    no_verify: bool = no_verify_option(),
    top: int = typer.Option(10, "--top", help="Show the N tensors with the largest error."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary (every tensor) as JSON."),
) -> None:
    """Write a smaller copy of a vector and record its relative Frobenius error, per tensor and overall.

    --rank R keeps each matrix's R largest singular directions (the error is the SVD tail
    sqrt(Σ_{i>R} σᵢ²)/‖v‖; a matrix smaller than R is kept exactly). --density D keeps, in every
    tensor, exactly ⌊D·n + ½⌋ of its n entries, the largest in magnitude. The output is an ordinary
    vector folder: apply, eval --vector, stats and check read it as they read any other.

    --method dare|magnitude|breadcrumbs --density D sparsifies each tensor as rvec merge sparsifies
    its inputs (mergekit's counts: int(D·n) kept; DARE seeded by --seed), stored sparse.

    Examples:
      rvec compress vec/ --rank 32 -o vec-r32/
      rvec compress vec/ --density 0.05 -o vec-d5/
      rvec compress vec/ --method dare --density 0.1 --seed 7 -o vec-dare/
    """
    with byte_progress("compress", enabled=progress) as update:
        on_progress = lambda done, total: update(4 * done, 4 * total)  # noqa: E731 — elements → bytes
        if method is None:
            if gamma is not None or rescale is not None:
                raise InvalidArgumentError("--gamma and --rescale go with --method")
            result = compress(
                vector, output, rank=rank, density=density, overwrite=overwrite,
                verify=not no_verify, on_progress=on_progress,
            )  # fmt: skip
        else:
            if rank is not None or density is None:
                raise InvalidArgumentError(
                    "--method takes --density D (not --rank); e.g. --method dare --density 0.1"
                )
            result = prune(
                vector, output, method=method, density=density, gamma=gamma, seed=seed, rescale=rescale,
                overwrite=overwrite, verify=not no_verify, on_progress=on_progress,
            )  # fmt: skip
    if as_json:
        print_json(result.to_dict())
        return
    table = Table("tensor", "stored", "‖v‖", "relative error")
    worst = sorted(result.per_tensor.items(), key=lambda kv: -kv[1]["relative_error"])[:top]
    for name, rec in worst:
        table.add_row(name, storage_label(rec), f"{rec['source_norm']:.4g}", f"{rec['relative_error']:.4g}")
    out.print(table)
    if result.dense:
        err.print(
            f"kept dense (not matrices): {len(result.dense)} tensors, e.g. {result.dense[0]}", soft_wrap=True
        )
    if result.zero:
        err.print(f"exactly zero (stored with no entries): {len(result.zero)} tensors", soft_wrap=True)
    if result.kept_fraction is not None:
        err.print(f"kept {100 * result.kept_fraction:.4f}% of entries ({result.settings})", soft_wrap=True)
    err.print(
        f"wrote {output}: {result.method} {result.setting:g}, relative error {result.relative_error:.4g}, "
        f"{result.bytes_before / 1e6:.2f} MB → {result.bytes_after / 1e6:.2f} MB",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("compress")(compress_command)
