"""Where two verdicts on the same responses disagree, and the sentence that says so."""

from __future__ import annotations

from rvec.eval.verdicts import disagreement, disagreement_line

COMPARE = ("acc,strict", "math_verify,answer")


def responses() -> list[tuple[str, dict[str, float]]]:
    return [
        ("1", {"acc,strict": 1.0, "math_verify,answer": 1.0}),
        ("2", {"acc,strict": 0.0, "math_verify,answer": 1.0}),  # "$18" the regex misses
        ("2", {"acc,strict": 0.0, "math_verify,answer": 1.0}),  # a second sample of item 2
        ("3", {"acc,strict": 1.0, "math_verify,answer": 0.0}),
        ("4", {"acc,strict": 0.0}),  # scored by one metric only: not counted
    ]


def test_disagreement_counts_responses_and_names_items_once() -> None:
    assert disagreement(responses(), COMPARE) == {
        "metrics": ["acc,strict", "math_verify,answer"],
        "n": 4,
        "disagree": 3,
        "first_only": 1,
        "second_only": 2,
        "doc_ids": ["2", "3"],
    }


def test_the_sentence_names_counts_and_items() -> None:
    assert disagreement_line("gsm8k", disagreement(responses(), COMPARE)) == (
        "gsm8k: acc,strict and math_verify,answer disagree on 3 of 4 responses "
        "(only acc,strict right: 1, only math_verify,answer right: 2; items 2, 3)"
    )
    many = [(str(i), {"a": 1.0, "b": 0.0}) for i in range(12)]
    assert disagreement_line("k", disagreement(many, ("a", "b"))).endswith(
        "items 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 2 more)"
    )
    agree = disagreement(responses()[:1], COMPARE)
    assert (
        disagreement_line("gsm8k", agree)
        == "gsm8k: acc,strict and math_verify,answer disagree on 0 of 1 responses"
    )
