"""``rvec control``: random control vectors (norm-matched to a vector, or relative to a model)."""

from __future__ import annotations

from pathlib import Path

import typer

from rvec.cli._common import err, overwrite_foreign_option, overwrite_option
from rvec.errors import InvalidArgumentError
from rvec.vector.control import norm_matched_random, relative_random


def control_command(
    vector: Path | None = typer.Argument(None, help="Vector to match norms with, tensor by tensor."),
    output: Path = typer.Option(..., "-o", "--output", help="Vector folder to create."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random directions."),
    like: str | None = typer.Option(
        None, "--like", help="Instead of a vector: a model whose tensors set the shapes."
    ),
    rel_norm: float | None = typer.Option(
        None, "--rel-norm", help="With --like: ‖r‖/‖θ‖ per tensor, e.g. 0.002."
    ),
    overwrite: bool = overwrite_option(),
    overwrite_foreign: bool = overwrite_foreign_option(),
) -> None:
    """Write a random control vector: same per-tensor norms as VECTOR, random direction (seeded).

    It answers whether gains come from v's direction or from any perturbation of that size.

    Examples:
      rvec control vec/ -o vec-random/ --seed 0
      rvec control --like smol/ --rel-norm 0.002 -o random-for-smol/
    """
    if vector is not None and like is None:
        norm_matched_random(
            vector, output, seed=seed, overwrite=overwrite, overwrite_foreign=overwrite_foreign
        )
    elif like is not None and vector is None and rel_norm is not None:
        relative_random(
            like,
            output,
            rel_norm=rel_norm,
            seed=seed,
            overwrite=overwrite,
            overwrite_foreign=overwrite_foreign,
        )
    else:
        raise InvalidArgumentError("pass a VECTOR to match, or --like MODEL with --rel-norm (not both)")
    err.print(f"wrote {output} (random control, seed {seed})")


def register(app: typer.Typer) -> None:
    app.command("control")(control_command)
