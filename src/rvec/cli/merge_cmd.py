"""``rvec merge``: combine vectors with TIES, DARE, breadcrumbs, RAM or task arithmetic into one vector."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
from rvec.cli.output import byte_progress, err, print_json, shown
from rvec.errors import InvalidArgumentError
from rvec.vector.merge import merge
from rvec.vector.methods import METHODS

Opt = typer.Option


def merge_command(
    vectors: Annotated[list[Path], typer.Argument(help="Vector folders to merge, in order.")],
    output: Output,
    method: Annotated[str, Opt("--method", help=f"One of: {', '.join(sorted(METHODS))}.")],
    weights: Annotated[
        str | None, Opt("--weights", help="weight per vector, comma-separated (default 1 each).")
    ] = None,
    densities: Annotated[str | None, Opt("--densities", help="density per vector, comma-separated.")] = None,
    density: Annotated[float | None, Opt("--density", help="One density for every vector.")] = None,
    gamma: Annotated[
        float | None, Opt("--gamma", help="breadcrumbs: fraction of largest |v| dropped.")
    ] = None,
    epsilon: Annotated[
        float | None, Opt("--epsilon", help="ram: |v| at or below it counts as untouched.")
    ] = None,
    lam: Annotated[float | None, Opt("--lambda", help="Multiplies the merged delta (default 1).")] = None,
    normalize: Annotated[
        bool | None, Opt("--normalize/--no-normalize", help="Divide by the weights' sum.")
    ] = None,
    rescale: Annotated[
        bool | None, Opt("--rescale/--no-rescale", help="Keep each vector's L1 norm after sparsifying.")
    ] = None,
    seed: DareSeed = DEFAULT_SEED,
    overwrite: Overwrite = False,
    overwrite_foreign: OverwriteForeign = False,
    no_verify: NoVerify = False,
    progress: ShowProgress = True,
    as_json: AsJson = False,
) -> None:
    """Merge vectors the way mergekit's methods do (its parameter names and defaults); write one vector.

    Per-vector lists follow the order of the vectors. Parameters a method does not have are an error.
    The output is an ordinary vector folder (dense, or sparse where that is smaller): apply, eval
    --vector and anatomy read it; its rvec.json records the method, every parameter, the seed and
    each input's content hash. docs/merging.md has the methods and their parameters.

    Examples:
      rvec merge a/ b/ --method ties --weights 1,0.7 --densities 0.5,0.3 -o ab/
      rvec merge a/ b/ --method dare_linear --density 0.1 --seed 7 -o ab-dare/
      rvec merge a/ b/ c/ --method ram -o abc/
    """
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
        f"wrote {shown(output)}: {shown(method)} of {len(vectors)} vectors (kept per vector: {kept}); "
        f"{100 * result.nonzero_fraction:.2f}% of entries non-zero, {len(result.sparse)} tensors sparse",
        soft_wrap=True,
    )


def _floats(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise InvalidArgumentError(f"{flag} {text!r}: expected comma-separated numbers, e.g. 1,0.7") from None


def register(app: typer.Typer) -> None:
    app.command("merge")(merge_command)
