"""Where two verdicts on the same responses disagree (GSM8K's regex against math-verify).

A preset's task settings may name two metrics to compare (``TaskSettings.compare``, e.g. GSM8K
under ``reasoning``: ``acc,strict`` from lm-eval's regex and ``math_verify,answer``). Every response
scored by both counts; the summary says how many differ, in which direction, and on which items —
``results.json`` (``rvec.disagreements``), ``rvec eval``'s printout and a study's cells carry it.

Example:
    >>> s = disagreement([("1", {"a": 1.0, "b": 1.0}), ("2", {"a": 0.0, "b": 1.0})], ("a", "b"))
    >>> s["disagree"], s["second_only"], s["doc_ids"]
    (1, 1, ['2'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["disagreement", "disagreement_line"]

_SHOWN_IDS = 10


def disagreement(
    responses: Iterable[tuple[str, Mapping[str, float]]], compare: tuple[str, str]
) -> dict[str, Any]:
    """Count the responses on which the two metrics of ``compare`` differ.

    Args:
        responses (Iterable[tuple[str, Mapping[str, float]]]): ``(doc_id, metrics)`` per response
            (every sample of a sampled run).
        compare (tuple[str, str]): The two metric keys.

    Returns:
        dict: ``metrics`` (the two keys), ``n`` (responses scored by both), ``disagree``,
        ``first_only`` / ``second_only`` (responses only that metric judged right) and ``doc_ids``
        (the items with a disagreement, in order, each once).
    """
    first, second = compare
    both = [(d, m) for d, m in responses if first in m and second in m]
    differ = [(d, m) for d, m in both if m[first] != m[second]]
    return {
        "metrics": [first, second],
        "n": len(both),
        "disagree": len(differ),
        "first_only": sum(m[first] > m[second] for _, m in differ),
        "second_only": sum(m[second] > m[first] for _, m in differ),
        "doc_ids": list(dict.fromkeys(d for d, _ in differ)),
    }


def disagreement_line(key: str, summary: Mapping[str, Any]) -> str:
    """One sentence for a person: ``gsm8k: acc,strict and math_verify,answer disagree on 2 of 50
    responses (only acc,strict right: 0, only math_verify,answer right: 2; items 12, 40)``.

    Args:
        key (str): The task key.
        summary (Mapping): A :func:`disagreement` result.

    Returns:
        str: The sentence (the first ten item ids, then how many more).
    """
    first, second = summary["metrics"]
    text = f"{key}: {first} and {second} disagree on {summary['disagree']} of {summary['n']} responses"
    if not summary["disagree"]:
        return text
    ids = list(summary["doc_ids"])
    shown = ", ".join(ids[:_SHOWN_IDS]) + (
        f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else ""
    )
    return (
        f"{text} (only {first} right: {summary['first_only']}, only {second} right: "
        f"{summary['second_only']}; items {shown})"
    )
