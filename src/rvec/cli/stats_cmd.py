"""``rvec stats``: norms of a vector, cosine with another, plot."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rvec.cli._common import err, out, print_json
from rvec.outputs import check_output_file
from rvec.vector.artifact import read_vector
from rvec.vector.stats import cosine, plot_norms, vector_stats


def stats_command(
    vector: Path = typer.Argument(..., help="Vector folder."),
    compare: Path | None = typer.Option(
        None, "--compare", help="Second vector: cosine similarity overall, per layer, per tensor."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG of per-layer norms by module type."),
    top: int = typer.Option(10, "--top", help="Show the N tensors with the largest relative norm."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """Per-tensor and per-layer norms, module-type breakdown, cosine between vectors, PNG plot.

    Example: rvec stats vec/ --compare vec2/ --plot norms.png
    """
    if plot:
        check_output_file(plot, inputs=[vector, *([compare] if compare else [])])
    vec = read_vector(vector)
    stats = vector_stats(vec)
    cos = cosine(vec, read_vector(compare)) if compare else None
    if plot:
        panels = [(str(vector), stats)] + (
            [(str(compare), vector_stats(read_vector(compare)))] if compare else []
        )
        plot_norms(panels, plot)
        err.print(f"wrote {plot}")
    if as_json:
        print_json({**stats.to_dict(), **({"cosine": cos} if cos else {})})
        return
    out.print(f"‖v‖ = {stats.total_norm:.6g} over {len(stats.per_tensor)} tensors")
    modules = Table("module", "‖v‖")
    for m, n in sorted(stats.per_module.items()):
        modules.add_row(m, f"{n:.6g}")
    out.print(modules)
    layers = Table("layer", "‖v‖", *(("cosine",) if cos else ()))
    for layer, n in sorted(stats.per_layer.items()):
        layers.add_row(
            str(layer), f"{n:.6g}", *((f"{cos['per_layer'].get(str(layer), 0.0):.4f}",) if cos else ())
        )
    out.print(layers)
    biggest = sorted(stats.per_tensor.items(), key=lambda kv: -kv[1]["rel_norm"])[:top]
    tensors = Table("tensor", "‖v‖", "‖v‖/‖θ_SFT‖", "zeros")
    for name, rec in biggest:
        tensors.add_row(
            name, f"{rec['norm']:.4g}", f"{rec['rel_norm']:.4g}", f"{100 * rec['zero_fraction']:.2f}%"
        )
    out.print(tensors)
    if cos:
        out.print(f"cosine({vector}, {compare}) = {cos['overall']:.6f}")


def register(app: typer.Typer) -> None:
    app.command("stats")(stats_command)
