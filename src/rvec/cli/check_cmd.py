"""``rvec check``: compatibility and lineage verdict before any output is written."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rvec.cli.options import AsJson, Lineage
from rvec.cli.output import out, print_json, shown
from rvec.vector.apply_plan import check_compatibility
from rvec.vector.compat import CheckReport
from rvec.vector.embeddings import parse_policy


def check_command(
    sft: Annotated[str | None, typer.Option("--sft", help="SFT donor: folder, hub id[@rev].")] = None,
    rl: Annotated[str | None, typer.Option("--rl", help="RL donor (GRPO), trained from the SFT.")] = None,
    vector: Annotated[
        Path | None, typer.Option("--vector", help="An extracted vector folder instead of --sft/--rl.")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="Target model to add the vector to.")] = None,
    embeddings: Annotated[
        str | None,
        typer.Option("--embeddings", help="Policy when vocabularies differ: apply, skip, overlap."),
    ] = None,
    lineage: Lineage = True,
    as_json: AsJson = False,
) -> None:
    """Verdict: compatible / compatible-with-policy / incompatible, with every reason.

    Compares architecture, sizes, heads, vocabulary, rope settings, tied embeddings, tensor names and
    shapes from config.json and safetensors headers; then (when weights are local) cosine and relative
    distance on three weight matrices: cosine ≥ 0.95 same lineage, ≥ 0.5 distant relative (warning),
    below that unrelated (incompatible). Exit code 1 when incompatible.

    Example: rvec check --sft org/m-sft --rl org/m-grpo --to org/m-instruct
    """
    report = check_compatibility(
        sft=sft, rl=rl, vector=vector, target=to, embeddings=parse_policy(embeddings), lineage=lineage
    )
    if as_json:
        print_json(report.to_dict())
    else:
        _print(report)
    if report.verdict == "incompatible":
        raise typer.Exit(1)


def _print(report: CheckReport) -> None:
    colour = {"compatible": "green", "compatible-with-policy": "yellow", "incompatible": "red"}[
        report.verdict
    ]
    out.print(f"verdict: [bold {colour}]{report.verdict}[/]")
    for p in report.problems:
        out.print(f"  ✗ {shown(p)}")
    for p in report.policies:
        out.print(f"  policy: {shown(p)}")
    for w in report.warnings:
        out.print(f"  warning: {shown(w)}")
    for probe in report.lineage:
        out.print(
            f"  lineage {shown(probe.pair)}: {shown(probe.tensor)} cosine {probe.cosine:.4f}, "
            f"relative distance {probe.rel_distance:.4f}"
        )


def register(app: typer.Typer) -> None:
    app.command("check")(check_command)
