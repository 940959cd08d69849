"""``evaluate`` end to end on real weights (SmolLM2-135M-Instruct) and real data: every task family,
adversarial sets included, under every preset, twice at different batch sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rvec.eval import presets
from rvec.eval.results import sample_filename
from rvec.eval.runner import evaluate
from rvec.model.hf.backend import HFBackend

TASKS = [
    "gsm8k",
    "humaneval",
    "sciq",
    "bbh:boolean_expressions",
    "bbh:word_sorting",
    "gsm-plus:critical-thinking",
    "gsm-symbolic",
]
KEYS = {*TASKS, "gsm-plus:seed", "gsm-symbolic:original"}  # adversarial tasks bring their clean items


def _short(name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``name`` with 16 new tokens at most (prompts, shots and scoring unchanged), registered for
    this test only: the pinned budgets (up to 1024 tokens) would take minutes per item here."""
    base = presets.get_preset(name)
    tasks = {
        family: s.model_copy(update={"max_new_tokens": 16}) if s.output_type == "generate" else s
        for family, s in base.tasks.items()
    }
    short = base.model_copy(update={"name": f"{name}-16tok", "tasks": tasks})
    monkeypatch.setitem(presets.PRESETS, short.name, short)
    return short.name


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["paper", "lm-eval", "lm-eval-chat"])
def test_every_task_under_every_preset_reruns_identically_at_another_batch_size(
    preset: str, smollm2, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer, fingerprint = smollm2
    name = _short(preset, monkeypatch)
    results = []
    for run, batch_size in (("a", 8), ("b", 3)):
        lm = HFBackend(model, tokenizer, fingerprint=fingerprint, batch_size=batch_size, progress=False)
        results.append(
            evaluate(
                lm,
                tasks=TASKS,
                preset=name,
                limit=2,
                data_dir=data_dir,
                allow_code_execution=True,
                out_dir=tmp_path / run,
                progress=False,
            )
        )
    first, second = results
    assert set(first.scores) == KEYS == set(second.scores)
    doc = json.loads((tmp_path / "a" / "results.json").read_text())
    assert set(doc["results"]) == KEYS
    assert doc["rvec"]["preset"]["name"] == name
    assert set(doc["rvec"]["pairs"]) == {"gsm-plus:critical-thinking", "gsm-symbolic"}
    for key in KEYS:
        a, b = first.samples[key], second.samples[key]
        assert len(a) == 2, key
        assert [r.response for r in a] == [r.response for r in b], key
        assert [r.correct for r in a] == [r.correct for r in b], key
        assert first.scores[key] == second.scores[key], key
        lines = (tmp_path / "a" / "samples" / sample_filename(key)).read_text().splitlines()
        assert [json.loads(x)["doc_id"] for x in lines] == [r.doc_id for r in a], key
