"""``rvec merge``: combine vectors with TIES, DARE, breadcrumbs, RAM or task arithmetic into one vector."""

from __future__ import annotations

from pathlib import Path

import typer

from rvec.cli._common import (
    byte_progress,
    err,
    no_verify_option,
    overwrite_foreign_option,
    overwrite_option,
    print_json,
)
from rvec.errors import InvalidArgumentError
from rvec.vector.merge import merge
from rvec.vector.methods import METHODS


def _floats(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise InvalidArgumentError(f"{flag} {text!r}: expected comma-separated numbers, e.g. 1,0.7") from None


def merge_command(
    vectors: list[Path] = typer.Argument(..., help="Vector folders to merge, in order."),
    output: Path = typer.Option(..., "-o", "--output", help="Merged vector folder to create."),
    method: str = typer.Option(..., "--method", help=f"One of: {', '.join(sorted(METHODS))}."),
    weights: str | None = typer.Option(
        None, "--weights", help="weight per vector, comma-separated (default 1 each)."
    ),
    densities: str | None = typer.Option(None, "--densities", help="density per vector, comma-separated."),
    density: float | None = typer.Option(None, "--density", help="One density for every vector."),
    gamma: float | None = typer.Option(None, "--gamma", help="breadcrumbs: fraction of largest |v| dropped."),
    epsilon: float | None = typer.Option(
        None, "--epsilon", help="ram: |v| at or below it counts as untouched."
    ),
    lam: float | None = typer.Option(None, "--lambda", help="Multiplies the merged delta (default 1)."),
    normalize: bool | None = typer.Option(
        None, "--normalize/--no-normalize", help="Divide by the weights' sum."
    ),
    rescale: bool | None = typer.Option(
        None, "--rescale/--no-rescale", help="Keep each vector's L1 norm after sparsifying."
    ),
    seed: int = typer.Option(0, "--seed", help="DARE's mask seed."),
    overwrite: bool = overwrite_option(),
    overwrite_foreign: bool = overwrite_foreign_option(),
    no_verify: bool = no_verify_option(),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Merge vectors the way mergekit's methods do (its parameter names and defaults); write one vector.

    Per-vector lists follow the order of the vectors. Parameters a method does not have are an error.
    The output is an ordinary vector folder (dense, or sparse where that is smaller): apply, eval
    --vector and stats read it; its rvec.json records the method, every parameter, the seed and
    each input's content hash.

    Examples:
      rvec merge a/ b/ --method ties --weights 1,0.7 --densities 0.5,0.3 -o ab/
      rvec merge a/ b/ --method dare_linear --density 0.1 --seed 7 -o ab-dare/
      rvec merge a/ b/ c/ --method ram -o abc/
    """
    if density is not None and densities is not None:
        raise InvalidArgumentError(
            "pass --density (one for every vector) or --densities (one per vector), not both"
        )
    named = {
        "density": density,
        "gamma": gamma,
        "epsilon": epsilon,
        "lambda": lam,
        "normalize": normalize,
        "rescale": rescale,
    }
    with byte_progress("merge", enabled=progress) as update:
        result = merge(
            vectors,
            output,
            method=method,
            weights=_floats(weights, "--weights"),
            densities=_floats(densities, "--densities"),
            params={k: v for k, v in named.items() if v is not None},
            seed=seed,
            overwrite=overwrite,
            overwrite_foreign=overwrite_foreign,
            verify=not no_verify,
            on_progress=lambda done, total: update(4 * done, 4 * total),
        )
    if as_json:
        print_json(result.to_dict())
        return
    kept = ", ".join(f"{100 * k:.2f}%" for k in result.kept_fraction)
    err.print(
        f"wrote {output}: {method} of {len(vectors)} vectors (kept per vector: {kept}); "
        f"{100 * result.nonzero_fraction:.2f}% of entries non-zero, {len(result.sparse)} tensors sparse",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("merge")(merge_command)
