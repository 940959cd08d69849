"""``rvec export-lora``: a vector as a PEFT LoRA adapter (its rank-R approximation), gaps listed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rvec.cli.options import AsJson, NoVerify, Output, Overwrite, OverwriteForeign, ShowProgress
from rvec.cli.output import byte_progress, err, out, print_json, shown
from rvec.vector.lora import UNEXPORTED_FILE, export_lora


def export_lora_command(
    vector: Annotated[Path, typer.Argument(help="Vector folder to export.")],
    rank: Annotated[int, typer.Option("--rank", help="LoRA rank R (each matrix: its rank-R truncated SVD).")],
    output: Output,
    overwrite: Overwrite = False,
    overwrite_foreign: OverwriteForeign = False,
    no_verify: NoVerify = False,
    progress: ShowProgress = True,
    as_json: AsJson = False,
) -> None:
    """Write a PEFT adapter (adapter_config.json + adapter_model.safetensors) that, merged, adds v's rank-R approximation.

    Linear and embedding matrices become LoRA modules (exact when the vector is already factored at
    rank ≤ R); tensors LoRA cannot carry (norm weights, biases) are printed and listed in
    rvec-unexported.json — apply the vector with rvec apply to include them.

    Example: rvec export-lora vec/ --rank 32 -o adapter/
      then: PeftModel.from_pretrained(model, "adapter/").merge_and_unload()
    """
    with byte_progress("export-lora", enabled=progress) as update:
        result = export_lora(
            vector,
            output,
            rank=rank,
            overwrite=overwrite,
            overwrite_foreign=overwrite_foreign,
            verify=not no_verify,
            on_progress=update,
        )
    if as_json:
        print_json(result.to_dict())
        return
    for item in result.unexported:
        out.print(
            f"not exported: {shown(item['tensor'])} {tuple(item['shape'])} — {shown(item['reason'])}",
            soft_wrap=True,
        )
    err.print(
        f"wrote {shown(output)}: {len(result.modules)} LoRA modules at rank {result.rank}, relative error "
        f"{result.relative_error:.4g}; {len(result.zero)} tensors exactly zero (no module needed); "
        f"{len(result.unexported)} tensors not exported "
        f"({100 * result.unexported_fraction:.3g}% of ‖v‖, listed in {shown(output / UNEXPORTED_FILE)})",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("export-lora")(export_lora_command)
