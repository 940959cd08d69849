"""``rvec run``, ``rvec report``, ``rvec prefetch``: the study commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from rvec.cli._common import data_dir_option, err, out


def run_command(
    study: Path = typer.Argument(..., help="study.yaml (see studies/ for shipped ones)."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Run folder (default: the study's `output`, else runs/<name>)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted run; finished cells are not redone."
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show progress over the whole matrix."
    ),
    data_dir: Path | None = data_dir_option(),
    backend: str | None = typer.Option(
        None, "--backend", help="Replace the study's backend.name: hf or vllm (docs/vllm.md)."
    ),
    replicas: int | None = typer.Option(
        None, "--replicas", help="vllm: engines run side by side as Ray actors (default 1)."
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="vllm: join this Ray cluster (auto, ray://head:10001) for multi-node runs.",
    ),
) -> None:
    """Run a whole study — extract, apply in memory, evaluate every cell, report with statistics and plots.

    The config is validated whole before any work; every cell is cached by content, so --resume after
    Ctrl-C or a crash redoes nothing finished. Models listed under `models:` (a base plus vectors, e.g.
    donors rebuilt from a pair's shipped files) are made once in the run folder first.

    Examples:
      rvec run studies/demo.yaml -o runs/demo/
      rvec run studies/paper-qwen2.5-7b.yaml --backend vllm --replicas 8 --ray-address auto
    """
    from rvec.study.config import load_study  # pydantic: 0.1 s that other commands need not pay
    from rvec.study.runner import run_study

    config = load_study(study)
    if data_dir is not None:
        config = config.model_copy(update={"data_dir": str(data_dir)})
    config = with_backend(config, backend, {"replicas": replicas, "ray_address": ray_address})
    folder = output or Path(config.output or f"runs/{config.name}")
    run = run_study(config, folder, config_text=study.read_text(), resume=resume, progress=progress)
    err.print(f"{run.computed} cells computed, {run.cached} from cache; report: {folder / 'report.md'}")


def with_backend(config: Any, name: str | None, overrides: dict[str, Any]) -> Any:
    """The study config with ``--backend`` and the given engine flags applied to its ``backend:``
    (kept when the name stays the same, replaced when it changes)."""
    from rvec.model.registry import parse_backend_settings

    given = {k: v for k, v in overrides.items() if v is not None}
    if name is None and not given:
        return config
    current = config.backend.model_dump()
    name = name or current["name"]
    base = current if name == current["name"] else {}
    settings = parse_backend_settings({**base, "name": name, **given})
    return config.model_copy(update={"backend": settings})


def report_command(run_dir: Path = typer.Argument(..., help="A run folder written by rvec run.")) -> None:
    """Re-render report.md, results.json, results.csv and plots from a run folder's cached cells.

    Example: rvec report runs/demo/
    """
    from rvec.study.reporting import render_run

    written = render_run(run_dir)
    err.print(f"wrote {', '.join(sorted(str(p) for p in written))}")


def prefetch_command(study: Path = typer.Argument(..., help="study.yaml")) -> None:
    """Download every model and dataset a study needs, for an offline run later.

    Example: rvec prefetch studies/paper-qwen2.5-1.5b.yaml
    """
    from rvec.study.config import load_study  # pydantic: 0.1 s that other commands need not pay
    from rvec.study.prefetch import prefetch

    config = load_study(study)
    prefetch(config, on_item=lambda item: out.print(f"fetched {item}"))


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("report")(report_command)
    app.command("prefetch")(prefetch_command)
