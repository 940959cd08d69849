"""``rvec extract``: v = θ_RL − θ_SFT in float32, to a vector folder."""

from __future__ import annotations

from typing import Annotated

import typer

from rvec.checkpoint.writer import parse_size
from rvec.cli.options import (
    AllowPickle,
    AsJson,
    Lineage,
    MaxShardSize,
    Output,
    Overwrite,
    OverwriteForeign,
    ShowProgress,
)
from rvec.cli.output import byte_progress, err, print_json, shown
from rvec.vector.extract import extract


def extract_command(
    sft: Annotated[str, typer.Option("--sft", help="SFT donor: folder or hub id[@rev].")],
    rl: Annotated[str, typer.Option("--rl", help="RL donor (GRPO) trained from the SFT.")],
    output: Output,
    overwrite: Overwrite = False,
    overwrite_foreign: OverwriteForeign = False,
    lineage: Lineage = True,
    allow_pickle: AllowPickle = False,
    max_shard_size: MaxShardSize = "4GB",
    progress: ShowProgress = True,
    as_json: AsJson = False,
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
            lineage=lineage,
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
        err.print(f"wrote {shown(output)}: {len(tensors)} tensors, ‖v‖ = {total:.6g}")


def register(app: typer.Typer) -> None:
    app.command("extract")(extract_command)
