"""The study report rendered from hand-built cells, every printed number recomputed here from per_item."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from rvec.eval.stats import format_delta, format_p, format_pct, paired_comparison, stratified_comparison
from rvec.study.report import ReportError, render_report
from rvec.study.types import CellResult, Variant

RESAMPLES, SEED = 2000, 7
PNG = b"\x89PNG\r\n\x1a\n"

BASE = Variant("target", "baseline", "Qwen/T")
HALF = Variant("target + 0.5·v", "vector", "Qwen/T", vector="v", alpha=0.5)
ONE = Variant("target + 1·v", "vector", "Qwen/T", vector="v", alpha=1.0)
SUB = Variant("target − 1·v", "subtraction", "Qwen/T", vector="v", alpha=-1.0)
RAND = Variant("target + 1·random", "random-control", "Qwen/T", vector="random", alpha=1.0)
RL = Variant("RL donor", "donor", "Qwen/RL")

ROWS = [
    (BASE, "plain", 0.50),
    (BASE, "think", 0.55),
    (HALF, "plain", 0.58),
    (ONE, "plain", 0.65),
    (ONE, "think", 0.70),
    (SUB, "plain", 0.35),
    (RAND, "plain", 0.50),
    (RL, "think", 0.75),
    (HALF, "think", 0.62),  # with ONE/think: a second sweep line, compared with the baseline under think
]
CLEAN = {"gsm8k": 60, "sciq": 50, "bbh:navigate": 30, "bbh:snarks": 24}
TYPO = "gsm8k+typo:0.05"
VECTOR_NORMS = {
    "total_norm": 3.0,
    "per_layer": {"0": 1.0, "1": 2.0, "2": 1.5},
    "per_module": {"mlp": 2.0, "attn": 1.0},
    "per_layer_module": {"0": {"mlp": 0.8, "attn": 0.6}, "1": {"mlp": 1.8}, "2": {"mlp": 1.2, "attn": 0.9}},
}


def _cell(
    variant: Variant, condition: str, task: str, per_item: dict[str, bool], clean_task: str
) -> CellResult:
    acc = sum(per_item.values()) / len(per_item)
    return CellResult(
        variant=variant,
        condition=condition,
        task=task,
        primary="exact_match",
        scores={"exact_match": acc, "strict_match": acc / 2},
        per_item=per_item,
        clean_task=clean_task,
        seconds=1.5,
        generated_tokens=100,
    )


def _cells() -> list[CellResult]:
    rng = random.Random(0)
    cells = []
    for variant, condition, p in ROWS:
        for task, n in CLEAN.items():
            cells.append(_cell(variant, condition, task, {str(i): rng.random() < p for i in range(n)}, task))
    for variant, condition, p in ROWS[:4]:
        # 50 of the 60 GSM8K ids, plus two ids GSM8K does not have (ignored when pairing).
        ids = [str(i) for i in range(10, 60)] + ["x1", "x2"]
        cells.append(_cell(variant, condition, TYPO, {k: rng.random() < p - 0.1 for k in ids}, "gsm8k"))
    return cells


def _find(cells: list[CellResult], variant: str, condition: str, task: str) -> CellResult:
    (cell,) = [c for c in cells if (c.variant.name, c.condition, c.task) == (variant, condition, task)]
    return cell


def _cmp(a: CellResult, b: CellResult):
    return paired_comparison(a.per_item, b.per_item, resamples=RESAMPLES, seed=SEED)


def _bbh_cmp(cells: list[CellResult], a: tuple[str, str], b: tuple[str, str], subtasks: list[str]):
    strata = {s: (_find(cells, *a, s).per_item, _find(cells, *b, s).per_item) for s in subtasks}
    return stratified_comparison(strata, resamples=RESAMPLES, seed=SEED)


def _p(p: float) -> str:
    return f"p{format_p(p)}" if p < 0.001 else f"p={format_p(p)}"


def _render(cells: list[CellResult], out: Path, **overrides) -> dict:
    kwargs = {
        "out_dir": out,
        "baseline": "target",
        "title": "Demo study",
        "notes": ["the demo uses a random control in place of v"],
        "vector_norms": VECTOR_NORMS,
        "config_text": "name: demo\n",
        "resamples": RESAMPLES,
        "seed": SEED,
    }
    return render_report(cells, **{**kwargs, **overrides})


def _table_row(report: str, section: str, first_cells: str) -> list[str]:
    """Cells of the first table row under ``## section`` that starts with ``first_cells``."""
    text = report.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    (line,) = [ln for ln in text.splitlines() if ln.startswith(f"| {first_cells} |")]
    return [c.strip() for c in line.strip("|").split(" | ")]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[CellResult], Path, dict, str]:
    cells = _cells()
    out = tmp_path_factory.mktemp("run")
    written = _render(cells, out)
    return cells, out, written, (out / "report.md").read_text(encoding="utf-8")


def test_report_has_every_section_and_table_header(rendered) -> None:
    _, _, _, report = rendered
    assert report.startswith("# Demo study\n\n- the demo uses a random control in place of v\n")
    assert "| variant | condition | gsm8k | sciq | bbh |" in report
    assert "| subtask | target / plain | target / think | target + 0.5·v / plain |" in report
    assert (
        "| task | clean task | variant | condition | n | clean | perturbed | perturbed − clean [CI] | p "
        "| Δ vs baseline [CI] | p (vs baseline) |" in report
    )
    assert (
        "| variant | kind | α | condition | task | accuracy | mean tokens | Δ vs baseline [CI] | p | flips ↑ | flips ↓ |"
        in report
    )
    assert f"95% paired bootstrap CI, {RESAMPLES} resamples, seed {SEED}" in report
    assert "exact McNemar p" in report and "flips = items that changed correctness" in report
    assert "```yaml\nname: demo\n```" in report
    assert "unweighted mean over the 2 BBH subtasks" in report


def test_main_table_deltas_equal_direct_recomputation(rendered) -> None:
    cells, _, _, report = rendered
    base_row = _table_row(report, "Main results", "target | plain")
    assert base_row[2] == format_pct(
        _find(cells, "target", "plain", "gsm8k").accuracy
    )  # no Δ on the baseline
    for variant, condition, _ in ROWS[1:]:
        row = _table_row(report, "Main results", f"{variant.name} | {condition}")
        for i, task in enumerate(["gsm8k", "sciq"], start=2):
            base, cell = _find(cells, "target", "plain", task), _find(cells, variant.name, condition, task)
            c = _cmp(base, cell)
            assert row[i] == f"{format_pct(cell.accuracy)} ({format_delta(c)}, {_p(c.mcnemar_p)})"


def test_bbh_column_is_the_unweighted_mean_with_a_stratified_delta(rendered) -> None:
    cells, _, _, report = rendered
    subtasks = ["bbh:navigate", "bbh:snarks"]
    for variant, condition, _ in ROWS:
        accs = [_find(cells, variant.name, condition, s).accuracy for s in subtasks]
        mean = (accs[0] + accs[1]) / 2
        cell = _table_row(report, "Main results", f"{variant.name} | {condition}")[4]
        assert cell.split(" ")[0] == format_pct(mean)
        if (variant.name, condition) != ("target", "plain"):
            c = _bbh_cmp(cells, ("target", "plain"), (variant.name, condition), subtasks)
            base_accs = [_find(cells, "target", "plain", s).accuracy for s in subtasks]
            assert c.diff == pytest.approx(mean - sum(base_accs) / 2)
            assert cell == f"{format_pct(mean)} ({format_delta(c)}, {_p(c.mcnemar_p)})"
    # Each subtask in its own table, with the same paired format.
    row = _table_row(report, "BIG-Bench Hard subtasks", "navigate")
    base, cell = (
        _find(cells, "target", "plain", "bbh:navigate"),
        _find(cells, "RL donor", "think", "bbh:navigate"),
    )
    c = _cmp(base, cell)
    assert row[0] == "navigate" and row[1] == format_pct(base.accuracy)
    column = 1 + [(v, cond) for v, cond, _ in ROWS].index((RL, "think"))  # the report keeps ROWS' order
    assert row[column] == f"{format_pct(cell.accuracy)} ({format_delta(c)}, {_p(c.mcnemar_p)})"


def test_adversarial_rows_pair_with_the_clean_items(rendered) -> None:
    cells, _, _, report = rendered
    for variant, condition, _ in ROWS[:4]:
        row = _table_row(
            report, "Adversarial and perturbed tasks", f"{TYPO} | gsm8k | {variant.name} | {condition}"
        )
        clean, pert = (
            _find(cells, variant.name, condition, "gsm8k"),
            _find(cells, variant.name, condition, TYPO),
        )
        drop = _cmp(clean, pert)
        assert drop.n == 50  # the two ids GSM8K does not have are ignored
        assert row[4:9] == [
            "50",
            format_pct(drop.acc_a),
            format_pct(drop.acc_b),
            format_delta(drop),
            format_p(drop.mcnemar_p),
        ]
        if (variant.name, condition) == ("target", "plain"):
            assert row[9:] == ["baseline", "—"]
        else:
            vs = _cmp(_find(cells, "target", "plain", TYPO), pert)
            assert row[9:] == [format_delta(vs), format_p(vs.mcnemar_p)]


def test_controls_table_lists_sweep_subtraction_and_random(rendered) -> None:
    cells, _, _, report = rendered
    section = report.split("## Controls", 1)[1].split("\n## ", 1)[0]
    for name in ("target + 0.5·v", "target + 1·v", "target − 1·v", "target + 1·random"):
        assert f"| {name} |" in section
    assert "| RL donor |" not in section and "| target |" not in section
    row = _table_row(
        report,
        "Controls: subtraction, random vector, α sweep",
        "target − 1·v | subtraction | -1 | plain | sciq",
    )
    c = _cmp(_find(cells, "target", "plain", "sciq"), _find(cells, "target − 1·v", "plain", "sciq"))
    assert row[5:] == [
        format_pct(c.acc_b),
        "—",  # these cells record no generated lengths
        format_delta(c),
        format_p(c.mcnemar_p),
        str(c.flips_up),
        str(c.flips_down),
    ]


def test_results_csv_has_one_row_per_cell_and_metric(rendered) -> None:
    cells, out, written, _ = rendered
    assert written["results_csv"] == out / "results.csv"
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(c.scores) for c in cells)
    assert list(rows[0]) == [
        "variant",
        "kind",
        "alpha",
        "model",
        "condition",
        "task",
        "clean_task",
        "metric",
        "value",
        "n",
        "tokens_mean",
        "tokens_median",
        "tokens_p90",
    ]
    typo = [
        r
        for r in rows
        if r["task"] == TYPO and r["variant"] == "target + 1·v" and r["metric"] == "exact_match"
    ]
    cell = _find(cells, "target + 1·v", "plain", TYPO)
    assert typo == [
        {
            "variant": "target + 1·v",
            "kind": "vector",
            "alpha": "1.0",
            "model": "Qwen/T",
            "condition": "plain",
            "task": TYPO,
            "clean_task": "gsm8k",
            "metric": "exact_match",
            "value": repr(cell.accuracy),
            "n": "52",
            "tokens_mean": "",
            "tokens_median": "",
            "tokens_p90": "",
        }
    ]


def test_results_json_comparisons_equal_direct_recomputation(rendered) -> None:
    cells, out, _, _ = rendered
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert len(data["cells"]) == len(cells)
    first = data["cells"][0]
    assert first["variant"] == {
        "name": "target",
        "kind": "baseline",
        "model": "Qwen/T",
        "vector": None,
        "alpha": None,
    }
    assert {
        "condition",
        "task",
        "clean_task",
        "primary",
        "scores",
        "n",
        "accuracy",
        "seconds",
        "generated_tokens",
    } <= set(first)
    assert data["baseline"] == {"variant": "target", "condition": "plain"}

    records = data["comparisons"]
    kinds = {r["kind"] for r in records}
    assert {"vs-baseline", "perturbed-vs-clean", "perturbed-vs-baseline", "alpha-sweep-vs-alpha0"} <= kinds
    # Every non-baseline row vs the baseline on every clean task and on the BBH mean, once each.
    assert sum(r["kind"] == "vs-baseline" for r in records) == (len(ROWS) - 1) * (len(CLEAN) + 1)
    for r in records:
        a, b = r["a"], r["b"]
        if r["task"] == "bbh":
            expected = _bbh_cmp(
                cells, (a["variant"], a["condition"]), (b["variant"], b["condition"]), a["subtasks"]
            )
        else:
            expected = _cmp(
                _find(cells, a["variant"], a["condition"], a["task"]),
                _find(cells, b["variant"], b["condition"], b["task"]),
            )
        assert r["comparison"] == expected.to_dict()


def test_plots_are_pngs_linked_from_the_report(rendered) -> None:
    _, out, written, report = rendered
    names = {p.name for p in written["plots"]}
    assert names == {
        "alpha_sweep_gsm8k.png",
        "alpha_sweep_sciq.png",
        "alpha_sweep_bbh.png",
        "conditions.png",
        "vector_norms.png",
    }
    for name in names:
        assert (out / "plots" / name).read_bytes()[:8] == PNG
        assert f"](plots/{name})" in report
    assert "95% paired bootstrap CI of each point's difference vs α = 0" in report


def test_rerender_is_identical_and_drops_stale_plots(tmp_path: Path) -> None:
    cells = _cells()
    _render(cells, tmp_path)
    first = (tmp_path / "report.md").read_bytes(), (tmp_path / "results.json").read_bytes()
    # Without the vector stats and the α = 0.5 variant, neither the norms nor any sweep is drawn.
    fewer = [c for c in cells if c.variant != HALF]
    written = _render(fewer, tmp_path, vector_norms=None)
    assert {p.name for p in written["plots"]} == {"conditions.png"}
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["conditions.png"]
    _render(cells, tmp_path)
    assert ((tmp_path / "report.md").read_bytes(), (tmp_path / "results.json").read_bytes()) == first
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".partial")]


def test_baseline_condition_falls_back_to_the_first_present(tmp_path: Path) -> None:
    cells = [c for c in _cells() if not (c.variant == BASE and c.condition == "plain")]
    _render(cells, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert data["baseline"] == {"variant": "target", "condition": "think"}
    assert "Baseline: **target** under `think`." in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_missing_baseline_and_duplicate_cells_are_errors(tmp_path: Path) -> None:
    cells = _cells()
    with pytest.raises(
        ReportError, match="baseline variant 'nobody' has no cell; variants: RL donor, target"
    ):
        _render(cells, tmp_path, baseline="nobody")
    with pytest.raises(ReportError, match="two cells for variant 'target', condition 'plain', task 'gsm8k'"):
        _render([*cells, cells[0]], tmp_path)
    with pytest.raises(ReportError, match="no cells"):
        _render([], tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_unpaired_missing_and_partial_cells_are_marked_not_hidden(tmp_path: Path) -> None:
    rng = random.Random(1)
    cells = [c for c in _cells() if c.variant in (BASE, ONE)]
    # RL donor: GSM8K on 40 of the 60 items (Δ on shared items, marked †), one BBH subtask (‡).
    cells.append(_cell(RL, "think", "gsm8k", {str(i): rng.random() < 0.7 for i in range(40)}, "gsm8k"))
    cells.append(
        _cell(RL, "think", "bbh:snarks", {str(i): rng.random() < 0.7 for i in range(24)}, "bbh:snarks")
    )
    # A derived task whose doc_ids do not match its clean task's, and one whose clean cell is absent.
    cells.append(_cell(ONE, "plain", "gsm-symbolic", {f"t{i}-0": True for i in range(10)}, "gsm8k"))
    cells.append(
        _cell(ONE, "plain", "gsm-plus:seed+hint", {str(i): True for i in range(10)}, "gsm-plus:seed")
    )
    _render(cells, tmp_path)
    report = (tmp_path / "report.md").read_text(encoding="utf-8")

    row = _table_row(report, "Main results", "RL donor | think")
    gsm = _find(cells, "RL donor", "think", "gsm8k")
    c = _cmp(_find(cells, "target", "plain", "gsm8k"), gsm)
    assert c.n == 40
    assert row[2] == f"{format_pct(gsm.accuracy)}† ({format_delta(c)}, {_p(c.mcnemar_p)})"
    assert row[3] == "—"  # no SciQ cell
    assert row[4].startswith(format_pct(_find(cells, "RL donor", "think", "bbh:snarks").accuracy) + "‡ (")
    assert "† Δ on the items both cells share" in report and "‡ BBH mean over only the subtasks" in report

    sym = _table_row(report, "Adversarial and perturbed tasks", "gsm-symbolic | gsm8k | target + 1·v | plain")
    assert sym[4:8] == ["10", "—", "100.0", "not paired"]
    hint = _table_row(
        report, "Adversarial and perturbed tasks", "gsm-plus:seed+hint | gsm-plus:seed | target + 1·v"
    )
    assert hint[7] == "no clean cell"
    records = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["comparisons"]
    (unpaired,) = [r for r in records if r["b"]["task"] == "gsm-symbolic"]
    assert unpaired["comparison"] is None and "no doc_id is shared" in unpaired["problem"]


def test_a_thinking_study_reports_its_think_blocks(tmp_path: Path) -> None:
    """Cells with a think summary get a row each in the length section's think table."""
    import dataclasses

    from rvec.eval.thinking import ThinkSettings, think_summary

    records = [  # closed, closed, never closed at the budget, never closed before it
        {"closed": True, "tokens_inside": 40, "tokens_outside": 10},
        {"closed": True, "tokens_inside": 60, "tokens_outside": 6},
        {"closed": False, "at_budget": True, "tokens_inside": 128, "tokens_outside": 0},
        {"closed": False, "at_budget": False, "tokens_inside": 12, "tokens_outside": 0},
    ]
    think = think_summary(records, ThinkSettings())
    cells = [
        dataclasses.replace(c, tokens_mean=50.0, tokens_median=48.0, tokens_p90=90.0)
        for c in _cells()
        if c.task == "gsm8k"
    ]
    cells = [dataclasses.replace(c, think=think) if c.condition == "think" else c for c in cells]
    _render(cells, tmp_path)
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert f"Think blocks (closing tag `{ThinkSettings().end_tag}`)" in report
    table = report.split("Think blocks (", 1)[1].split("\n## ", 1)[0].splitlines()
    (row,) = [ln.strip("|").split(" | ") for ln in table if ln.startswith("| RL donor | think | gsm8k |")]
    assert [c.strip() for c in row[3:]] == ["4", "50.0%", "2 (1)", "60.0", "4.0"]
    assert not [ln for ln in table if "| plain |" in ln]  # thinking off: no row
