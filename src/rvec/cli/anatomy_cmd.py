"""``rvec anatomy``: the structure of a vector — norms, moved entries, ranks, subspace overlaps, cosines."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rvec.cli._common import (
    err,
    no_verify_option,
    out,
    overwrite_foreign_option,
    overwrite_option,
    print_json,
)
from rvec.progress import ProgressBar
from rvec.vector.anatomy import DEFAULT_TOP_K, anatomy
from rvec.vector.anatomy_report import table_rows


def anatomy_command(
    vector: Path = typer.Argument(..., help="Vector folder."),
    like: str | None = typer.Option(
        None, "--like", help="θ: a checkpoint of the vector's family (folder or hub id), e.g. the target."
    ),
    compare: Path | None = typer.Option(
        None,
        "--compare",
        help="Second vector (e.g. the SFT delta): cosines per tensor, layer, class, overall.",
    ),
    top_k: int = typer.Option(DEFAULT_TOP_K, "--top-k", help="Dimension of the compared singular subspaces."),
    svd: bool = typer.Option(True, "--svd/--no-svd", help="Compute effective ranks and subspace overlaps."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Folder to write: anatomy.json, anatomy.md, heat maps."
    ),
    overwrite: bool = overwrite_option(),
    overwrite_foreign: bool = overwrite_foreign_option(),
    as_json: bool = typer.Option(False, "--json", help="Print anatomy.json on stdout."),
    no_verify: bool = no_verify_option(),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
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
    with ProgressBar("anatomy", unit="bytes", enabled=progress, transient=True) as bar:
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
            on_progress=lambda done, total: bar.update(4 * done, 4 * total),
        )
    data = result.to_dict()
    if as_json:
        print_json(data)
    elif output is None:
        for title, groups in (("module class", data["per_module"]), ("layer", data["per_layer"])):
            headers, rows = table_rows(groups)
            table = Table(title, *headers)
            for row in rows:
                table.add_row(*row)
            out.print(table)
        headers, (row,) = table_rows({"all": data["overall"]})
        out.print(
            "overall: " + ", ".join(f"{h} {c}" for h, c in zip(headers, row[1:], strict=True)), soft_wrap=True
        )
    if output is not None:
        err.print(f"wrote {output}: anatomy.json, anatomy.md and heat maps", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("anatomy")(anatomy_command)
