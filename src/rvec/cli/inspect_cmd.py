"""``rvec inspect``: family fingerprint and tensor table, from headers only."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import typer
from rich.table import Table

from rvec.checkpoint.source import describe_tensors, resolve
from rvec.cli.options import AsJson
from rvec.cli.output import out, print_json, shown
from rvec.vector.family import family_signature


def inspect_command(
    source: Annotated[
        str, typer.Argument(help="Model folder, hub id[@revision], .gguf or pkg:MODULE/FILE.gguf.")
    ],
    tensors: Annotated[bool, typer.Option("--tensors/--no-tensors", help="List every tensor.")] = True,
    as_json: AsJson = False,
) -> None:
    """Show a checkpoint's family (architecture, sizes, vocabulary, tied embeddings) and tensor table
    without reading any weights.

    Example: rvec inspect Qwen/Qwen2.5-1.5B-Instruct@main --no-tensors
    """
    ckpt = resolve(source, weights=False)
    family = family_signature(ckpt.config)
    rows = describe_tensors(ckpt)
    if as_json:
        print_json(
            {
                "source": ckpt.describe(hash_files=False),
                "family": family,
                "tensors": rows if tensors else len(rows),
            }
        )
        return
    out.print(f"[bold]{shown(ckpt.display)}[/] ({ckpt.kind})")
    for key, value in family.items():
        out.print(f"  {shown(key)}: {shown(value)}")
    dtypes = Counter(r["dtype"] for r in rows)
    params = sum(r["numel"] for r in rows)
    out.print(f"{len(rows)} tensors, {params / 1e6:.2f}M parameters, dtypes: {shown(dict(dtypes))}")
    if tensors:
        out.print(_table(rows))


def _table(rows: list[dict[str, Any]]) -> Table:
    with_file = bool(rows) and "file" in rows[0]
    table = Table("tensor", "dtype", "shape", *(("file",) if with_file else ()))
    for r in rows:
        shape = "×".join(map(str, r["shape"]))
        table.add_row(shown(r["name"]), shown(r["dtype"]), shape, *((shown(r["file"]),) if with_file else ()))
    return table


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
