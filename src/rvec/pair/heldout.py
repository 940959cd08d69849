"""Is the pair a reasoning pair? Greedy held-out accuracy of init, SFT and RL on the task's test
split, and the paired comparisons RL vs SFT and SFT vs init (95% bootstrap CI, exact McNemar).

A pair whose RL donor does not beat its SFT donor with a CI above 0 is not a reasoning pair: the
result says so (``rl_beats_sft``) and the CLI prints it, so nobody ships such a vector unknowingly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["held_out_check"]


def held_out_check(
    models: Mapping[str, Path], task: str, *, limit: int, work: Path, device: str
) -> dict[str, Any]:
    """Evaluate each model greedily (``paper`` preset, condition ``plain``) on ``limit`` held-out items.

    Returns:
        dict: ``{"task", "items", "models": {name: {"accuracy"}}, "comparisons": {"rl_vs_sft": …,
        "sft_vs_init": …}, "rl_beats_sft": bool}``; responses are cached under ``work`` so a
        resumed run re-scores without regenerating.
    """
    from rvec.eval.stats import paired_comparison
    from rvec.model.evaluate import evaluate_model
    from rvec.model.hf.settings import HFSettings

    correct: dict[str, dict[str, bool]] = {}
    accuracy: dict[str, dict[str, float]] = {}
    for name, folder in models.items():
        result = evaluate_model(
            str(folder),
            tasks=[task],
            preset="paper",
            limit=limit,
            out_dir=work / name,
            backend=HFSettings(device=device, dtype="float32"),
            progress=False,
        )
        samples = result.samples[task]
        correct[name] = {s.doc_id: bool(s.correct) for s in samples}
        accuracy[name] = {"accuracy": sum(correct[name].values()) / max(1, len(samples))}
    comparisons = {}
    for b, a in (("rl", "sft"), ("sft", "init")):
        if a not in correct or b not in correct:
            continue  # an SFT-only run (no GRPO phase) has no RL donor
        c = paired_comparison(correct[a], correct[b])
        comparisons[f"{b}_vs_{a}"] = {
            "diff": c.diff,
            "ci": [c.ci_low, c.ci_high],
            "mcnemar_p": c.mcnemar_p,
            "flips_up": c.flips_up,
            "flips_down": c.flips_down,
        }
    return {
        "task": task,
        "items": limit,
        "models": accuracy,
        "comparisons": comparisons,
        "rl_beats_sft": comparisons["rl_vs_sft"]["ci"][0] > 0 if "rl_vs_sft" in comparisons else None,
    }
