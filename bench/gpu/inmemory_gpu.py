"""In-memory α switch on a GPU: time ``set_alphas``/``restore`` and check the restore is bit-exact.

Builds an "RL" copy of MODEL (every float tensor plus seeded noise of 1% of its std), extracts the
vector with rvec, loads MODEL on the GPU in bfloat16 and times ``InMemoryVectors.set_alphas``.

    python bench/gpu/inmemory_gpu.py MODEL_DIR WORKDIR OUT.json
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rvec.model.hf.loading import load_causal_lm
from rvec.vector.extract import extract
from rvec.vector.inmemory import InMemoryVectors

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the CPU benchmark's helpers
from inmemory_alpha import bits


def main() -> None:
    model_dir, work, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    rl = work / "rl"
    shutil.copytree(model_dir, rl, dirs_exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    for shard in sorted(model_dir.glob("*.safetensors")):
        tensors = load_file(shard)
        noisy = {
            k: (t.float() + 0.01 * t.float().std() * torch.randn(t.shape, generator=generator)).to(t.dtype)
            if t.is_floating_point() and t.numel() > 1
            else t
            for k, t in tensors.items()
        }
        save_file(noisy, rl / shard.name, metadata={"format": "pt"})
    start = time.perf_counter()
    extract(model_dir, rl, work / "vec", overwrite=True)
    extract_s = time.perf_counter() - start

    model, _, _ = load_causal_lm(model_dir, device="cuda")  # bfloat16, rvec's GPU default
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    start = time.perf_counter()
    iv = InMemoryVectors(model, [work / "vec"])
    torch.cuda.synchronize()
    attach_s = time.perf_counter() - start
    times = []
    for alpha in (0.5, 1.0, -1.0, 0.25, 0.7):
        for _ in range(5):
            torch.cuda.synchronize()
            start = time.perf_counter()
            iv.set_alphas([alpha])
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    changed = sum(not torch.equal(p, before[n]) for n, p in model.named_parameters())
    torch.cuda.synchronize()
    start = time.perf_counter()
    iv.restore()
    torch.cuda.synchronize()
    restore_s = time.perf_counter() - start
    exact = all(bits(p).equal(bits(before[n])) for n, p in model.named_parameters())
    report = {
        "device": torch.cuda.get_device_name(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(model.parameters()).dtype),
        "extract_s": extract_s,
        "attach_s": attach_s,
        "set_alphas_median_s": statistics.median(times),
        "set_alphas_max_s": max(times),
        "parameters_changed_at_alpha_0.7": changed,
        "restore_s": restore_s,
        "restore_bit_exact": exact,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
