"""``rvec check``: compatibility and lineage verdict before any output is written."""

from __future__ import annotations

from pathlib import Path

import typer

from rvec.checkpoint.source import resolve
from rvec.cli._common import out, print_json
from rvec.errors import IncompatibleError, InvalidArgumentError
from rvec.vector.apply import check_sources
from rvec.vector.artifact import read_vector
from rvec.vector.compat import CheckReport, check
from rvec.vector.embeddings import parse_policy


def check_command(
    sft: str | None = typer.Option(None, "--sft", help="SFT donor: folder, hub id[@rev]."),
    rl: str | None = typer.Option(None, "--rl", help="RL donor (GRPO), trained from the SFT."),
    vector: Path | None = typer.Option(
        None, "--vector", help="An extracted vector folder instead of --sft/--rl."
    ),
    to: str | None = typer.Option(None, "--to", help="Target model to add the vector to."),
    embeddings: str | None = typer.Option(
        None, "--embeddings", help="Policy when vocabularies differ: apply, skip, overlap."
    ),
    lineage: bool = typer.Option(
        True, "--lineage/--no-lineage", help="Compare a few weights to test common ancestry."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """Verdict: compatible / compatible-with-policy / incompatible, with every reason.

    Compares architecture, sizes, heads, vocabulary, rope settings, tied embeddings, tensor names and
    shapes from config.json and safetensors headers; then (when weights are local) cosine and relative
    distance on three weight matrices: cosine ≥ 0.95 same lineage, ≥ 0.5 distant relative (warning),
    below that unrelated (incompatible). Exit code 1 when incompatible.

    Example: rvec check --sft org/m-sft --rl org/m-grpo --to org/m-instruct
    """
    policy = parse_policy(embeddings)
    if vector is not None:
        if sft or rl or not to:
            raise InvalidArgumentError("--vector needs --to and excludes --sft/--rl")
        try:
            report = check_sources(
                [read_vector(vector)], resolve(to), embeddings=policy, skip_lineage=not lineage
            )[0]
        except IncompatibleError as err:
            report = CheckReport(problems=err.problems)
    else:
        if not (sft and rl):
            raise InvalidArgumentError("pass --sft and --rl (and usually --to), or --vector VEC --to TARGET")
        target = resolve(to, weights=False) if to else None
        report = check(
            resolve(sft, weights=False), resolve(rl, weights=False), target, policy=policy, lineage=lineage
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
        out.print(f"  ✗ {p}")
    for p in report.policies:
        out.print(f"  policy: {p}")
    for w in report.warnings:
        out.print(f"  warning: {w}")
    for probe in report.lineage:
        out.print(
            f"  lineage {probe.pair}: {probe.tensor} cosine {probe.cosine:.4f}, relative distance {probe.rel_distance:.4f}"
        )


def register(app: typer.Typer) -> None:
    app.command("check")(check_command)
