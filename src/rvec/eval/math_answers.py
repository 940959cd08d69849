"""Math answers judged by math-verify: rvec's ``math_verify,answer`` verdict.

* **Gold**: the dataset's final answer as a string (MATH-500's ``answer`` column, AIME's integer,
  GSM8K's number after ``####``), read by math-verify as the content of a ``\\boxed{}``.
* **Prediction**: the content of the response's last complete ``\\boxed{…}`` (or ``\\fbox{…}``);
  without one, group 1 of the last match of the preset's answer pattern (``TaskSettings.answer_pattern``,
  e.g. Minerva's ``Final Answer: The final answer is …``); without either, nothing, and the item is
  wrong. The candidate, stripped of surrounding ``$`` and a final full stop, is read the same way.
* **Comparison**: ``math_verify.verify(gold, prediction)`` with math-verify's defaults (numbers
  rounded to 6 decimals, strict variables, sets vs tuples kept apart, 5-second timeouts).

No LaTeX is compared here: math-verify (Hugging Face's ``math-verify`` package, the checker of
lighteval and open-r1) parses both sides with sympy and decides. Where it differs from a human
grader is recorded case by case in ``tests/eval/data/math_verify_cases.jsonl``.

Example:
    >>> math_verify_answer("so the area is \\\\boxed{\\\\dfrac{14}{3}}.", "\\\\frac{14}{3}")
    (True, '\\\\dfrac{14}{3}')
"""

from __future__ import annotations

import re
import threading

__all__ = [
    "FINAL_ANSWER_PATTERN",
    "extract_math_answer",
    "last_boxed",
    "math_verify_answer",
    "math_verify_equal",
    "verify_timeout",
]

FINAL_ANSWER_PATTERN = r"(?im)final answer is\s*:?(.*?)(?:\.?\s*I hope it is correct|$)"
"""The presets' answer pattern for math: after "final answer is" up to Minerva's "I hope it is
correct" or the end of the line (group 1); read when a response has no ``\\boxed{}``."""

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{…}`` / ``\\fbox{…}`` of ``text`` (braces balanced).

    A box cut off by the token budget is skipped, so an earlier complete box is found instead.

    Example:
        >>> last_boxed("first \\\\boxed{1}, then \\\\boxed{\\\\frac{1}{2}}")
        '\\\\frac{1}{2}'
    """
    for match in reversed(list(_BOX.finditer(text))):
        depth = 1
        for i in range(match.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[match.end() : i]
    return None


def extract_math_answer(text: str, pattern: str = "") -> str | None:
    """The prediction: the last box's content, else the preset pattern's last group 1, else ``None``.

    Args:
        text (str): The response (think block already removed).
        pattern (str, default ""): A regular expression with one group; ``""`` means boxes only.

    Returns:
        str | None: The candidate answer, stripped of whitespace, enclosing ``$`` and a final ``.``.
    """
    candidate = last_boxed(text)
    if candidate is None and pattern:
        matches = re.findall(pattern, text)
        if matches:
            last = matches[-1]
            candidate = last[0] if isinstance(last, tuple) else last
    if candidate is None:
        return None
    cleaned = candidate.strip().rstrip(".").strip().strip("$").strip()
    return cleaned or None


def math_verify_equal(gold: str, prediction: str) -> bool:
    """Whether math-verify judges ``prediction`` equal to ``gold`` (both LaTeX answer strings)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    timeout = verify_timeout()
    config = (LatexExtractionConfig(), ExprExtractionConfig())
    gold_parsed = parse("\\boxed{" + gold + "}", config, parsing_timeout=timeout)
    pred_parsed = parse("\\boxed{" + prediction + "}", config, parsing_timeout=timeout)
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


def math_verify_answer(text: str, gold: str, *, pattern: str = "") -> tuple[bool, str | None]:
    """Extract the prediction from a response and judge it with math-verify.

    Args:
        text (str): The response (think block already removed).
        gold (str): The reference answer.
        pattern (str, default ""): The preset's answer pattern (used when there is no box).

    Returns:
        tuple[bool, str | None]: The verdict and the extracted candidate (``None``: nothing found).
    """
    candidate = extract_math_answer(text, pattern)
    if candidate is None:
        return False, None
    return math_verify_equal(gold, candidate), candidate


def verify_timeout() -> int | None:
    """Seconds math-verify (and sympy in lm-eval's checks) may take per parse or comparison: 5 on
    the main thread, ``None`` elsewhere.

    Their timeouts use SIGALRM, which only the main thread may set; elsewhere math-verify raises,
    which would read as a wrong answer, so other threads run without a timeout.
    """
    return 5 if threading.current_thread() is threading.main_thread() else None
