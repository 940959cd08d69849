"""``rvec inspect``: family fingerprint and tensor table, from headers only."""

from __future__ import annotations

from collections import Counter

import typer
from rich.table import Table

from rvec.checkpoint.gguf import gguf_tensors
from rvec.checkpoint.source import resolve
from rvec.cli._common import out, print_json
from rvec.vector.family import family_fingerprint


def inspect(
    source: str = typer.Argument(..., help="Model folder, hub id[@revision], or .gguf file."),
    tensors: bool = typer.Option(True, "--tensors/--no-tensors", help="List every tensor."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """Show a checkpoint's family fingerprint and tensor table without reading any weights.

    Example: rvec inspect Qwen/Qwen2.5-1.5B-Instruct@main --no-tensors
    """
    ckpt = resolve(source, weights=False)
    fingerprint = family_fingerprint(ckpt.config)
    if ckpt.gguf_file is not None:
        rows = gguf_tensors(ckpt.gguf_file)
    else:
        rows = [
            {
                "name": t.name,
                "dtype": t.dtype_name,
                "shape": list(t.shape),
                "numel": t.numel,
                "file": t.file.name,
            }
            for t in ckpt.index
        ]
    if as_json:
        print_json(
            {
                "source": ckpt.describe(hash_files=False),
                "family": fingerprint,
                "tensors": rows if tensors else len(rows),
            }
        )
        return
    out.print(f"[bold]{ckpt.display}[/] ({ckpt.kind})")
    for key, value in fingerprint.items():
        out.print(f"  {key}: {value}")
    dtypes = Counter(r["dtype"] for r in rows)
    params = sum(r["numel"] for r in rows)
    out.print(f"{len(rows)} tensors, {params / 1e6:.2f}M parameters, dtypes: {dict(dtypes)}")
    if tensors:
        table = Table("tensor", "dtype", "shape", *(("file",) if rows and "file" in rows[0] else ()))
        for r in rows:
            table.add_row(
                r["name"], r["dtype"], "×".join(map(str, r["shape"])), *((r["file"],) if "file" in r else ())
            )
        out.print(table)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
