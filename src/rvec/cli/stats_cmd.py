"""``rvec stats``: norms of a vector, cosine with another, plot."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rvec.cli._common import err, no_verify_option, out, print_json
from rvec.outputs import check_output_file
from rvec.vector.artifact import read_vector
from rvec.vector.encodings import storage_label
from rvec.vector.stats import cosine, plot_norms, vector_stats


def stats_command(
    vector: Path = typer.Argument(..., help="Vector folder."),
    compare: Path | None = typer.Option(
        None, "--compare", help="Second vector: cosine similarity overall, per layer, per tensor."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG of per-layer norms by module type."),
    top: int = typer.Option(10, "--top", help="Show the N tensors with the largest relative norm."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    no_verify: bool = no_verify_option(),
) -> None:
    """Per-tensor and per-layer norms, module-type breakdown, cosine between vectors, PNG plot.

    Norms come from rvec.json (recorded exactly for every encoding), after the shards are checked
    against their recorded sha256 (--no-verify skips that).

    Example: rvec stats vec/ --compare vec2/ --plot norms.png
    """
    if plot:
        check_output_file(plot, inputs=[vector, *([compare] if compare else [])])
    vec = read_vector(vector, verify=not no_verify)
    stats = vector_stats(vec)
    other = read_vector(compare, verify=not no_verify) if compare else None
    cos = cosine(vec, other) if other else None
    if plot:
        panels = [(str(vector), stats.to_dict())] + (
            [(str(compare), vector_stats(other).to_dict())] if other else []
        )
        plot_norms(panels, plot)
        err.print(f"wrote {plot}")
    if as_json:
        print_json({**stats.to_dict(), **({"cosine": cos} if cos else {})})
        return
    out.print(f"‖v‖ = {stats.total_norm:.6g} over {len(stats.per_tensor)} tensors ({stats.storage})")
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
    # ‖v‖/‖θ_SFT‖ ranks tensors of different sizes fairly; vectors written without the SFT lack it.
    key = "rel_norm" if all(r["rel_norm"] is not None for r in stats.per_tensor.values()) else "norm"
    biggest = sorted(stats.per_tensor.items(), key=lambda kv: -kv[1][key])[:top]
    tensors = Table("tensor", "‖v‖", "‖v‖/‖θ_SFT‖", "zeros", "stored")
    for name, rec in biggest:
        rel = "–" if rec["rel_norm"] is None else f"{rec['rel_norm']:.4g}"
        tensors.add_row(
            name, f"{rec['norm']:.4g}", rel, f"{100 * rec['zero_fraction']:.2f}%", storage_label(rec)
        )
    out.print(tensors)
    if cos:
        out.print(f"cosine({vector}, {compare}) = {cos['overall']:.6f}")


def register(app: typer.Typer) -> None:
    app.command("stats")(stats_command)
