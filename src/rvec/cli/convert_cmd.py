"""``rvec convert``: GGUF → Hugging Face folder (dequantized)."""

from __future__ import annotations

from pathlib import Path

import typer

from rvec.checkpoint.gguf import convert
from rvec.cli._common import err
from rvec.errors import SourceNotFoundError
from rvec.vector.apply import parse_dtype


def convert_command(
    gguf_file: Path = typer.Argument(..., help="The .gguf checkpoint."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder to create."),
    dtype: str = typer.Option(
        "float32", "--dtype", help="Dtype of the written weights: float32, bfloat16, float16."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output folder if it exists."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Dequantize a GGUF checkpoint into a Hugging Face folder: safetensors, config, tokenizer, chat template.

    Tied embeddings stay tied. Example: rvec convert SmolLM2-135M-Instruct.Q4_1.gguf -o smol/
    """
    if not gguf_file.is_file():
        raise SourceNotFoundError(f"{gguf_file}: no such file", source=str(gguf_file))
    convert(gguf_file, output, dtype=parse_dtype(dtype) or "float32", overwrite=overwrite, progress=progress)
    err.print(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_command)
