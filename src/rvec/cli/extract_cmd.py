"""``rvec extract``: v = θ_RL − θ_SFT in float32, to a vector folder."""

from __future__ import annotations

from pathlib import Path

import typer

from rvec.checkpoint.writer import parse_size
from rvec.cli._common import (
    byte_progress,
    err,
    overwrite_foreign_option,
    overwrite_option,
    print_json,
)
from rvec.vector.extract import extract


def extract_command(
    sft: str = typer.Option(..., "--sft", help="SFT donor: folder or hub id[@rev]."),
    rl: str = typer.Option(..., "--rl", help="RL donor (GRPO) trained from the SFT."),
    output: Path = typer.Option(..., "-o", "--output", help="Vector folder to create."),
    overwrite: bool = overwrite_option(),
    overwrite_foreign: bool = overwrite_foreign_option(),
    skip_lineage: bool = typer.Option(
        False, "--skip-lineage", help="Extract even if the donors look unrelated."
    ),
    allow_pickle: bool = typer.Option(
        False, "--allow-pickle", help="Accept pickled .bin donors (loaded with weights_only=True)."
    ),
    max_shard_size: str = typer.Option("4GB", "--max-shard-size", help="Largest shard, e.g. 2GB or 500MB."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest summary as JSON."),
) -> None:
    """Extract the reasoning vector v = θ_RL − θ_SFT (float32, streamed, sharded) with rvec.json and README.md.

    Checks compatibility and lineage first; writes nothing if they fail.

    Example: rvec extract --sft org/m-sft --rl org/m-grpo -o vec/
    """
    with byte_progress("extract", enabled=progress) as update:
        vector = extract(
            sft,
            rl,
            output,
            overwrite=overwrite,
            overwrite_foreign=overwrite_foreign,
            skip_lineage=skip_lineage,
            allow_pickle=allow_pickle,
            max_shard_bytes=parse_size(max_shard_size),
            on_progress=update,
        )
    tensors = vector.manifest["tensors"]
    total = sum(t["norm"] ** 2 for t in tensors.values()) ** 0.5
    if as_json:
        print_json(
            {"path": str(output), "tensors": len(tensors), "norm": total, "files": vector.manifest["files"]}
        )
    else:
        err.print(f"wrote {output}: {len(tensors)} tensors, ‖v‖ = {total:.6g}")


def register(app: typer.Typer) -> None:
    app.command("extract")(extract_command)
