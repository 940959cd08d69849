"""Benchmark: in-domain accuracy of ``target + v`` with v at full rank and compressed.

The question ``rvec compress`` leaves open: how much of v's *effect* survives compression, not only
how much of its norm. One target is loaded once; each vector (the full one and its compressed
versions) is applied in memory at α = 1 and the same held-out items are evaluated greedily, then
each row is compared with the full vector and with the bare target on paired items (95% bootstrap
CI, McNemar p).

Usage (the demo's target and the shipped pair; compressed vectors made with ``rvec compress``)::

    rvec compress pairs/smollm2-135m-arith/vector --rank 4 -o /tmp/v-r4
    rvec compress pairs/smollm2-135m-arith/vector --rank 2 -o /tmp/v-r2
    rvec compress pairs/smollm2-135m-arith/vector --density 0.1 -o /tmp/v-d10
    python bench/compress_accuracy.py --target runs/demo/models/sibling-sft-* \\
        --vector full=pairs/smollm2-135m-arith/vector --vector r4=/tmp/v-r4 --vector r2=/tmp/v-r2 \\
        --vector d10=/tmp/v-d10 --task arith --limit 150 --max-new-tokens 64 --out compress_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="model folder")
    parser.add_argument(
        "--vector", action="append", required=True, help="NAME=FOLDER; the first is the reference"
    )
    parser.add_argument("--task", default="arith")
    parser.add_argument("--limit", type=int, default=150)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from rvec.eval.presets import get_preset
    from rvec.eval.runner import evaluate
    from rvec.eval.stats import paired_comparison
    from rvec.model.hf.settings import HFSettings
    from rvec.model.registry import get_backend
    from rvec.vector.artifact import read_vector

    named = dict(item.split("=", 1) for item in args.vector)
    vectors = {name: read_vector(folder) for name, folder in named.items()}
    preset = get_preset("paper")
    settings = preset.tasks[args.task].model_copy(update={"max_new_tokens": args.max_new_tokens})
    preset = preset.model_copy(update={"tasks": {**preset.tasks, args.task: settings}})
    state = get_backend("hf").load(
        args.target, HFSettings(device="cpu", dtype="float32", batch_size=args.batch_size)
    )
    correct: dict[str, dict[str, bool]] = {}
    seconds: dict[str, float] = {}
    try:
        state.attach(list(vectors.values()))
        for name in ["none", *vectors]:
            state.set_vectors([] if name == "none" else [(vectors[name], 1.0)])
            start = time.perf_counter()
            result = evaluate(
                state.language_model(), tasks=[args.task], preset=preset, condition="plain",
                limit=args.limit, progress=False,
            )  # fmt: skip
            seconds[name] = round(time.perf_counter() - start, 1)
            correct[name] = {s.doc_id: bool(s.correct) for s in result.samples[args.task]}
            print(
                f"{name}: {sum(correct[name].values()) / len(correct[name]):.3f} ({seconds[name]} s)",
                flush=True,
            )
    finally:
        state.close()
    reference = next(iter(vectors))
    rows: list[dict[str, Any]] = []
    for name in ["none", *vectors]:
        row: dict[str, Any] = {
            "vector": name,
            "folder": named.get(name),
            "relative_error": (vectors[name].manifest.get("compression") or {}).get("relative_error")
            if name in vectors
            else None,
            "accuracy": sum(correct[name].values()) / len(correct[name]),
            "seconds": seconds[name],
        }
        for other in ("none", reference):
            if other != name:
                c = paired_comparison(correct[other], correct[name], resamples=10_000, seed=0)
                row[f"vs_{other}"] = {"diff": c.diff, "ci": [c.ci_low, c.ci_high], "p": c.mcnemar_p}
        rows.append(row)
    args.out.write_text(json.dumps({"task": args.task, "limit": args.limit, "rows": rows}, indent=1))
    print("| v | relative error | accuracy | vs no v [CI] | vs full v [CI] |\n|---|---:|---:|---|---|")
    for r in rows:
        err = "" if r["relative_error"] is None else f"{r['relative_error']:.3f}"
        print(
            f"| {r['vector']} | {err} | {100 * r['accuracy']:.1f}% | {_delta(r.get('vs_none'))} "
            f"| {_delta(r.get('vs_' + reference))} |"
        )


def _delta(c: dict[str, Any] | None) -> str:
    return f"{100 * c['diff']:+.1f} [{100 * c['ci'][0]:+.1f}, {100 * c['ci'][1]:+.1f}]" if c else ""


if __name__ == "__main__":
    main()
