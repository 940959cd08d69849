"""``rvec stats``: norms of a vector, cosine with another, plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from rvec.cli.options import AsJson, NoVerify
from rvec.cli.output import err, out, print_json, shown
from rvec.vector.encodings import storage_label
from rvec.vector.stats import VectorStats, stats_report


def stats_command(
    vector: Annotated[Path, typer.Argument(help="Vector folder.")],
    compare: Annotated[
        Path | None,
        typer.Option("--compare", help="Second vector: cosine similarity overall, per layer, per tensor."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG of per-layer norms by module type.")
    ] = None,
    top: Annotated[
        int, typer.Option("--top", help="Show the N tensors with the largest relative norm.")
    ] = 10,
    as_json: AsJson = False,
    no_verify: NoVerify = False,
) -> None:
    """Per-tensor and per-layer norms, module-type breakdown, cosine between vectors, PNG plot.

    Norms come from rvec.json (recorded exactly for every encoding), after the shards are checked
    against their recorded sha256 (--no-verify skips that).

    Example: rvec stats vec/ --compare vec2/ --plot norms.png
    """
    stats, cos = stats_report(vector, compare=compare, plot=plot, verify=not no_verify)
    if plot:
        err.print(f"wrote {shown(plot)}")
    if as_json:
        print_json({**stats.to_dict(), **({"cosine": cos} if cos else {})})
    else:
        _print(stats, cos, vector=vector, compare=compare, top=top)


def _print(
    stats: VectorStats, cos: dict[str, Any] | None, *, vector: Path, compare: Path | None, top: int
) -> None:
    out.print(f"‖v‖ = {stats.total_norm:.6g} over {len(stats.per_tensor)} tensors ({stats.storage})")
    modules = Table("module", "‖v‖")
    for m, n in sorted(stats.per_module.items()):
        modules.add_row(shown(m), f"{n:.6g}")
    out.print(modules)
    layers = Table("layer", "‖v‖", *(("cosine",) if cos else ()))
    for layer, n in sorted(stats.per_layer.items()):
        layers.add_row(
            str(layer), f"{n:.6g}", *((f"{cos['per_layer'].get(str(layer), 0.0):.4f}",) if cos else ())
        )
    out.print(layers)
    # ‖v‖/‖θ_SFT‖ ranks tensors of different sizes fairly; vectors written without the SFT lack it.
    key = "rel_norm" if all(r["rel_norm"] is not None for r in stats.per_tensor.values()) else "norm"
    biggest = sorted(stats.per_tensor.items(), key=lambda kv: -kv[1][key])[:top]
    tensors = Table("tensor", "‖v‖", "‖v‖/‖θ_SFT‖", "zeros", "stored")
    for name, rec in biggest:
        rel = "–" if rec["rel_norm"] is None else f"{rec['rel_norm']:.4g}"
        tensors.add_row(
            shown(name), f"{rec['norm']:.4g}", rel, f"{100 * rec['zero_fraction']:.2f}%", storage_label(rec)
        )
    out.print(tensors)
    if cos:
        out.print(f"cosine({shown(vector)}, {shown(compare)}) = {cos['overall']:.6f}")


def register(app: typer.Typer) -> None:
    app.command("stats")(stats_command)
