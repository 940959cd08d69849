"""``rvec run``, ``rvec report``, ``rvec prefetch``: the study commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rvec.cli.options import AsJson, DataDir, OptionalOutput, ShowProgress
from rvec.cli.output import err, out, print_json, shown


def run_command(
    study: Annotated[Path, typer.Argument(help="study.yaml (see studies/ for shipped ones).")],
    output: OptionalOutput = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run; finished cells are not redone.")
    ] = False,
    progress: ShowProgress = True,
    data_dir: DataDir = None,
    backend: Annotated[
        str | None,
        typer.Option("--backend", help="Replace the study's backend.name: hf or vllm (docs/vllm.md)."),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option("--replicas", help="vllm: engines run side by side as Ray actors (default 1)."),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="vllm: join this Ray cluster (auto, ray://head:10001) for multi-node runs."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Run a whole study — extract, apply in memory, evaluate every cell, report with statistics and plots.

    The config is validated whole before any work; every cell is cached by content, so --resume after
    Ctrl-C or a crash redoes nothing finished. Models listed under `models:` (a base plus vectors, e.g.
    donors rebuilt from a pair's shipped files) are made once in the run folder first. -o defaults to
    the study's `output:`, else runs/<name>; those two stay inside the working folder (only -o may
    point elsewhere), and nothing is created before every model and vector the study names resolves.

    Examples:
      rvec run studies/demo.yaml -o runs/demo/
      rvec run studies/paper-qwen2.5-7b.yaml --backend vllm --replicas 8 --ray-address auto
    """
    from rvec.study.runner import run_study_file

    run = run_study_file(
        study,
        output,
        resume=resume,
        progress=progress,
        data_dir=data_dir,
        backend=backend,
        engine={"replicas": replicas, "ray_address": ray_address},
    )
    report = run.out_dir / "report.md"
    if as_json:
        print_json(
            {"run": str(run.out_dir), "computed": run.computed, "cached": run.cached, "report": str(report)}
        )
    else:
        err.print(f"{run.computed} cells computed, {run.cached} from cache; report: {shown(report)}")


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by rvec run.")],
    as_json: AsJson = False,
) -> None:
    """Re-render report.md, results.json, results.csv and plots from a run folder's cached cells.

    Example: rvec report runs/demo/
    """
    from rvec.study.reporting import render_run

    written = sorted(str(p) for p in render_run(run_dir))
    if as_json:
        print_json({"written": written})
    else:
        err.print(f"wrote {', '.join(shown(p) for p in written)}")


def prefetch_command(
    study: Annotated[Path, typer.Argument(help="study.yaml")],
    as_json: AsJson = False,
) -> None:
    """Download every model and dataset a study needs, for an offline run later.

    Example: rvec prefetch studies/paper-qwen2.5-1.5b.yaml
    """
    from rvec.study.config import load_study  # pydantic: 0.1 s that other commands need not pay
    from rvec.study.prefetch import prefetch

    fetched = prefetch(
        load_study(study), on_item=None if as_json else lambda item: out.print(f"fetched {shown(item)}")
    )
    if as_json:
        print_json({"fetched": fetched})


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("report")(report_command)
    app.command("prefetch")(prefetch_command)
