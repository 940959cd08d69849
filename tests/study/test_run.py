"""A whole study on tiny real checkpoints: structure, statistics from the records, resume after a
crash, the random control, in-memory α (no checkpoint written per α)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fixtures import Family
from helpers import load_folder
from rvec.cli import app
from rvec.eval.stats import paired_comparison
from rvec.study.cells import load_cell
from rvec.study.config import parse_study
from rvec.study.runner import run_study


def study(family: Family, data_dir: Path, **overrides) -> dict:
    raw = {
        "name": "tiny",
        "donors": {"sft": str(family.sft), "rl": str(family.rl)},
        "targets": [str(family.target)],
        "alphas": [1.0],
        "controls": {"subtraction": True, "random_seeds": [0], "alpha_sweep": [0.5]},
        "conditions": ["plain", "think"],
        "tasks": ["gsm8k", "sciq", "bbh:navigate", "bbh:snarks"],
        "adversarial": ["gsm-plus:critical-thinking", "gsm-symbolic"],
        "perturbations": ["typo:0.05"],
        "max_new_tokens": 4,
        "limit": 3,
        "data_dir": str(data_dir),
        "bootstrap_resamples": 2000,
        "backend": {"name": "hf", "device": "cpu", "batch_size": 8},
    }
    raw.update(overrides)
    return raw


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def finished(
    qwen_untied: Family, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    """Run once with a crash after 7 cells, then --resume to the end."""
    out = tmp_path_factory.mktemp("study") / "run"
    config = parse_study(study(qwen_untied, data_dir))
    first: list[str] = []

    def crash_after_seven(cell, cached: bool) -> None:
        first.append(cell.cache_key)
        if len(first) == 7:
            raise Crash

    with pytest.raises(Crash):
        run_study(config, out, progress=False, on_cell=crash_after_seven)
    saved = {p.stem: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    resumed: list[tuple[str, bool]] = []
    run = run_study(
        config,
        out,
        resume=True,
        progress=False,
        on_cell=lambda c, cached: resumed.append((c.cache_key, cached)),
    )
    return out, {"first": first, "saved": saved, "resumed": resumed, "run": run}


def test_resume_redoes_nothing_finished(finished: tuple[Path, dict]) -> None:
    out, info = finished
    assert len(info["saved"]) >= 7  # every finished cell was on disk when the crash happened
    cached = {k for k, was_cached in info["resumed"] if was_cached}
    computed = [k for k, was_cached in info["resumed"] if not was_cached]
    assert cached == set(info["saved"])
    assert not set(computed) & set(info["saved"])
    assert info["run"].computed == len(computed) and info["run"].cached == len(cached)
    for key, mtime in info["saved"].items():
        assert (out / "cells" / f"{key}.json").stat().st_mtime_ns == mtime  # not rewritten
    plan = json.loads((out / "study.json").read_text())
    assert {e["key"] for e in plan["cells"]} == {k for k, _ in info["resumed"]}


def test_matrix_has_every_variant_condition_and_task(finished: tuple[Path, dict]) -> None:
    _, info = finished
    cells = info["run"].cells
    variants = {c.variant.name for c in cells}
    assert variants == {
        "target",
        "target + 1·v",
        "target + 0.5·v",
        "target − 1·v",
        "target + 1·random(0)",
        "RL donor",
    }
    tasks = {c.task for c in cells}
    assert tasks == {
        "gsm8k",
        "sciq",
        "bbh:navigate",
        "bbh:snarks",
        "gsm8k+typo:0.05",
        "sciq+typo:0.05",
        "bbh:navigate+typo:0.05",
        "bbh:snarks+typo:0.05",
        "gsm-plus:seed",
        "gsm-plus:critical-thinking",
        "gsm-symbolic:original",
        "gsm-symbolic",
    }
    assert {c.condition for c in cells if c.variant.name == "RL donor"} == {"think"}
    assert all(c.n == 3 for c in cells)
    assert {c.clean_task for c in cells if c.task == "gsm-symbolic"} == {"gsm-symbolic:original"}


def test_report_files_and_statistics_match_the_records(finished: tuple[Path, dict]) -> None:
    out, info = finished
    report = (out / "report.md").read_text()
    assert "## Main results" in report and "## Adversarial and perturbed tasks" in report
    assert (
        (out / "results.csv")
        .read_text()
        .startswith("variant,kind,alpha,model,condition,task,clean_task,metric,value,n")
    )
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in (out / "plots").glob("*.png"))
    assert (out / "plots" / "vector_norms.png").is_file()
    results = json.loads((out / "results.json").read_text())
    cells = {(c.variant.name, c.condition, c.task): c for c in info["run"].cells}
    checked = 0
    for comp in results["comparisons"]:
        if comp["kind"] != "vs-baseline" or comp["task"] == "bbh":
            continue
        a = cells[(comp["a"]["variant"], comp["a"]["condition"], comp["a"]["task"])]
        b = cells[(comp["b"]["variant"], comp["b"]["condition"], comp["b"]["task"])]
        # The per-item records on disk are the source of truth, not the in-memory cells.
        a_items = _items(out, a.cache_key)
        b_items = _items(out, b.cache_key)
        direct = paired_comparison(a_items, b_items, resamples=2000, seed=1234)
        assert comp["comparison"]["diff"] == pytest.approx(direct.diff)
        assert comp["comparison"]["mcnemar_p"] == pytest.approx(direct.mcnemar_p)
        assert (comp["comparison"]["ci_low"], comp["comparison"]["ci_high"]) == pytest.approx(
            (direct.ci_low, direct.ci_high)
        )
        checked += 1
    assert checked >= 20


def _items(out: Path, key: str) -> dict[str, bool]:
    data = json.loads((out / "cells" / f"{key}.json").read_text())
    items = {str(s["doc_id"]): bool(s["correct"]) for s in data["samples"]}
    return data["cell"]["per_item"] if set(items) != set(data["cell"]["per_item"]) else items


def test_random_control_matches_v_norms_per_tensor(finished: tuple[Path, dict]) -> None:
    out, _ = finished
    v, r = load_folder(out / "vectors" / "v"), load_folder(out / "vectors" / "random-0")
    assert set(v) == set(r)
    for name in v:
        assert float(r[name].double().norm()) == pytest.approx(float(v[name].double().norm()), rel=1e-5)
    assert not any(torch.equal(v[n], r[n]) for n in v if v[n].numel() > 1)


def test_no_checkpoint_written_per_alpha(finished: tuple[Path, dict]) -> None:
    out, _ = finished
    weight_files = [p for p in out.rglob("*.safetensors") if "vectors" not in p.parts]
    assert weight_files == []


def test_report_command_rerenders_from_cache(finished: tuple[Path, dict]) -> None:
    out, _ = finished
    before = (out / "report.md").read_text()
    (out / "report.md").unlink()
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.md").read_text() == before


def test_existing_run_folder_needs_resume(
    finished: tuple[Path, dict], qwen_untied: Family, data_dir: Path, tmp_path: Path
) -> None:
    out, _ = finished
    config_file = tmp_path / "s.yaml"
    import yaml

    config_file.write_text(yaml.safe_dump(study(qwen_untied, data_dir)))
    result = CliRunner().invoke(app, ["run", str(config_file), "-o", str(out), "--no-progress"])
    assert result.exit_code == 1
    assert "a run folder already exists; pass --resume" in result.stderr


def test_cached_cell_round_trips(finished: tuple[Path, dict]) -> None:
    out, info = finished
    cell = info["run"].cells[0]
    assert load_cell(out / "cells", cell.cache_key) == cell


def test_each_alpha_state_gets_its_own_responses(finished: tuple[Path, dict]) -> None:
    """The response cache is keyed by the weights' fingerprint: +v must not reuse the baseline's answers."""
    out, info = finished

    def responses(variant: str) -> list[str]:
        cell = next(
            c
            for c in info["run"].cells
            if c.variant.name == variant and c.condition == "plain" and c.task == "gsm8k"
        )
        return [
            s["response"]
            for s in json.loads((out / "cells" / f"{cell.cache_key}.json").read_text())["samples"]
        ]

    assert responses("target") != responses("target + 1·v")
    assert responses("target + 1·v") != responses("target − 1·v")


def test_the_study_backend_is_the_one_named_and_is_recorded(finished: tuple[Path, dict]) -> None:
    out, info = finished
    plan = json.loads((out / "study.json").read_text())
    assert plan["backend"] == {"name": "hf", "device": "cpu", "dtype": "auto", "batch_size": 8}
    assert info["run"].timings["load"] > 0 and info["run"].timings["apply"] > 0
