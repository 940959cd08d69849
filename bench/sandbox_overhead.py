"""Benchmark: HumanEval sandbox overhead per item, before (a baseline commit) and after (this tree).

Runs the first ``--n`` HumanEval canonical solutions (lm-eval layout, as ``rvec eval`` builds them)
through the baseline's ``Sandbox`` (its ``src/`` taken with ``git archive REF``) and through this
tree's, ``--repeats`` times, alternating, each side in a fresh worker process (so the two packages,
whatever their layout, never share an interpreter). It reports medians of:

* ``batch_s_per_item``: ``run_many`` over all ``--n`` programs with 2 workers (as ``score_many``),
  wall time / n;
* ``demo_cell_s_per_item``: ``run_many`` over 6 programs (a demo HumanEval cell: ``limit: 6``),
  wall time / 6;
* ``single_s``: one program at a time, wall time of one ``run``.

Each worker first runs 4 programs untimed (``require_isolation``'s probe, imports, page cache). Every
program must pass on both sides (the script stops otherwise). Numbers depend on the machine's load:
compare the two columns of one run, not runs of different days.

Usage::

    flock /tmp/rvec-heavy.lock python bench/sandbox_overhead.py --baseline-ref 2c5df3c --n 20 --repeats 5 \\
        --out /tmp/sandbox_overhead.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from rvec.eval.data import DataSource
from rvec.eval.presets import get_preset
from rvec.eval.tasks import get_task
from rvec.eval.types import Response

REPO = Path(__file__).resolve().parents[1]
DEMO_CELL = 6

# Runs in a fresh interpreter with one side's src/ first on the path; prints its timings as JSON.
WORKER = r"""
import json, statistics, sys, time
from rvec.eval.sandbox import Sandbox
progs = json.loads(open(sys.argv[1]).read())
batch = Sandbox(allow=True, timeout_s=60, max_workers=2)
results = batch.run_many(progs[:4])  # untimed: the isolation probe, imports, page cache
t0 = time.perf_counter(); results += batch.run_many(progs); batch_s = (time.perf_counter() - t0) / len(progs)
t0 = time.perf_counter(); results += batch.run_many(progs[:6]); demo_s = (time.perf_counter() - t0) / 6
single, singles = Sandbox(allow=True, timeout_s=60, max_workers=1), []
for program in progs[:6]:
    t0 = time.perf_counter(); results.append(single.run(program)); singles.append(time.perf_counter() - t0)
failed = [r for r in results if not r.passed]
print(json.dumps({"failed": len(failed), "first_failure": repr(failed[0]) if failed else None,
                  "batch_s_per_item": batch_s, "demo_cell_s_per_item": demo_s,
                  "single_s": statistics.median(singles)}))
"""


def baseline_src(ref: str, into: Path) -> Path:
    """The ``src/`` folder of ``ref``, extracted under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, "src"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def programs(n: int) -> list[str]:
    task = get_task("humaneval")
    docs = task.docs(DataSource(None), limit=n)
    preset = get_preset("lm-eval")
    return [task.program(d, Response(text=d.fields["canonical_solution"]), preset=preset) for d in docs]


def measure(src: Path, progs_file: Path) -> dict[str, float]:
    """One worker run of one side."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(progs_file)], check=True, capture_output=True, text=True, env=env
    ).stdout
    timings = json.loads(out.strip().splitlines()[-1])
    if timings.pop("failed"):
        raise SystemExit(f"{src}: canonical solutions failed: {timings['first_failure']}")
    timings.pop("first_failure")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-ref", default="2c5df3c", help="Commit with the old sandbox.")
    parser.add_argument("--n", type=int, default=20, help="HumanEval problems per batch.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="Write the medians and every repeat as JSON here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rvec-bench-") as tmp:
        progs_file = Path(tmp) / "programs.json"
        progs_file.write_text(json.dumps(programs(args.n)))
        sides = {"before": baseline_src(args.baseline_ref, Path(tmp)), "after": REPO / "src"}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
        for _ in range(args.repeats):
            for name, src in sides.items():
                runs[name].append(measure(src, progs_file))
    medians = {
        name: {key: statistics.median(r[key] for r in reps) for key in reps[0]} for name, reps in runs.items()
    }
    ratio = {key: medians["after"][key] / medians["before"][key] for key in medians["before"]}
    for key in ratio:
        print(
            f"{key:22s} before {medians['before'][key]:.3f} s  after {medians['after'][key]:.3f} s  "
            f"after/before {ratio[key]:.2f}"
        )
    if args.out:
        report = {"baseline_ref": args.baseline_ref, "n": args.n, "repeats": args.repeats}
        report |= {"medians": medians, "after_over_before": ratio, "runs": runs}
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
