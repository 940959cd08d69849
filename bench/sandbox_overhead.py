"""Benchmark: HumanEval sandbox overhead per item, before (a baseline commit) and after (this tree).

Runs the first ``--n`` HumanEval canonical solutions (lm-eval layout, as ``rvec eval`` builds them)
through the baseline's ``Sandbox`` (read with ``git show REF:src/rvec/eval/sandbox.py``) and through
the current one, ``--repeats`` times, alternating, and reports medians of:

* ``batch_s_per_item``: ``run_many`` over all ``--n`` programs with 2 workers (as ``score_many``),
  wall time / n;
* ``demo_cell_s_per_item``: ``run_many`` over 6 programs (a demo HumanEval cell: ``limit: 6``),
  wall time / 6;
* ``single_s``: one program at a time, wall time of one ``run``.

Every program must pass in both (the script stops otherwise). Numbers depend on the machine's load:
compare the two columns of one run, not runs of different days.

Usage::

    python bench/sandbox_overhead.py --baseline-ref 938920e --n 40 --repeats 5 --out /tmp/sandbox_overhead.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from rvec.eval import sandbox as current
from rvec.eval.data import DataSource
from rvec.eval.presets import get_preset
from rvec.eval.tasks import get_task
from rvec.eval.types import Response

REPO = Path(__file__).resolve().parents[1]
DEMO_CELL = 6


def baseline_module(ref: str) -> ModuleType:
    """The sandbox module as it was at ``ref``, imported under its own name."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{ref}:src/rvec/eval/sandbox.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="rvec-bench-")) / "baseline_sandbox.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_sandbox", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_sandbox"] = module
    spec.loader.exec_module(module)
    return module


def programs(n: int) -> list[str]:
    task = get_task("humaneval")
    docs = task.docs(DataSource(None), limit=n)
    preset = get_preset("lm-eval")
    return [task.program(d, Response(text=d.fields["canonical_solution"]), preset=preset) for d in docs]


def measure(sandbox_cls: Any, progs: list[str]) -> dict[str, float]:
    batch = sandbox_cls(allow=True, timeout_s=60, max_workers=2)
    t0 = time.perf_counter()
    results = batch.run_many(progs)
    batch_s = (time.perf_counter() - t0) / len(progs)
    t0 = time.perf_counter()
    results += batch.run_many(progs[:DEMO_CELL])
    demo_s = (time.perf_counter() - t0) / DEMO_CELL
    single = sandbox_cls(allow=True, timeout_s=60, max_workers=1)
    singles = []
    for program in progs[:DEMO_CELL]:
        t0 = time.perf_counter()
        results.append(single.run(program))
        singles.append(time.perf_counter() - t0)
    failed = [r for r in results if not r.passed]
    if failed:
        raise SystemExit(f"{sandbox_cls.__module__}: {len(failed)} canonical solutions failed: {failed[0]}")
    return {
        "batch_s_per_item": batch_s,
        "demo_cell_s_per_item": demo_s,
        "single_s": statistics.median(singles),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-ref", default="938920e", help="Commit with the old sandbox.")
    parser.add_argument("--n", type=int, default=40, help="HumanEval problems per batch.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="Write the medians and every repeat as JSON here.")
    args = parser.parse_args()
    baseline = baseline_module(args.baseline_ref)
    progs = programs(args.n)
    current.require_isolation()
    sides = {"before": baseline.Sandbox, "after": current.Sandbox}
    for cls in sides.values():  # warm the page cache and the interpreter's imports
        cls(allow=True, max_workers=2).run_many(progs[:4])
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, cls in sides.items():
            runs[name].append(measure(cls, progs))
    medians = {
        name: {key: statistics.median(r[key] for r in reps) for key in reps[0]} for name, reps in runs.items()
    }
    ratio = {key: medians["after"][key] / medians["before"][key] for key in medians["before"]}
    report = {
        "baseline_ref": args.baseline_ref,
        "n": args.n,
        "repeats": args.repeats,
        "medians": medians,
        "after_over_before": ratio,
        "runs": runs,
    }
    for key in ratio:
        print(
            f"{key:22s} before {medians['before'][key]:.3f} s  after {medians['after'][key]:.3f} s  "
            f"after/before {ratio[key]:.2f}"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
