"""Benchmark: switching α in memory with ``InMemoryVectors`` on a Qwen2.5-0.5B-shaped model.

For each model dtype (float32, bfloat16): load the target from ``WORKDIR/target`` with
``Qwen2ForCausalLM.from_pretrained``, attach the float32 vector ``WORKDIR/vector`` (written with
``rvec extract`` from ``WORKDIR/{sft,rl}`` when missing), then time ``set_alphas([α])`` for a few
α and ``restore()``, ``--repeats`` times each (median quoted). Checks:

* ``restore()`` gives back every parameter bit for bit;
* the parameters after ``set_alphas([α])``, cast to bf16, equal the tensors ``rvec apply`` wrote
  for the same α (when ``WORKDIR/out/rvec-fused`` from ``apply_vs_mergekit.py`` exists).

The data comes from ``bench/apply_vs_mergekit.py`` (run it first, or pass ``--build-data``).

Usage::

    python bench/inmemory_alpha.py --workdir /work/bench-data --out /work/bench-data/inmemory_alpha.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def rss_gb() -> float:
    return psutil.Process().memory_info().rss / 1e9


def timed(fn, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def ensure_vector(workdir: Path) -> Path:
    vector = workdir / "vector"
    if (vector / "rvec.json").is_file():
        return vector
    print(f"writing {vector} with rvec extract ...", file=sys.stderr)
    subprocess.run(
        ["rvec", "extract", "--sft", str(workdir / "sft"), "--rl", str(workdir / "rl"), "-o", str(vector),
         "--no-progress"],
        check=True,
    )  # fmt: skip
    return vector


def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bits, so comparisons are bit-exact (``-0.0`` ≠ ``0.0``, NaN = NaN)."""
    return t.detach().contiguous().view({4: torch.int32, 2: torch.int16}[t.element_size()])


def file_backed(model: torch.nn.Module, checkpoint: Path) -> bool:
    """Whether the embedding's storage lies in a mapping of the checkpoint file (lazy mmap load)."""
    ptr = model.get_input_embeddings().weight.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if lo <= ptr < hi:
            return len(fields) > 5 and fields[5].startswith(str(checkpoint))
    return False


def compare_with_apply(model: torch.nn.Module, applied_dir: Path) -> dict[str, Any]:
    """Model parameters cast to bf16 vs the tensors of an ``rvec apply --dtype bfloat16`` output."""
    from safetensors import safe_open

    params = dict(model.named_parameters())
    differ = elements = 0
    names = 0
    for file in sorted(applied_dir.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if name not in params:
                    continue
                want = f.get_tensor(name)
                got = params[name].detach().to(torch.bfloat16)
                differ += int((bits(got) != bits(want)).sum())
                elements += want.numel()
                names += 1
    return {
        "tensors": names,
        "elements": elements,
        "differ": differ,
        "bit_identical": differ == 0 and names > 0,
    }


def bench_dtype(
    dtype_name: str, workdir: Path, vector: Path, alphas: list[float], repeats: int, apply_alpha: float | None
) -> dict[str, Any]:
    from transformers import Qwen2ForCausalLM

    from rvec.vector.inmemory import InMemoryVectors

    dtype = DTYPES[dtype_name]
    t0 = time.perf_counter()
    model = Qwen2ForCausalLM.from_pretrained(str(workdir / "target"), dtype=dtype)
    model.eval()
    load_s = time.perf_counter() - t0
    rss_model = rss_gb()
    mapped = file_backed(model, workdir / "target")

    t0 = time.perf_counter()
    iv = InMemoryVectors(model, [vector])
    build_s = time.perf_counter() - t0
    rss_built = rss_gb()
    snapshot = {n: bits(p).clone() for n, p in model.named_parameters()}  # after the RSS reading

    # The first switch writes every parameter once; when transformers left them memory-mapped from
    # the checkpoint (bf16 loaded as bf16), that is also where copy-on-write page faults land.
    first_alpha = alphas[0]
    first_s = timed(lambda: iv.set_alphas([first_alpha]), 1)[0]
    per_alpha = {}
    for alpha in alphas:
        samples = timed(lambda a=alpha: iv.set_alphas([a]), repeats)
        per_alpha[str(alpha)] = {"median_s": statistics.median(samples), "samples": samples}
    restore_samples = timed(iv.restore, repeats)
    exact = all(torch.equal(bits(p), snapshot[n]) for n, p in model.named_parameters())

    agreement = None
    applied_dir = workdir / "out" / "rvec-fused"
    if apply_alpha is not None and (applied_dir / "rvec.json").is_file():
        iv.set_alphas([apply_alpha])
        agreement = {"alpha": apply_alpha, **compare_with_apply(model, applied_dir)}
        iv.restore()
    result = {
        "dtype": dtype_name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "touched_parameters": len(iv.touched),
        "load_model_s": load_s,
        "build_s": build_s,
        "rss_after_model_gb": rss_model,
        "rss_after_build_gb": rss_built,
        "parameters_file_mapped": mapped,
        "first_set_alphas_s": first_s,
        "set_alphas": per_alpha,
        "set_alphas_median_s": statistics.median(s for a in per_alpha.values() for s in a["samples"]),
        "restore_median_s": statistics.median(restore_samples),
        "restore_samples": restore_samples,
        "restore_bit_exact": exact,
        "agreement_with_rvec_apply": agreement,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/work/bench-data")
    parser.add_argument("--out", default=None, help="JSON results (default: WORKDIR/inmemory_alpha.json)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.25, 0.5, 0.7, 1.0, -1.0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    parser.add_argument("--build-data", action="store_true", help="build WORKDIR/{sft,rl,target} if missing")
    args = parser.parse_args()
    workdir = Path(args.workdir).absolute()
    if args.build_data:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from apply_vs_mergekit import ensure_data

        ensure_data(workdir, seed=0)
    if not (workdir / "target" / "model.safetensors").is_file():
        raise SystemExit(
            f"{workdir}: no bench data; run bench/apply_vs_mergekit.py first or pass --build-data"
        )
    vector = ensure_vector(workdir)
    if args.threads:
        torch.set_num_threads(args.threads)
    apply_alpha = None
    manifest = workdir / "out" / "rvec-fused" / "rvec.json"
    if manifest.is_file():
        apply_alpha = json.loads(manifest.read_text())["vectors"][0]["alpha"]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs",
        file=sys.stderr,
    )
    results = []
    for name in args.dtypes:
        r = bench_dtype(name, workdir, vector, args.alphas, args.repeats, apply_alpha)
        results.append(r)
        print(
            f"{name}: set_alphas median {r['set_alphas_median_s']:.3f} s, restore {r['restore_median_s']:.3f} s, "
            f"bit-exact restore {r['restore_bit_exact']}, build {r['build_s']:.1f} s",
            file=sys.stderr,
        )
    out = Path(args.out or workdir / "inmemory_alpha.json")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from apply_vs_mergekit import rvec_revision

    rev = rvec_revision()
    report = {"threads": torch.get_num_threads(), "rvec": rev, "results": results}
    out.write_text(json.dumps(report, indent=2) + "\n")
    dirty = f" + uncommitted changes to {', '.join(rev['engine_dirty'])}" if rev["engine_dirty"] else ""
    print(
        f"rvec {rev['version']} @ {rev['commit']} (engine @ {rev['engine_commit']}){dirty}; "
        f"torch threads: {torch.get_num_threads()}\n"
    )
    print(f"| model dtype | α | set_alphas median s (of {args.repeats}) | min–max s |")
    print("|---|---:|---:|---:|")
    for r in results:
        for alpha, a in r["set_alphas"].items():
            print(
                f"| {r['dtype']} | {alpha} | {a['median_s']:.3f} | {min(a['samples']):.3f}–{max(a['samples']):.3f} |"
            )
    print()
    print(
        "| model dtype | first set_alphas s | restore median s | restore bit-exact | build s "
        "| RSS model → with vectors GB | params mmapped | = rvec apply |"
    )
    print("|---|---:|---:|---|---:|---|---|---|")
    for r in results:
        agree = r["agreement_with_rvec_apply"]
        agree_text = (
            "–"
            if agree is None
            else f"α={agree['alpha']}: {agree['differ']:,} of {agree['elements']:,} differ"
        )
        print(
            f"| {r['dtype']} | {r['first_set_alphas_s']:.3f} | {r['restore_median_s']:.3f} | {r['restore_bit_exact']} "
            f"| {r['build_s']:.1f} | {r['rss_after_model_gb']:.2f} → {r['rss_after_build_gb']:.2f} "
            f"| {r['parameters_file_mapped']} | {agree_text} |"
        )
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
