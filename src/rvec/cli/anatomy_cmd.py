"""``rvec anatomy``: the structure of a vector — norms, moved entries, ranks, subspace overlaps, cosines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from rvec.cli.options import AsJson, NoVerify, OptionalOutput, Overwrite, OverwriteForeign, ShowProgress
from rvec.cli.output import byte_progress, err, out, print_json, shown
from rvec.vector.anatomy import DEFAULT_TOP_K, anatomy
from rvec.vector.anatomy_report import table_rows


def anatomy_command(
    vector: Annotated[Path, typer.Argument(help="Vector folder.")],
    like: Annotated[
        str | None,
        typer.Option(
            "--like", help="θ: a checkpoint of the vector's family (folder or hub id), e.g. the target."
        ),
    ] = None,
    compare: Annotated[
        Path | None,
        typer.Option(
            "--compare", help="Second vector (e.g. the SFT delta): cosines per tensor, layer, class, overall."
        ),
    ] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Dimension of the compared singular subspaces.")
    ] = DEFAULT_TOP_K,
    svd: Annotated[
        bool, typer.Option("--svd/--no-svd", help="Compute effective ranks and subspace overlaps.")
    ] = True,
    output: OptionalOutput = None,
    overwrite: Overwrite = False,
    overwrite_foreign: OverwriteForeign = False,
    as_json: AsJson = False,
    no_verify: NoVerify = False,
    progress: ShowProgress = True,
) -> None:
    """Per tensor, layer, module class and overall: ‖v‖/‖θ‖, the fraction of entries v moves beyond
    float32 rounding of θ, effective and 90%-energy rank, overlap of v's top-k singular subspaces with
    θ's (beside a random subspace's k/m), cosine with --compare. Definitions: docs/anatomy.md.

    Without --like, relative norms use ‖θ_SFT‖ recorded in rvec.json; moved fractions and overlaps
    need --like. Without --like, --compare and SVD (--no-svd), only rvec.json is read.

    Examples:
      rvec anatomy vec/ --like Qwen/Qwen2.5-0.5B-Instruct -o anatomy/
      rvec anatomy vec/ --compare sft-delta/ --no-svd
    """
    with byte_progress("anatomy", enabled=progress) as update:
        result = anatomy(
            vector,
            like=like,
            compare=compare,
            top_k=top_k,
            svd=svd,
            out=output,
            overwrite=overwrite,
            overwrite_foreign=overwrite_foreign,
            verify=not no_verify,
            on_progress=lambda done, total: update(4 * done, 4 * total),
        )
    data = result.to_dict()
    if as_json:
        print_json(data)
    elif output is None:
        _print(data)
    if output is not None and not as_json:
        err.print(f"wrote {shown(output)}: anatomy.json, anatomy.md and heat maps", soft_wrap=True)


def _print(data: dict[str, Any]) -> None:
    for title, groups in (("module class", data["per_module"]), ("layer", data["per_layer"])):
        headers, rows = table_rows(groups)
        table = Table(title, *headers)
        for row in rows:
            table.add_row(*(shown(c) for c in row))
        out.print(table)
    headers, (row,) = table_rows({"all": data["overall"]})
    out.print(
        "overall: " + ", ".join(f"{shown(h)} {shown(c)}" for h, c in zip(headers, row[1:], strict=True)),
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("anatomy")(anatomy_command)
