"""The options several verbs share, defined once: the same flag has the same name, help and meaning
on every verb that has the notion.

Conventions every verb follows:

* A verb names its subject positionally: a model (``inspect``, ``eval``, ``convert``), vectors
  (``apply``, ``anatomy``, ``compress``, ``export-lora``, ``control``, ``merge``), a study (``run``,
  ``prefetch``, ``tune``), a run folder (``report``). A vector *added* to a model that is the subject
  is ``--vector`` (``eval``, ``check``).
* ``-o/--output`` is what the verb writes; ``--overwrite`` replaces an output rvec wrote,
  ``--overwrite-foreign`` anything else (never an input or a protected place).
* ``--json`` prints one JSON document on stdout for machines; everything for people goes to stderr.
* ``--progress/--no-progress`` shows a bar on stderr for anything long.
* ``--seed`` defaults to :data:`DEFAULT_SEED` everywhere; its help says what it seeds in that verb.
* ``--lineage/--no-lineage``: require (default) or skip the common-ancestry check.
* ``--device``, ``--dtype`` take the same values everywhere (``auto``; ``float32``/``fp32``,
  ``bfloat16``/``bf16``, ``float16``/``fp16``).

Example:
    >>> def command(output: Output, seed: EvalSeed = DEFAULT_SEED, as_json: AsJson = False) -> None: ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rvec.defaults import DEFAULT_SEED

__all__ = [
    "DEFAULT_SEED",
    "AllowPickle",
    "AsJson",
    "ControlSeed",
    "DareSeed",
    "DataDir",
    "Device",
    "Dtype",
    "EvalSeed",
    "Lineage",
    "MaxShardSize",
    "NoVerify",
    "OptionalOutput",
    "Output",
    "Overwrite",
    "OverwriteForeign",
    "ShowProgress",
    "TrainingSeed",
]


Output = Annotated[Path, typer.Option("-o", "--output", help="What to write (created atomically).")]
OptionalOutput = Annotated[Path | None, typer.Option("-o", "--output", help="Where to write results.")]
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace the output if rvec wrote it (it has an rvec.json). Never the working folder, "
        "its ancestors, home, a filesystem root, or a folder holding an input.",
    ),
]
OverwriteForeign = Annotated[
    bool,
    typer.Option(
        "--overwrite-foreign",
        help="Replace the output even if rvec did not write it (the same places stay protected).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout, for machines.")]
ShowProgress = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")
]
# --seed with what it seeds in each command (a bare "Random seed" left users guessing).
EvalSeed = Annotated[
    int,
    typer.Option(
        "--seed",
        help=f"Seeds sampling (--samples with --temperature/--top-p; one seed per request, so a rerun draws "
        f"the same responses) and the perturbations of --perturb (default {DEFAULT_SEED}).",
    ),
]
DareSeed = Annotated[
    int,
    typer.Option(
        "--seed",
        help=f"Seeds DARE's random masks: the same seed gives the same mask (default {DEFAULT_SEED}); "
        "recorded, unused, by the other methods.",
    ),
]
ControlSeed = Annotated[
    int, typer.Option("--seed", help=f"Seeds the control vector's random direction (default {DEFAULT_SEED}).")
]
TrainingSeed = Annotated[
    int,
    typer.Option(
        "--seed",
        help=f"Seeds training: data order, LoRA initialisation and GRPO sampling (default {DEFAULT_SEED}).",
    ),
]
Lineage = Annotated[
    bool,
    typer.Option(
        "--lineage/--no-lineage",
        help="Require the models to share an initialisation (a few weights compared); "
        "--no-lineage combines them anyway.",
    ),
]
NoVerify = Annotated[
    bool,
    typer.Option(
        "--no-verify",
        help="Use the vector without checking its shards against the sha256 in its rvec.json (and its family).",
    ),
]
Device = Annotated[str, typer.Option("--device", help="auto (cuda when available), cpu, cuda, cuda:1 ...")]
Dtype = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        help="float32 | bfloat16 | float16 (or fp32, bf16, fp16); see the verb's help for its default.",
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="RVEC_DATA_DIR",
        help="Local benchmark data (layout of shared/data); default: Hugging Face datasets.",
    ),
]
AllowPickle = Annotated[
    bool,
    typer.Option("--allow-pickle", help="Accept pickled .bin checkpoints (loaded with weights_only=True)."),
]
MaxShardSize = Annotated[
    str, typer.Option("--max-shard-size", help="Largest output shard, e.g. 2GB or 500MB.")
]
