"""Slices and the atlas in a study, on a tiny real model whose v is zero outside layers 0–1: the
generated variants make up v, parts outside the block change nothing (responses, per-item results,
KL exactly 0), the report's Holm column is Holm's method, and a rerun with one more slice computes
only that slice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fixtures import perturb, random_state, save_model, tiny_config
from helpers import assert_user_error
from rvec.cli import app
from rvec.eval.pvalues import holm_adjusted
from rvec.study.cells import load_cell
from rvec.study.config import parse_study
from rvec.study.runner import run_study
from rvec.vector.artifact import read_vector
from rvec.vector.family import layer_of
from rvec.vector.masks import selection_from_record

LAYERS = 4


@pytest.fixture(scope="module")
def block_pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SFT, RL and a target of one tiny Llama family; RL differs from SFT only in layers 0 and 1
    (strongly, so v changes answers there), so v is exactly zero outside the first of two blocks."""
    root = tmp_path_factory.mktemp("block")
    config = tiny_config("llama", tied=False)
    base = random_state(config, seed=1)
    sft = perturb(base, seed=2, scale=0.05)
    moved = perturb(sft, seed=3, scale=0.6)
    rl = {k: (moved[k] if layer_of(k) in (0, 1) else v.clone()) for k, v in sft.items()}
    target = perturb(base, seed=4, scale=0.05)
    return {
        "sft": save_model(sft, config, root / "sft"),
        "rl": save_model(rl, config, root / "rl"),
        "target": save_model(target, config, root / "target"),
    }


def study(pair: dict[str, Path], **overrides) -> dict:
    raw = {
        "name": "atlas",
        "donors": {"sft": str(pair["sft"]), "rl": str(pair["rl"])},
        "targets": [str(pair["target"])],
        "alphas": [1.0],
        "controls": {"subtraction": False, "random_seeds": []},
        "conditions": ["plain"],
        "tasks": ["arith"],
        "limit": 6,
        "max_new_tokens": 6,
        "bootstrap_resamples": 1000,
        "backend": {"name": "hf", "device": "cpu", "batch_size": 8},
        "atlas": {"blocks": 2},
        "slices": [{"name": "early", "layers": "0-1"}],
    }
    raw.update(overrides)
    return raw


@pytest.fixture(scope="module")
def atlas_run(block_pair: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("atlas") / "run"
    run_study(parse_study(study(block_pair)), out, progress=False)
    return out


def cells_by_variant(run: Path) -> dict[str, tuple]:
    """Variant name → (cell, samples) of every planned cell."""
    plan = json.loads((run / "study.json").read_text())
    out = {}
    for entry in plan["cells"]:
        data = json.loads((run / "cells" / f"{entry['key']}.json").read_text())
        out[entry["variant"]] = (load_cell(run / "cells", entry["key"]), data["samples"])
    return out


def test_only_part_and_all_but_part_make_up_v(atlas_run: Path) -> None:
    plan = json.loads((atlas_run / "study.json").read_text())
    rows = {e["variant"]: e for e in plan["cells"]}
    record = plan["atlas"][next(iter(plan["atlas"]))]
    assert [p["label"] for p in record["parts"]] == [
        "attention L0–1",
        "attention L2–3",
        "mlp L0–1",
        "mlp L2–3",
    ]
    names = list(read_vector(atlas_run / "vectors" / "v").shapes)
    for part in record["parts"]:
        only, rest = rows[part["only"]], rows[part["all_but"]]
        assert only["kind"] == rest["kind"] == "slice" and only["alpha"] == rest["alpha"] == 1.0
        a, b = selection_from_record(only["selection"]), selection_from_record(rest["selection"])
        assert all(a.factor(n, LAYERS) + b.factor(n, LAYERS) == 1.0 for n in names)
        chosen = [n for n in names if a.selects(n)]
        assert chosen and all(layer_of(n) in part["layers"] for n in chosen)
    # Every "only P" runs before every "all but P": consecutive cells differ in two parts of v, so
    # each α switch rewrites only those (the cells run in plan order).
    order = [e["variant"] for e in plan["cells"]]
    onlys = [order.index(p["only"]) for p in record["parts"]]
    all_buts = [order.index(p["all_but"]) for p in record["parts"]]
    assert onlys == sorted(onlys) and all_buts == sorted(all_buts) and max(onlys) < min(all_buts)


def test_parts_outside_the_block_change_nothing(atlas_run: Path) -> None:
    cells = cells_by_variant(atlas_run)
    target, target_samples = cells["target"]
    full, full_samples = cells["target + 1·v"]
    assert [s["response"] for s in full_samples] != [s["response"] for s in target_samples]  # v does act
    for group in ("attention", "mlp"):
        only, only_samples = cells[f"target + 1·v[{group} L2–3]"]
        rest, rest_samples = cells[f"target + 1·v[all but {group} L2–3]"]
        assert only.per_item == target.per_item
        assert [s["response"] for s in only_samples] == [s["response"] for s in target_samples]
        assert only.extra["kl"]["mean"] == 0.0  # the same weights: the same next-token distribution
        assert [s["response"] for s in rest_samples] == [s["response"] for s in full_samples]
        assert rest.extra["kl"]["mean"] == full.extra["kl"]["mean"] > 0.0


def test_report_adjusts_the_atlas_p_values_with_holm(atlas_run: Path) -> None:
    results = json.loads((atlas_run / "results.json").read_text())
    (atlas,) = results["atlas"]
    parts = atlas["parts"]
    raw = [p["only"]["mcnemar_p"] for p in parts] + [p["leave_one_out"]["mcnemar_p"] for p in parts]
    expected = holm_adjusted(raw)
    assert [p["only_p_holm"] for p in parts] + [p["leave_one_out_p_holm"] for p in parts] == expected
    assert atlas["holm_family"] == 8
    report = (atlas_run / "report.md").read_text()
    assert "## Atlas of v" in report and "Holm" in report
    assert (atlas_run / "plots" / "atlas_plain_arith.png").is_file()


def test_a_rerun_with_one_more_slice_computes_only_that_slice(
    block_pair: dict[str, Path], atlas_run: Path, tmp_path: Path
) -> None:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(atlas_run, out)
    slices = [
        {"name": "early", "layers": "0-1"},
        {"name": "mlp only", "classes": ["mlp.gate", "mlp.up", "mlp.down"]},
    ]
    before = len(list((out / "cells").glob("*.json")))
    run = run_study(parse_study(study(block_pair, slices=slices)), out, resume=True, progress=False)
    assert run.computed == 1 and run.cached == before
    old = {p.stem for p in (atlas_run / "cells").glob("*.json")}
    assert [c.variant.name for c in run.cells if c.cache_key not in old] == ["target + 1·v[mlp only]"]


def test_a_study_with_an_atlas_and_a_search_writes_one_report(
    block_pair: dict[str, Path], tmp_path: Path
) -> None:
    """The search may tune another model than the study's targets (the demo's instruct model); its
    section, the atlas, KL and response lengths all land in the one report and results.json."""
    search = {"task": "arith", "target": str(block_pair["sft"]), "dev": 4, "test": 5, "trials": 2}
    out = tmp_path / "run"
    run_study(parse_study(study(block_pair, slices=[], search=search)), out, progress=False)
    report = (out / "report.md").read_text()
    for heading in (
        "## Atlas of v",
        "## α search",
        "## Beside accuracy: KL to the target and response length",
    ):
        assert heading in report
    results = json.loads((out / "results.json").read_text())
    assert results["atlas"] and results["search"]
    for cell in results["cells"]:
        samples = json.loads((out / "cells" / f"{cell['cache_key']}.json").read_text())["samples"]
        lengths = [s["n_generated_tokens"] for s in samples]
        assert cell["tokens_mean"] == pytest.approx(sum(lengths) / len(lengths))
        assert cell["tokens_median"] == pytest.approx(float(np.median(lengths)))
        assert all(0 <= n <= 6 for n in lengths)  # max_new_tokens 6


def test_a_slice_that_selects_nothing_of_a_vector_folder_is_refused_before_anything_is_written(
    block_pair: dict[str, Path], atlas_run: Path, tmp_path: Path
) -> None:
    raw = study(block_pair, slices=[{"name": "nothing", "include": ["no_such_tensor"]}])
    del raw["donors"]
    raw["vector"] = str(atlas_run / "vectors" / "v")
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(study_file), "-o", str(out)])
    assert_user_error(result, "slices[0] (nothing): selects no tensor of v")
    assert not out.exists()


def test_a_slice_that_selects_nothing_of_an_extracted_vector_is_refused_before_any_cell(
    block_pair: dict[str, Path], tmp_path: Path
) -> None:
    """v made from the donors in the run: its tensors are known once it is extracted, before any
    model is loaded; the run folder holds the config and v, no cell and no report."""
    raw = study(block_pair, atlas=None, slices=[{"name": "nothing", "include": ["no_such_tensor"]}])
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(study_file), "-o", str(out)])
    assert_user_error(result, "target + 1·v[nothing]: selects no tensor of v")
    assert not list((out / "cells").glob("*.json")) and not (out / "report.md").exists()
