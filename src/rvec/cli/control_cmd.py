"""``rvec control``: random control vectors (norm-matched to a vector, or relative to a model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rvec.cli.options import DEFAULT_SEED, AsJson, ControlSeed, Output, Overwrite, OverwriteForeign
from rvec.cli.output import err, print_json, shown
from rvec.vector.control import random_control


def control_command(
    vector: Annotated[
        Path | None, typer.Argument(help="Vector to match norms with, tensor by tensor.")
    ] = None,
    output: Output = ...,  # type: ignore[assignment]
    seed: ControlSeed = DEFAULT_SEED,
    like: Annotated[
        str | None, typer.Option("--like", help="Instead of a vector: a model whose tensors set the shapes.")
    ] = None,
    rel_norm: Annotated[
        float | None, typer.Option("--rel-norm", help="With --like: ‖r‖/‖θ‖ per tensor, e.g. 0.002.")
    ] = None,
    overwrite: Overwrite = False,
    overwrite_foreign: OverwriteForeign = False,
    as_json: AsJson = False,
) -> None:
    """Write a random control vector: same per-tensor norms as VECTOR, random direction (seeded).

    It answers whether gains come from v's direction or from any perturbation of that size.

    Examples:
      rvec control vec/ -o vec-random/ --seed 0
      rvec control --like smol/ --rel-norm 0.002 -o random-for-smol/
    """
    written = random_control(
        vector,
        output,
        like=like,
        rel_norm=rel_norm,
        seed=seed,
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
    )
    if as_json:
        print_json({"path": str(output), "seed": seed, "formula": written.manifest["formula"]})
    else:
        err.print(f"wrote {shown(output)} (random control, seed {seed})")


def register(app: typer.Typer) -> None:
    app.command("control")(control_command)
