"""The eval runner, its cache and ``evaluate_model``: a tiny random Llama for the mechanics (fast), the
real SmolLM2-135M-Instruct for the output layout (slow). Data is a tiny local folder in the
``shared/data`` layout, so nothing here needs the network or the shared data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from rvec.errors import CodeExecutionNotAllowedError, InvalidArgumentError
from rvec.eval import presets
from rvec.eval.cache import CacheKey, ResponseCache, request_digest
from rvec.eval.runner import evaluate
from rvec.eval.types import GenerateRequest, LoglikelihoodRequest, Response
from rvec.model.evaluate import evaluate_model
from rvec.model.fingerprint import weights_fingerprint
from rvec.model.hf.backend import HFBackend
from rvec.model.hf.settings import HFSettings
from rvec.model.registry import parse_backend_settings

GSM8K_ROWS = [
    {
        "question": "Tom has 3 apples and buys 2 more. How many apples does he have?",
        "answer": "3+2=5\n#### 5",
    },
    {"question": "A box holds 4 pens. How many pens are in 3 boxes?", "answer": "4*3=12\n#### 12"},
    {"question": "Sara had 10 sweets and ate 4. How many are left?", "answer": "10-4=6\n#### 6"},
]
SCIQ_ROWS = [
    {
        "question": "What gas do plants take in for photosynthesis?",
        "distractor1": "oxygen",
        "distractor2": "nitrogen",
        "distractor3": "helium",
        "correct_answer": "carbon dioxide",
        "support": "Plants use carbon dioxide, water and light to make sugar.",
    },
    {
        "question": "What is the closest star to Earth?",
        "distractor1": "Sirius",
        "distractor2": "Vega",
        "distractor3": "Polaris",
        "correct_answer": "the Sun",
        "support": "",
    },
    {
        "question": "Water freezes at how many degrees Celsius?",
        "distractor1": "10",
        "distractor2": "100",
        "distractor3": "-10",
        "correct_answer": "0",
        "support": "At sea level pure water freezes at 0 degrees Celsius.",
    },
]


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """Three GSM8K and three SciQ items in the shared/data layout."""
    root = tmp_path / "data"
    (root / "gsm8k").mkdir(parents=True)
    (root / "gsm8k" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM8K_ROWS))
    (root / "sciq").mkdir()
    (root / "sciq" / "test.json").write_text(json.dumps(SCIQ_ROWS))
    plus = root / "adversarial" / "gsm-plus"
    plus.mkdir(parents=True)
    rows = [
        {
            "question": row["question"].replace("3", "30"),
            "solution": "",
            "answer": "50",
            "perturbation_type": "digit expansion",
            "seed_question": row["question"],
            "seed_solution": row["answer"],
            "seed_answer": row["answer"].split("####")[-1].strip(),
        }
        for row in GSM8K_ROWS[1:]  # seeds 1 and 2 only: the pairing must follow doc ids, not positions
    ]
    (plus / "gsmplus_testmini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture
def short_preset(monkeypatch: pytest.MonkeyPatch) -> str:
    """``paper`` with small token budgets, registered as ``test-short`` for this test only."""
    base = presets.get_preset("paper")
    tasks = {k: v.model_copy(update={"max_new_tokens": 12}) for k, v in base.tasks.items()}
    preset = base.model_copy(update={"name": "test-short", "tasks": tasks})
    monkeypatch.setitem(presets.PRESETS, "test-short", preset)
    return "test-short"


class SimulatedCrash(Exception):
    """Raised by :class:`CountingBackend` to interrupt a run the way Ctrl-C or an OOM would."""


class CountingBackend(HFBackend):
    """A real HFBackend that counts the requests it is asked for, and can crash after N results."""

    def __init__(self, *args, crash_after: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.asked = 0
        self.finished = 0
        self.crash_after = crash_after

    def generate(self, requests: Sequence[GenerateRequest], *, on_result=None) -> list[Response]:
        self.asked += len(requests)
        return super().generate(requests, on_result=self._relay(on_result))

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, on_result=None) -> list[Response]:
        self.asked += len(requests)
        return super().loglikelihood(requests, on_result=self._relay(on_result))

    def _relay(self, on_result):
        def relay(index: int, response: Response) -> None:
            if self.crash_after is not None and self.finished >= self.crash_after:
                raise SimulatedCrash(f"crash after {self.finished} results")
            self.finished += 1
            if on_result is not None:
                on_result(index, response)

        return relay


@pytest.fixture(scope="module")
def tiny_model(llama_tied):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(llama_tied.target, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(llama_tied.target)


def counting(tiny_model, **kwargs) -> CountingBackend:
    model, tokenizer = tiny_model
    return CountingBackend(model, tokenizer, fingerprint="tiny", batch_size=2, progress=False, **kwargs)


def texts(result) -> dict[str, list[str | None]]:
    return {key: [r.response for r in records] for key, records in result.samples.items()}


# ---------------------------------------------------------------------------------- refusals
def test_humaneval_is_refused_before_anything_is_generated(tiny_model) -> None:
    lm = counting(tiny_model)
    with pytest.raises(CodeExecutionNotAllowedError) as err:
        evaluate(lm, tasks=["gsm8k", "humaneval"], preset="paper", progress=False)
    message = str(err.value)
    assert "--allow-code-execution" in message and "\n" not in message
    assert lm.asked == 0


def test_a_perturbation_that_applies_to_no_task_is_an_error(tiny_model, tiny_data: Path) -> None:
    lm = counting(tiny_model)
    with pytest.raises(InvalidArgumentError, match="shuffle applies to none of the tasks"):
        evaluate(
            lm, tasks=["gsm8k"], preset="paper", perturbations=["shuffle"], data_dir=tiny_data, progress=False
        )
    assert lm.asked == 0


def test_evaluate_model_wants_one_alpha_per_vector() -> None:
    with pytest.raises(InvalidArgumentError, match="one --alpha per --vector"):
        evaluate_model("unused", vectors=["v"], alphas=[], tasks=["gsm8k"], preset="paper")


def test_an_adversarial_task_is_reported_beside_its_clean_seeds(
    tiny_model, tiny_data: Path, short_preset: str, tmp_path: Path
) -> None:
    result = evaluate(
        counting(tiny_model),
        tasks=["gsm-plus:digit-expansion"],
        preset=short_preset,
        data_dir=tiny_data,
        out_dir=tmp_path,
        progress=False,
    )
    assert set(result.scores) == {"gsm-plus:digit-expansion", "gsm-plus:seed"}
    assert [r.doc_id for r in result.samples["gsm-plus:seed"]] == ["1", "2"]
    pair = json.loads((tmp_path / "results.json").read_text())["rvec"]["pairs"]["gsm-plus:digit-expansion"]
    assert pair["clean_task"] == "gsm-plus:seed" and pair["n_pairs"] == 2
    assert pair["both_correct"] + pair["clean_only"] + pair["perturbed_only"] + pair["neither"] == 2


# -------------------------------------------------------------------------------- resumption
def test_an_interrupted_run_resumes_without_redoing_finished_items(
    tiny_model, tiny_data: Path, short_preset: str, tmp_path: Path
) -> None:
    args = dict(tasks=["gsm8k", "sciq"], preset=short_preset, limit=3, data_dir=tiny_data, progress=False)
    reference = evaluate(counting(tiny_model), out_dir=tmp_path / "reference", **args)
    total = 3 + 3 + 3  # gsm8k and sciq generations, plus sciq's log-likelihood scoring under `paper`

    out = tmp_path / "run"
    crashing = counting(tiny_model, crash_after=4)
    with pytest.raises(SimulatedCrash):
        evaluate(crashing, out_dir=out, **args)
    assert not (out / "results.json").exists()  # nothing that looks complete

    resumed = counting(tiny_model)
    result = evaluate(resumed, out_dir=out, **args)
    assert resumed.asked == total - 4
    assert texts(result) == texts(reference)
    assert result.scores == reference.scores

    again = counting(tiny_model)
    evaluate(again, out_dir=out, **args)
    assert again.asked == 0


def test_the_cache_misses_when_the_request_changes(
    tiny_model, tiny_data: Path, short_preset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = dict(tasks=["gsm8k"], preset=short_preset, limit=2, data_dir=tiny_data, progress=False)
    evaluate(counting(tiny_model), out_dir=tmp_path, **args)
    # Same preset name and version, different token budget: a stale answer must not come back.
    changed = presets.PRESETS[short_preset]
    tasks = {k: v.model_copy(update={"max_new_tokens": 5}) for k, v in changed.tasks.items()}
    monkeypatch.setitem(presets.PRESETS, short_preset, changed.model_copy(update={"tasks": tasks}))
    lm = counting(tiny_model)
    evaluate(lm, out_dir=tmp_path, **args)
    assert lm.asked == 2


# -------------------------------------------------------------------------------- the cache
def test_cache_round_trips_bitwise_and_survives_a_torn_line(tmp_path: Path) -> None:
    key = CacheKey("model", "hf/float32:x", "paper@1", "plain", "sciq", None, 1234)
    request = LoglikelihoodRequest(None, "Q", (" a", " b"))
    digest = request_digest(request)
    response = Response(loglikelihoods=(-1.2345678901234567, -0.1), continuation_lengths=(2, 2))
    entry = ResponseCache(tmp_path).open(key)
    entry.put("0", digest, response)
    entry.close()
    path = tmp_path / key.filename()
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"doc_id": "1", "request": "tor')  # a crash mid-line

    reopened = ResponseCache(tmp_path).open(key)
    assert reopened.get("0", digest) == response
    assert reopened.get("1", digest) is None
    assert reopened.get("0", "another request") is None
    reopened.put("1", digest, response)
    reopened.close()
    assert ResponseCache(tmp_path).open(key).get("1", digest) == response
    assert (
        ResponseCache(tmp_path).open(CacheKey("other", *list(key.__dict__.values())[1:])).get("0", digest)
        is None
    )


# ------------------------------------------------------------------------------ evaluate_model
def test_alpha_zero_gives_exactly_the_base_model(
    llama_tied, tiny_data: Path, short_preset: str, tmp_path: Path
) -> None:
    from rvec.vector.extract import extract

    vector = extract(llama_tied.sft, llama_tied.rl, tmp_path / "vec")
    args = dict(
        tasks=["gsm8k"],
        preset=short_preset,
        limit=2,
        data_dir=tiny_data,
        backend=HFSettings(batch_size=2),
        progress=False,
    )
    base = evaluate_model(str(llama_tied.target), out_dir=tmp_path / "base", **args)
    zero = evaluate_model(
        str(llama_tied.target), vectors=[str(vector.path)], alphas=[0.0], out_dir=tmp_path / "zero", **args
    )
    evaluate_model(
        str(llama_tied.target), vectors=[str(vector.path)], alphas=[1.0], out_dir=tmp_path / "one", **args
    )
    assert texts(zero) == texts(base)
    fingerprints = [
        json.loads((tmp_path / name / "results.json").read_text())["rvec"]["model_fingerprint"]
        for name in ("base", "zero", "one")
    ]
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]
    assert fingerprints[2] == weights_fingerprint(fingerprints[0], [(vector.content_hash, 1.0)])


def test_eval_dtype_is_chosen_by_name_and_an_unknown_one_is_refused_before_loading(
    llama_tied, tiny_data: Path, short_preset: str, tmp_path: Path
) -> None:
    with pytest.raises(
        InvalidArgumentError, match="backend hf: dtype: dtype 'int8': expected float32, bfloat16 or float16"
    ):
        parse_backend_settings({"name": "hf", "dtype": "int8"})
    evaluate_model(
        str(llama_tied.target),
        tasks=["gsm8k"],
        preset=short_preset,
        limit=1,
        data_dir=tiny_data,
        backend=parse_backend_settings({"dtype": "bfloat16"}),
        out_dir=tmp_path / "bf16",
        progress=False,
    )
    backend = json.loads((tmp_path / "bf16" / "results.json").read_text())["rvec"]["backend"]
    assert backend["name"] == "hf/bfloat16" and backend["tie_margin"] == 0.0
    assert backend["settings"] == {"name": "hf", "device": "auto", "dtype": "bfloat16", "batch_size": 16}


def test_rvec_eval_selects_the_backend_by_name_and_records_its_settings(
    llama_tied, tiny_data: Path, short_preset: str, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from rvec.cli import app

    args = ["eval", str(llama_tied.target), "--tasks", "gsm8k", "--preset", short_preset, "--limit", "1"]
    args += ["--data-dir", str(tiny_data), "--device", "cpu", "--batch-size", "2", "--no-progress"]
    unknown = CliRunner().invoke(app, [*args, "--backend", "vlm"])
    assert unknown.exit_code == 1
    assert unknown.stderr == "rvec: error: unknown backend 'vlm'; valid: hf, vllm\n"
    ok = CliRunner().invoke(app, [*args, "--backend", "hf", "-o", str(tmp_path / "e")])
    assert ok.exit_code == 0, ok.output
    backend = json.loads((tmp_path / "e" / "results.json").read_text())["rvec"]["backend"]
    assert backend["name"] == "hf/float32"
    assert backend["settings"] == {"name": "hf", "device": "cpu", "dtype": "auto", "batch_size": 2}


# -------------------------------------------------------------------------- real model, slow
@pytest.mark.slow
def test_results_json_and_samples_layout(smollm2, tiny_data: Path, short_preset: str, tmp_path: Path) -> None:
    model, tokenizer, fingerprint = smollm2
    lm = HFBackend(model, tokenizer, fingerprint=fingerprint, batch_size=8, progress=False)
    result = evaluate(
        lm,
        tasks=["gsm8k", "sciq"],
        preset=short_preset,
        perturbations=["typo:0.05"],
        limit=2,
        data_dir=tiny_data,
        out_dir=tmp_path,
        progress=True,
    )
    doc = json.loads((tmp_path / "results.json").read_text())
    keys = {"gsm8k", "sciq", "gsm8k+typo:0.05", "sciq+typo:0.05"}
    assert set(doc["results"]) == keys == set(result.scores)
    gsm = doc["results"]["gsm8k"]
    assert gsm["alias"] == "gsm8k" and 0.0 <= gsm["acc,last-number"] <= 1.0
    assert "acc_stderr,last-number" in gsm
    assert {"acc,letter", "acc,none", "acc_norm,none"} <= set(doc["results"]["sciq"])
    for section in ("configs", "versions", "n-shot", "higher_is_better", "n-samples"):
        assert set(doc[section]) == keys, section
    assert doc["n-samples"]["gsm8k"] == {"original": 3, "effective": 2}
    assert doc["configs"]["gsm8k+typo:0.05"]["clean_task"] == "gsm8k"
    own = doc["rvec"]
    assert own["model_fingerprint"] == fingerprint
    assert own["preset"]["name"] == short_preset and own["condition"] == "plain"
    assert set(own["data_fingerprints"]) == keys
    assert own["generated_tokens"] > 0 and own["tokens_per_second"] > 0
    pair = own["pairs"]["gsm8k+typo:0.05"]
    assert pair["clean_task"] == "gsm8k" and pair["n_pairs"] == 2
    assert pair["clean"] == result.scores["gsm8k"]["acc,last-number"]

    lines = [json.loads(x) for x in (tmp_path / "samples" / "gsm8k+typo_0.05.jsonl").read_text().splitlines()]
    assert [x["doc_id"] for x in lines] == ["0", "1"]
    for field in ("prompt", "response", "extracted", "gold", "correct", "perturbation", "metrics"):
        assert field in lines[0], field
    assert lines[0]["perturbation"] == "typo:0.05" and lines[0]["gold"] == "5"
    sciq = [json.loads(x) for x in (tmp_path / "samples" / "sciq.jsonl").read_text().splitlines()]
    assert len(sciq) == 2
