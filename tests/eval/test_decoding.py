"""Sampled decoding on the eval side: the sampling settings and their one-line errors, per-sample
seeds, run overrides and their names, sampled metrics as results.json names them, the length summary."""

from __future__ import annotations

import hashlib
import statistics
from fractions import Fraction
from math import comb

import pytest

from rvec.errors import InvalidArgumentError
from rvec.eval.decoding import Sampling, draw_requests, sample_seed
from rvec.eval.lengths import length_summary
from rvec.eval.overrides import RunOverrides, apply_overrides, parse_template_args
from rvec.eval.presets import get_preset
from rvec.eval.records import key_scores
from rvec.eval.sampling import pass_ks, per_item, sampled_metrics
from rvec.eval.types import Draw, GenerateRequest, SampleRecord


def request(question: str) -> GenerateRequest:
    return GenerateRequest(({"role": "user", "content": question},), None, ("\n\n",), 64)


# ------------------------------------------------------------------------------- settings, errors
def test_samples_zero_is_one_line() -> None:
    with pytest.raises(InvalidArgumentError) as err:
        Sampling(samples=0, temperature=0.6)
    assert str(err.value) == "samples 0: draw at least 1 sample per item"


def test_temperature_zero_with_several_samples_is_one_line() -> None:
    with pytest.raises(InvalidArgumentError) as err:
        RunOverrides(samples=4).check()
    assert str(err.value) == (
        "temperature 0 with 4 samples: greedy decoding gives the same response every time; "
        "set a temperature > 0 (e.g. 0.6) or draw 1 sample"
    )


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"temperature": -1.0}, "temperature -1.0: must be a number >= 0"),
        ({"temperature": 0.6, "top_p": 0.0}, "top_p 0.0: must lie in (0, 1]"),
        ({"top_p": 0.9}, "top_p 0.9 with temperature 0"),
        ({"max_new_tokens": 0}, "max_new_tokens 0: the budget must be at least 1 token"),
        ({"think_end_tag": "</t>"}, "think end tag '</t>' without thinking"),
        ({"chat_template_args": {"not a name": 1}}, "chat template argument 'not a name'"),
    ],
)
def test_bad_overrides_are_one_line(kwargs: dict, fragment: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        apply_overrides(get_preset("reasoning"), RunOverrides(**kwargs))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_template_args_parse_json_scalars_and_refuse_bad_pairs() -> None:
    assert parse_template_args(["enable_thinking=false", "x=3", "name=qwen", 's="1"']) == {
        "enable_thinking": False,
        "x": 3,
        "name": "qwen",
        "s": "1",
    }
    with pytest.raises(InvalidArgumentError, match="expected NAME=VALUE"):
        parse_template_args(["enable_thinking"])
    with pytest.raises(InvalidArgumentError, match="given twice"):
        parse_template_args(["a=1", "a=2"])


# ------------------------------------------------------------------------------- seeds and draws
def test_sample_seed_is_the_documented_hash() -> None:
    digest = "ab" * 32
    text = f"rvec-sample|7|{digest}|3".encode()
    expected = int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1
    assert sample_seed(7, digest, 3) == expected
    assert 0 <= expected < 2**63


def test_draws_depend_on_the_seed_the_item_and_the_index_only() -> None:
    sampling = Sampling(samples=3, temperature=0.6, top_p=0.95)
    a, b = request("What is 2 + 2?"), request("What is 3 + 3?")
    draws_a = draw_requests(a, sampling, seed=0)
    assert [r.draw.temperature for r in draws_a] == [0.6] * 3 and {r.draw.top_p for r in draws_a} == {0.95}
    assert len({r.draw.seed for r in draws_a}) == 3  # every sample its own stream
    assert draw_requests(a, sampling, seed=0) == draws_a  # reproducible, whatever came before
    assert {r.draw.seed for r in draw_requests(b, sampling, seed=0)}.isdisjoint(r.draw.seed for r in draws_a)
    assert [r.draw.seed for r in draw_requests(a, sampling, seed=1)] != [r.draw.seed for r in draws_a]
    assert all(r.messages == a.messages and r.stop == a.stop for r in draws_a)
    assert draw_requests(a, None, seed=0) == [a]  # greedy: the request itself


# ------------------------------------------------------------------------------- overrides, names
def test_overrides_are_named_in_the_preset() -> None:
    base = get_preset("reasoning")
    assert apply_overrides(base, RunOverrides()) is base
    resolved = apply_overrides(
        base,
        RunOverrides(
            max_new_tokens=4096,
            samples=8,
            temperature=0.6,
            top_p=0.95,
            think=True,
            chat_template_args={"enable_thinking": True},
        ),
    )
    assert resolved.name == (
        "reasoning[max_new_tokens=4096,samples=8,temperature=0.6,top_p=0.95,think=</think>,enable_thinking=true]"
    )
    assert resolved.sampling == Sampling(8, 0.6, 0.95)
    assert resolved.settings("math500").max_new_tokens == 4096
    assert resolved.chat_template_args == {"enable_thinking": True}
    assert resolved.to_dict()["sampling"] == {"samples": 8, "temperature": 0.6, "top_p": 0.95}
    assert "sampling" not in base.to_dict()  # greedy presets keep the dict their cache keys hashed


# ------------------------------------------------------------------------------- sampled metrics
def test_pass_ks_are_powers_of_two_and_n() -> None:
    assert pass_ks(8) == [1, 2, 4, 8]
    assert pass_ks(5) == [1, 2, 4, 5]
    assert pass_ks(1) == [1]


def record(doc_id: str, correct: bool, sample: int, tokens: int = 10) -> SampleRecord:
    value = float(correct)
    return SampleRecord(
        task="math500",
        doc_id=doc_id,
        prompt="p",
        response="r",
        extracted=None,
        gold="g",
        correct=correct,
        metrics={"math_verify,answer": value},
        primary="math_verify,answer",
        n_generated_tokens=tokens,
        sample=sample,
    )


def exact_pass(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(comb(n - c, k), comb(n, k))


def test_sampled_cell_scores_name_avg_and_pass_plainly() -> None:
    verdicts = {"a": [True, False, False, True], "b": [False] * 4, "c": [True] * 4}
    records = [record(d, v, j) for d, vs in verdicts.items() for j, v in enumerate(vs)]
    scores = key_scores(records, samples=4)
    assert set(scores) == {"math_verify,answer", "avg@4", "pass@1", "pass@2", "pass@4"}
    counts = [sum(vs) for vs in verdicts.values()]
    for k in (1, 2, 4):
        expected = sum(exact_pass(4, c, k) for c in counts) / 3
        assert scores[f"pass@{k}"] == pytest.approx(float(expected), abs=1e-12)
    assert scores["avg@4"] == pytest.approx((2 / 4 + 0 + 1) / 3)
    assert scores["math_verify,answer"] == pytest.approx(6 / 12)  # the mean over samples: avg@n too
    assert key_scores(records, samples=None) == {"math_verify,answer": 0.5}  # greedy keys: no @ names
    assert per_item((r.doc_id, r.correct) for r in records) == {"a": 0.5, "b": 0.0, "c": 1.0}


def test_an_item_with_missing_samples_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="item 'b' has 1 sample"):
        sampled_metrics([("a", True), ("a", False), ("b", True)], samples=2)


# ------------------------------------------------------------------------------- lengths
def test_length_summary_against_the_statistics_module() -> None:
    tokens = [12, 40, 7, 7, 101, 64, 33, 18, 90, 5, 77]
    summary = length_summary(tokens)
    assert summary is not None
    assert summary["n"] == 11
    assert summary["mean"] == pytest.approx(statistics.fmean(tokens))
    assert summary["median"] == statistics.median(tokens)
    # numpy's default percentile is the "inclusive" method of the statistics module
    assert summary["p90"] == pytest.approx(statistics.quantiles(tokens, n=10, method="inclusive")[-1])
    assert length_summary([]) is None


def test_draw_is_frozen_and_hashable() -> None:
    assert hash(Draw(0.6, 0.95, 3)) == hash(Draw(0.6, 0.95, 3))
