"""The α search on a tiny real model: dev and test never overlap, a search killed with SIGKILL and
resumed ends with the trials of an uninterrupted one, the test split is evaluated once per state,
and bad searches stop before anything is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fixtures import Family
from helpers import assert_user_error
from rvec.cli import app
from rvec.eval.data import DataSource
from rvec.eval.tasks import get_task
from rvec.study.cells import load_cell
from rvec.study.config import parse_study
from rvec.study.runner import run_tune
from rvec.study.split import make_split

SRC = Path(__file__).resolve().parents[2] / "src"


def search_study(family: Family, **search) -> dict:
    return {
        "name": "tune",
        "donors": {"sft": str(family.sft), "rl": str(family.rl)},
        "targets": [str(family.target)],
        "controls": {"subtraction": False, "random_seeds": []},
        "conditions": ["plain"],
        "tasks": ["arith"],
        "max_new_tokens": 4,
        "bootstrap_resamples": 1000,
        "backend": {"name": "hf", "device": "cpu", "batch_size": 8},
        "search": {
            "task": "arith",
            "dev": 4,
            "test": 5,
            "profile": 2,
            "bounds": [0.0, 2.0],
            "trials": 5,
            **search,
        },
    }


def trials_of(run: Path) -> list[tuple[int, dict, float]]:
    record = json.loads((run / "search" / "search.json").read_text())
    return [(t["number"], t["params"], t["value"]) for t in record["trials"]]


def test_dev_and_test_never_overlap() -> None:
    docs = get_task("arith").docs(DataSource(None))
    for seed in (0, 1, 1234):
        for dev, test in ((1, 999), (100, 150), (500, None), (999, 1)):
            split = make_split("arith", docs, dev=dev, test=test, seed=seed)
            assert not set(split.dev) & set(split.test)
            assert len(split.dev) == dev and len(split.test) == (test or len(docs) - dev)
            order = {d.doc_id: i for i, d in enumerate(docs)}
            assert [order[i] for i in split.dev] == sorted(order[i] for i in split.dev)  # the task's order


@pytest.fixture(scope="module")
def uninterrupted(qwen_untied: Family, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """A whole search in one go, counting evaluations of the test items."""
    import rvec.eval.runner as runner

    out = tmp_path_factory.mktemp("tune") / "run"
    config = parse_study(search_study(qwen_untied))
    calls: list[tuple[str, ...]] = []
    real = runner.evaluate

    def counting(lm, **kwargs):
        calls.append((lm.fingerprint, *(kwargs.get("doc_ids") or ())))
        return real(lm, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "evaluate", counting)
        run_tune(config, out, progress=False)
        first = list(calls)
        run_tune(config, out, resume=True, progress=False)  # everything cached: nothing evaluated again
    assert calls == first
    return out, first


def test_the_search_keeps_dev_and_test_apart_in_its_cells(uninterrupted: tuple[Path, list]) -> None:
    out, _ = uninterrupted
    record = json.loads((out / "search" / "search.json").read_text())
    dev, test = set(record["split"]["dev"]), set(record["split"]["test"])
    assert len(dev) == 4 and len(test) == 5 and not dev & test
    for trial in record["trials"]:
        assert set(load_cell(out / "cells", trial["key"]).per_item) == dev
    for key in record["test"].values():
        assert set(load_cell(out / "cells", key).per_item) == test
    assert record["trials"][0]["params"] == {"block0": 1.0, "block1": 1.0}  # trial 0 is v as extracted
    report = (out / "report.md").read_text()
    assert "## α search on arith" in report and "### Dev vs test" in report
    assert (out / "plots" / "search.png").is_file()


def test_the_test_split_is_evaluated_once_per_state(uninterrupted: tuple[Path, list]) -> None:
    out, calls = uninterrupted
    record = json.loads((out / "search" / "search.json").read_text())
    test = tuple(record["split"]["test"])
    on_test = [c for c in calls if c[1:] == test]
    states = {load_cell(out / "cells", k).cache_key for k in record["test"].values()}
    assert len(on_test) == len(states) == len(set(on_test))  # each state once; reruns evaluate nothing


def test_a_killed_search_resumes_to_the_same_trials(
    qwen_untied: Family, uninterrupted: tuple[Path, list], tmp_path: Path
) -> None:
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(search_study(qwen_untied)))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [
        sys.executable,
        "-c",
        "from rvec.cli import main; main()",
        "tune",
        str(study_file),
        "-o",
        str(out),
    ]
    proc = subprocess.Popen([*command, "--no-progress"], env=env, stderr=subprocess.PIPE, text=True)
    seen = 0
    for line in proc.stderr:  # type: ignore[union-attr]
        seen += line.startswith("trial ")
        if seen == 2:  # two trials told: the third is under way
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "search" / "search.json").exists()
    resumed = subprocess.run([*command, "--resume", "--no-progress"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert trials_of(out) == trials_of(uninterrupted[0])


@pytest.mark.parametrize(
    ("search", "fragment"),
    [
        ({"dev": 1001}, "search.dev: 1001 items, but arith has 1000; lower search.dev"),
        ({"dev": 1000}, "search.dev: arith has 1000 items and dev takes them all, leaving none for test"),
        ({"bounds": [2.0, -1.0]}, "search.bounds: [2, -1] is reversed or empty"),
        ({"dev": 600, "test": 500}, "search.test: 500 items, but arith has 400 left after the 600 dev items"),
    ],
)
def test_a_bad_search_is_one_line_and_writes_nothing(
    qwen_untied: Family, tmp_path: Path, search: dict, fragment: str
) -> None:
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(search_study(qwen_untied, **search)))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["tune", str(study_file), "-o", str(out)])
    assert_user_error(result, fragment)
    assert not out.exists()


def test_tune_needs_a_search(qwen_untied: Family, tmp_path: Path) -> None:
    raw = search_study(qwen_untied)
    del raw["search"]
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["tune", str(study_file), "-o", str(tmp_path / "run")])
    assert_user_error(result, "no search: section to run")
    assert not (tmp_path / "run").exists()
