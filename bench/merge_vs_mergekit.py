"""Benchmark: rvec's merge methods against mergekit 0.1.5's, on the Qwen2.5-0.5B-shaped bf16
checkpoints of ``apply_vs_mergekit.py`` (SFT as the base; RL and "target" as two fine-tunes of it).

For each method, one mergekit YAML (``dtype: float32``, ``out_dtype: bfloat16``) runs three ways,
each in its own process under ``/usr/bin/time -v`` (wall clock, peak RSS):

* ``rvec``      ``rvec apply --mergekit merge.yml -o OUT`` (deltas and merge streamed; no vector on disk);
* ``mergekit``  ``mergekit-yaml merge.yml OUT --no-cuda --no-copy-tokenizer``;
* ``reference`` this script's own float32 implementation of mergekit's definition (torch, whole
  tensors, stable sorts, sums left to right), cast to bf16 once — not timed against the others.

Then the fraction of output elements (bf16 bits) that differ: rvec vs reference, mergekit vs
reference, rvec vs mergekit. DARE's random streams differ between the tools, so ``dare_*`` are
compared in distribution instead: the fraction of weights changed (≈ kept fraction), and the mean
and variance of ``out − base``, beside those of the undropped delta.

Usage (rvec importable by this Python; mergekit in its own venv, see bench/README.md)::

    flock /tmp/rvec-heavy.lock python bench/merge_vs_mergekit.py \\
        --mergekit-bin bench/.venvs/mergekit/bin/mergekit-yaml --workdir /work/bench-data \\
        --out /work/bench-data/merge_vs_mergekit.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apply_vs_mergekit import compare, ensure_data, measure, mergekit_version, rvec_revision, warm_page_cache

# Per method: (parameters of the RL model, of the "target" model or None to leave it out, globals).
CASES: dict[str, tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]] = {
    "task_arithmetic": ({"weight": 1.0}, {"weight": 0.5}, {}),
    "ties": ({"weight": 1.0, "density": 0.5}, {"weight": 0.5, "density": 0.3}, {}),
    "breadcrumbs": ({"weight": 1.0, "density": 0.8}, {"weight": 0.5, "density": 0.8}, {"gamma": 0.01}),
    "dare_linear": ({"weight": 1.0, "density": 0.3}, None, {}),
    "dare_ties": ({"weight": 1.0, "density": 0.5}, {"weight": 0.5, "density": 0.3}, {}),
}
RANDOM = ("dare_linear", "dare_ties")


def config_yaml(method: str, folders: dict[str, Path]) -> str:
    rl, target, shared = CASES[method]
    models = [(folders["rl"], rl)] + ([(folders["target"], target)] if target is not None else [])
    lines = [f"merge_method: {method}", f"base_model: {folders['sft']}", "models:"]
    for path, params in models:
        lines += [f"  - model: {path}", "    parameters:"] + [f"      {k}: {v}" for k, v in params.items()]
    if shared:
        lines += ["parameters:"] + [f"  {k}: {v}" for k, v in shared.items()]
    return "\n".join([*lines, "dtype: float32", "out_dtype: bfloat16", ""])


# ---- the float32 reference (child process) ---------------------------------------------------


def reference(method: str, workdir: Path, out: Path) -> None:
    """mergekit's definition in float32 with torch (stable sorts), one cast to bf16; writes ``out``."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    folders = {m: workdir / m for m in ("sft", "rl", "target")}
    rl_p, target_p, shared = CASES[method]
    params = [rl_p] + ([target_p] if target_p is not None else [])
    names = ["rl", "target"][: len(params)]
    handles = {m: safe_open(str(folders[m] / "model.safetensors"), "pt") for m in ("sft", *names)}
    result = {}
    for name in handles["sft"].keys():  # noqa: SIM118
        base = handles["sft"].get_tensor(name).float()
        deltas = [(handles[m].get_tensor(name).float() - base).reshape(-1) for m in names]
        merged = _merge(method, deltas, params, shared)
        result[name] = (base + merged.reshape(base.shape)).to(torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    save_file(result, str(out / "model.safetensors"), metadata={"format": "pt"})


def _merge(method: str, deltas: list, params: list[dict[str, Any]], shared: dict[str, Any]):
    import torch

    def magnitude(d, density):
        if density >= 1:
            return d
        mask = torch.zeros_like(d)
        k = max(1, int(density * d.numel()))
        mask[torch.sort(d.abs(), descending=True, stable=True).indices[:k]] = 1
        return d * mask

    def outliers(d, density, gamma):
        if density >= 1:
            return d
        n = d.numel()
        target, n_top = int(density * n), int(gamma * n)
        n_bot = max(0, n - target - n_top)
        mask = torch.zeros_like(d)
        mask[torch.sort(d.abs(), stable=True).indices[n_bot : n_bot + target]] = 1
        return d * mask

    weights = [torch.tensor(p["weight"], dtype=torch.float32) for p in params]
    if method == "ties":
        deltas = [magnitude(d, p["density"]) for d, p in zip(deltas, params)]
    elif method == "breadcrumbs":
        deltas = [outliers(d, p["density"], shared.get("gamma", 0.01)) for d, p in zip(deltas, params)]
    weighted = [d * w for d, w in zip(deltas, weights)]
    total = weighted[0].clone()
    for d in weighted[1:]:
        total += d
    if method != "ties":
        return total  # task_arithmetic, breadcrumbs: normalize false, lambda 1
    elected = torch.where(total >= 0, 1.0, -1.0)
    mixed, divisor = torch.zeros_like(total), torch.zeros_like(total)
    for d, w in zip(weighted, weights):
        agree = (torch.sign(d) == elected).float()
        mixed += d * agree
        divisor += w * agree
    divisor[divisor == 0] = 1
    return mixed / divisor  # ties: normalize true


# ---- DARE in distribution ----------------------------------------------------------------------


def distribution(folder: Path, workdir: Path) -> dict[str, float]:
    """Changed fraction of the weights and mean/variance of ``out − base`` (float64 sums)."""
    import torch
    from safetensors import safe_open

    base = safe_open(str(workdir / "sft" / "model.safetensors"), "pt")
    files = sorted(folder.glob("*.safetensors"))
    n = changed = 0
    s1 = s2 = k1 = k2 = 0.0
    for file in files:
        with safe_open(str(file), "pt") as f:
            for name in f.keys():  # noqa: SIM118
                out, b = f.get_tensor(name), base.get_tensor(name)
                moved = out.view(torch.int16) != b.view(torch.int16)
                changed += int(moved.sum())
                d = out.double() - b.double()
                n += d.numel()
                s1, s2 = s1 + float(d.sum()), s2 + float((d * d).sum())
                kept = d[moved]  # the kept (rescaled) entries that survived the cast
                k1, k2 = k1 + float(kept.sum()), k2 + float((kept * kept).sum())
    mean, kept_mean = s1 / n, k1 / max(changed, 1)
    return {
        "changed_fraction": changed / n,
        "mean": mean,
        "variance": s2 / n - mean * mean,
        "kept_mean": kept_mean,
        "kept_variance": k2 / max(changed, 1) - kept_mean * kept_mean,
    }


# ---- main --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir).absolute()
    folders = ensure_data(workdir, args.seed)
    outdir = workdir / "merge-out"
    outdir.mkdir(parents=True, exist_ok=True)
    log = outdir / "bench.log"
    log.write_text("")
    warm_page_cache([folders[m] / "model.safetensors" for m in ("sft", "rl", "target")])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    rvec = [sys.executable, "-c", "from rvec.cli import main; main()"]
    me = [sys.executable, str(Path(__file__).resolve())]
    report: dict[str, Any] = {
        "rvec": rvec_revision(),
        "mergekit": mergekit_version(args.mergekit_bin),
        "cpus": os.cpu_count(),
        "methods": {},
    }
    for method in args.methods:
        cfg = outdir / f"{method}.yml"
        cfg.write_text(config_yaml(method, folders))
        runs = {
            "rvec": [*rvec, "apply", "--mergekit", str(cfg), "-o", str(outdir / f"{method}-rvec"), "--no-progress"],
            "mergekit": [args.mergekit_bin, str(cfg), str(outdir / f"{method}-mergekit"), "--no-cuda",
                         "--no-copy-tokenizer"],
        }  # fmt: skip
        if method not in RANDOM:
            runs["reference"] = [*me, "_reference", method, str(workdir), str(outdir / f"{method}-reference")]
        row: dict[str, Any] = {"config": cfg.read_text()}
        for tool, cmd in runs.items():
            shutil.rmtree(outdir / f"{method}-{tool}", ignore_errors=True)
            os.sync()
            with tempfile.TemporaryDirectory(prefix="rvec-cache-") as cache:
                row[tool] = measure(cmd, {**env, "RVEC_CACHE": cache}, log)
            print(
                f"{method:16s} {tool:9s} {row[tool]['wall_s']:7.2f} s {row[tool]['peak_rss_gb']:6.2f} GB",
                file=sys.stderr,
            )
        out = {t: outdir / f"{method}-{t}" for t in runs}
        if method in RANDOM:
            row["distribution"] = {t: distribution(out[t], workdir) for t in ("rvec", "mergekit")}
            if CASES[method][1] is None:  # one model: its undropped delta RL − SFT, for scale
                row["distribution"]["undropped"] = distribution(folders["rl"], workdir)
        else:
            row["rvec vs reference"] = compare(out["rvec"], out["reference"])
            row["mergekit vs reference"] = compare(out["mergekit"], out["reference"])
        row["rvec vs mergekit"] = compare(out["rvec"], out["mergekit"])
        report["methods"][method] = row
        for folder in out.values():
            shutil.rmtree(folder, ignore_errors=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))


def render(report: dict[str, Any]) -> str:
    lines = [
        f"rvec {report['rvec']['version']} @ {report['rvec']['commit']}; {report['mergekit']}; {report['cpus']} CPUs",
        "",
        "| method | rvec s | mergekit s | speed-up | rvec GB | mergekit GB | RSS ratio | rvec ≠ ref | mergekit ≠ ref | rvec ≠ mergekit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, r in report["methods"].items():
        a, b = r["rvec"], r["mergekit"]

        def frac(key: str, r=r) -> str:
            return f"{100 * r[key]['differ_fraction']:.4f}%" if key in r else "–"

        lines.append(
            f"| {method} | {a['wall_s']:.1f} | {b['wall_s']:.1f} | {b['wall_s'] / a['wall_s']:.1f}× "
            f"| {a['peak_rss_gb']:.2f} | {b['peak_rss_gb']:.2f} | {a['peak_rss_gb'] / b['peak_rss_gb']:.3f} "
            f"| {frac('rvec vs reference')} | {frac('mergekit vs reference')} | {frac('rvec vs mergekit')} |"
        )
    for method, r in report["methods"].items():
        for tool, d in r.get("distribution", {}).items():
            lines.append(
                f"- {method} {tool}: changed {100 * d['changed_fraction']:.3f}% of weights; out − base: "
                f"mean {d['mean']:.3e}, var {d['variance']:.4e}; over the changed: mean {d['kept_mean']:.3e}, "
                f"var {d['kept_variance']:.4e}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_reference"]:
        reference(argv[1], Path(argv[2]), Path(argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/work/bench-data", help="data and outputs (outside the repo)")
    parser.add_argument("--out", default=None, help="JSON results (default: WORKDIR/merge_vs_mergekit.json)")
    parser.add_argument("--mergekit-bin", default="bench/.venvs/mergekit/bin/mergekit-yaml")
    parser.add_argument("--methods", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated checkpoints")
    args = parser.parse_args(argv)
    if not Path("/usr/bin/time").exists():
        raise SystemExit("/usr/bin/time not found: apt-get install time")
    args.out = args.out or str(Path(args.workdir) / "merge_vs_mergekit.json")
    run(args)


if __name__ == "__main__":
    main()
