"""Benchmark: ``rvec anatomy`` wall time and peak RSS on a Qwen2.5-0.5B-shaped vector (494M float32
entries, 2 GB), with and without a target (``--like``) and SVD metrics.

The checkpoints are those of bench/apply_vs_mergekit.py (three seeded bf16 Qwen2.5-0.5B-shaped
models, built once into ``--workdir``); the vector is ``rvec extract --sft SFT --rl RL`` of them —
dense, full rank (Gaussian RL noise), so every SVD metric does its full work. Each case runs in its
own process under ``/usr/bin/time -v`` with the inputs in the page cache and the vector's hashes
already remembered (one untimed ``--no-svd`` run verifies it first), so the figures are the
anatomy's own cost plus Python's start-up:

* ``manifest``   ``rvec anatomy VEC --no-svd``: norms from rvec.json, no tensor read;
* ``svd``        ``rvec anatomy VEC``: effective and 90% ranks (one Gram matrix per matrix of v);
* ``like``       ``rvec anatomy VEC --like TARGET --no-svd``: ‖θ‖ and moved counts (v and θ streamed);
* ``like+svd``   ``rvec anatomy VEC --like TARGET -o OUT``: everything, with the folder and heat maps.

Usage::

    flock /tmp/rvec-heavy.lock python bench/anatomy.py --workdir /work/bench-data --out anatomy.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from apply_vs_mergekit import ensure_data, warm_page_cache  # noqa: E402 — a sibling script, not a package

_TIME_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
CLI = [sys.executable, "-c", "from rvec.cli import main; main()"]


def timed(args: list[str], log: Path) -> dict[str, Any]:
    """``rvec ARGS`` (this checkout's) under ``/usr/bin/time -v``: wall seconds and peak RSS (GB)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with tempfile.NamedTemporaryFile("r", suffix=".time", delete=False) as tf:
        time_file = Path(tf.name)
    os.sync()  # flush dirty pages outside the timed region
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", "-o", str(time_file), *CLI, *args], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - t0
    with log.open("a") as lf:
        lf.write(f"\n$ rvec {' '.join(args)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    text = time_file.read_text()
    time_file.unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"rvec {' '.join(args)} failed with exit {proc.returncode}; see {log}")
    match = _TIME_RSS.search(text)
    return {"wall_s": round(wall, 2), "peak_rss_gb": int(match.group(1)) * 1024 / 1e9 if match else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="bench data (outside the repository)")
    parser.add_argument("--out", type=Path, required=True, help="JSON results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top-k", type=int, default=16)
    args = parser.parse_args()
    work = args.workdir.absolute()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "anatomy-log.txt"
    folders = ensure_data(work, args.seed)
    vector = work / "anatomy-vec"
    if not (vector / "rvec.json").is_file():
        timed(["extract", "--sft", str(folders["sft"]), "--rl", str(folders["rl"]), "-o", str(vector),
               "--no-progress", "--overwrite"], log)  # fmt: skip
    warm_page_cache([*vector.glob("*.safetensors"), folders["target"] / "model.safetensors"])
    timed(["anatomy", str(vector), "--no-svd", "--json", "--no-progress"], log)  # verify once, untimed
    like = ["--like", str(folders["target"])]
    cases = {
        "manifest": ["--no-svd"],
        "svd": [],
        "like": [*like, "--no-svd"],
        "like+svd": [*like, "-o", str(work / "anatomy-out"), "--overwrite"],
    }
    load_before = os.getloadavg()[0]
    rows = []
    for label, extra in cases.items():
        cmd = ["anatomy", str(vector), "--top-k", str(args.top_k), "--no-progress", *extra]
        rows.append({"case": label, "command": "rvec " + " ".join(cmd), **timed(cmd, log)})
        print(json.dumps(rows[-1]), file=sys.stderr)
    result = {
        "vector": str(vector),
        "vector_gb": sum(f.stat().st_size for f in vector.glob("*.safetensors")) / 1e9,
        "rows": rows,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| case | wall (s) | peak RSS (GB) |\n|---|---|---|")
    for row in rows:
        print(f"| {row['case']} | {row['wall_s']:.1f} | {row['peak_rss_gb']:.2f} |")


if __name__ == "__main__":
    main()
