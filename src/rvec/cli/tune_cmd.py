"""``rvec tune``: a study's α search alone — trials on a dev split, the winner once on a disjoint test split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rvec.cli.options import AsJson, DataDir, OptionalOutput, ShowProgress
from rvec.cli.output import err, print_json, shown


def tune_command(
    study: Annotated[Path, typer.Argument(help="study.yaml with a search: section (docs/atlas.md).")],
    output: OptionalOutput = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue a stopped search: finished trials are reused, not redone."),
    ] = False,
    progress: ShowProgress = True,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Search a global α or a per-block α profile on a dev split of one task, then evaluate the best
    once on a disjoint test split against the target and against α = 1 (paired CIs).

    Every trial is a model state set in memory and a cached cell; Optuna keeps the trials in
    RUN/search/optuna.db, so --resume after a kill continues the same trials. -o defaults to the
    study's `output:`, else runs/<name>-tune.

    Examples:
      rvec tune studies/atlas-demo.yaml -o runs/tune/
      rvec tune studies/atlas-demo.yaml -o runs/tune/ --resume
    """
    from rvec.study.runner import run_tune_file

    run, record = run_tune_file(
        study,
        output,
        resume=resume,
        progress=progress,
        data_dir=data_dir,
        on_trial=None if as_json else print_trial,
    )
    report = run.out_dir / "report.md"
    best = record["best"]
    if as_json:
        print_json({"run": str(run.out_dir), "best": best, "test": record["test"], "report": str(report)})
    else:
        params = ", ".join(f"{k} = {v:.2f}" for k, v in best["params"].items())
        err.print(
            f"best: trial {best['number']} ({params}), dev {100 * best['value']:.1f}%; "
            f"{run.computed} cells computed, {run.cached} from cache; report: {shown(report)}",
            soft_wrap=True,
        )


def print_trial(event: Any) -> None:
    """One line per trial of an α search on stderr; after the first computed trial, the estimate
    of the time the remaining ones take (``rvec run`` prints these too)."""
    params = ", ".join(f"{k} = {v:.2f}" for k, v in event.params.items())
    line = f"trial {event.number} ({params}): dev {100 * event.value:.1f}%"
    line += " (cached)" if event.cached else f" in {event.seconds:.0f} s"
    if event.estimate_s is not None:
        more = event.total - event.done
        trials = "trial" if more == 1 else "trials"
        line += f"; {more} more {trials} and the test cells ≈ {event.estimate_s / 60:.1f} min"
    err.print(line, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_command)
