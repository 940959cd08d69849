"""Answer extraction and comparison, free of any task or dataset plumbing.

Two families live side by side:

* the ``paper`` protocol (``EVAL_PROTOCOL.md``): numeric GSM8K answers (last number, and strict
  ``The answer is N`` / ``#### N`` / ``\\boxed{N}``), normalised BBH answers for all 27 subtasks, SciQ
  letters, refusal detection (HumanEval's code extraction: :mod:`rvec.eval.code_answers`) for GSM-Plus "critical thinking";
* lm-evaluation-harness 0.4.13's exact filters (:data:`LM_EVAL_FILTERS`) and its ``exact_match``
  normalisation, re-implemented from their documented behaviour so scores match lm-eval's.

Example:
    >>> extract_last_number("so she makes $1,234.50 a day.")
    '1234.50'
    >>> bbh_match("date_understanding", "... So the answer is (B).", "(B)")
    (True, '(B)')
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Literal

__all__ = [
    "BBH_SUBTASKS",
    "INVALID",
    "LM_EVAL_FILTERS",
    "LM_EVAL_GSM8K_IGNORE",
    "bbh_extract",
    "bbh_match",
    "bbh_normalize",
    "extract_choice_letter",
    "extract_last_number",
    "extract_strict_number",
    "gsm8k_gold",
    "is_refusal",
    "lm_eval_exact_match",
    "lm_eval_regex",
    "numbers_equal",
    "parse_number",
]

INVALID = "[invalid]"
"""lm-eval's regex-filter fallback when nothing matches."""

LM_EVAL_FILTERS: dict[str, dict[str, tuple[str, int]]] = {
    # task -> filter name -> (regex, group_select); from gsm8k/gsm8k-cot.yaml and
    # bbh/cot_fewshot/_cot_fewshot_template_yaml, both followed by take_first.
    "gsm8k": {
        "strict-match": (r"The answer is (\-?[0-9\.\,]+).", 0),
        "flexible-extract": (r"(-?[$0-9.,]{2,})|(-?[0-9]+)", -1),
    },
    "bbh": {"get-answer": (r"(?<=the answer is )(.*)(?=.)", 0)},
}

LM_EVAL_GSM8K_IGNORE: tuple[str, ...] = (",", r"\$", "(?s).*#### ", r"\.$")
"""``regexes_to_ignore`` of gsm8k_cot's ``exact_match`` (also ``ignore_case: true``)."""

BBH_SUBTASKS: tuple[str, ...] = (
    "boolean_expressions",
    "causal_judgement",
    "date_understanding",
    "disambiguation_qa",
    "dyck_languages",
    "formal_fallacies",
    "geometric_shapes",
    "hyperbaton",
    "logical_deduction_five_objects",
    "logical_deduction_seven_objects",
    "logical_deduction_three_objects",
    "movie_recommendation",
    "multistep_arithmetic_two",
    "navigate",
    "object_counting",
    "penguins_in_a_table",
    "reasoning_about_colored_objects",
    "ruin_names",
    "salient_translation_error_detection",
    "snarks",
    "sports_understanding",
    "temporal_sequences",
    "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects",
    "web_of_lies",
    "word_sorting",
)
"""The 27 BIG-Bench Hard subtasks (Suzgun et al. 2022), alphabetical."""

# How each free-form or label subtask's answer is normalised; every other subtask is multiple choice.
_BBH_KIND: dict[str, Literal["label", "number", "words", "brackets"]] = {
    "boolean_expressions": "label",
    "causal_judgement": "label",
    "formal_fallacies": "label",
    "navigate": "label",
    "sports_understanding": "label",
    "web_of_lies": "label",
    "object_counting": "number",
    "multistep_arithmetic_two": "number",
    "word_sorting": "words",
    "dyck_languages": "brackets",
}


# ------------------------------------------------------------------------------------ lm-eval
def lm_eval_regex(text: str, pattern: str, *, group_select: int = 0, fallback: str = INVALID) -> str:
    """lm-eval's ``regex`` filter followed by ``take_first``, for one response.

    ``findall`` picks match ``group_select``; a tuple of groups yields its first non-empty group;
    the result is stripped; no match gives ``fallback``.
    """
    matches = re.findall(pattern, text)
    if not matches:
        return fallback
    match = matches[group_select]
    if isinstance(match, tuple):
        non_empty = [m for m in match if m]
        match = non_empty[0] if non_empty else fallback
    return match.strip()


def lm_eval_exact_match(
    prediction: str, reference: str, *, regexes_to_ignore: tuple[str, ...] = (), ignore_case: bool = False
) -> bool:
    """lm-eval's ``exact_match``: delete each ignore-regex from both strings, optionally lower-case."""
    for pattern in regexes_to_ignore:
        prediction = re.sub(pattern, "", prediction)
        reference = re.sub(pattern, "", reference)
    if ignore_case:
        prediction, reference = prediction.lower(), reference.lower()
    return prediction == reference


# ------------------------------------------------------------------------------------ numbers
_NUM = r"-?\d+(?:\.\d+)?(?:/\d+)?"
_NUM_RE = re.compile(_NUM)
_STRICT_RES = (
    re.compile(r"the (?:final )?answer is\s*:?\s*\**\s*\$?\s*(" + _NUM + ")", re.IGNORECASE),
    re.compile(r"####\s*\$?\s*(" + _NUM + ")"),
    re.compile(r"\\boxed\{\s*\\?\$?\s*(" + _NUM + r")\s*(?:\\?%)?\s*\}"),
)


def _clean_numeric_text(text: str) -> str:
    # The protocol removes "," and "$" before reading numbers; U+2212 is the typographic minus.
    return text.replace(",", "").replace("$", "").replace("\u2212", "-")


def gsm8k_gold(answer: str) -> str:
    """The final answer of a GSM8K-style solution: the text after the last ``####``, stripped."""
    return answer.split("####")[-1].strip()


def parse_number(text: str | None) -> float | None:
    """Read ``"1,234"``, ``"$5"``, ``"-3.5"``, ``"1/4"`` or ``"40%"`` as a float; ``None`` if not a number."""
    if text is None:
        return None
    cleaned = _clean_numeric_text(text).strip().rstrip(".%").strip()
    if not re.fullmatch(_NUM, cleaned):
        return None
    try:
        value = Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None
    return float(value)


def numbers_equal(prediction: str | None, gold: str) -> bool:
    """Numeric equality, tolerant to formatting and to extra decimals beyond the gold's precision.

    ``"18.00"`` equals ``"18"``; ``"4.333"`` equals gold ``"4.33"`` (rounded to the gold's two
    decimals, as GSM-Plus golds are rounded); ``"1/4"`` equals ``"0.25"``.
    """
    pred, ref = parse_number(prediction), parse_number(gold)
    if pred is None or ref is None:
        return False
    if math.isclose(pred, ref, rel_tol=1e-9, abs_tol=1e-9):
        return True
    decimals = len(gold.strip().partition(".")[2]) if "." in gold and "/" not in gold else 0
    return decimals > 0 and math.isclose(round(pred, decimals), ref, abs_tol=10 ** (-decimals - 3))


def extract_last_number(text: str) -> str | None:
    """The last number in ``text`` after removing ``,`` and ``$`` (the paper's flexible answer)."""
    found = _NUM_RE.findall(_clean_numeric_text(text))
    return found[-1] if found else None


def extract_strict_number(text: str) -> str | None:
    """The number of the last ``The answer is N``, ``#### N`` or ``\\boxed{N}`` in ``text``."""
    cleaned = _clean_numeric_text(text)
    best: tuple[int, str] | None = None
    for pattern in _STRICT_RES:
        for match in pattern.finditer(cleaned):
            if best is None or match.start() > best[0]:
                best = (match.start(), match.group(1))
    return best[1] if best else None


# ------------------------------------------------------------------------------------ refusal
_REFUSAL_RE = re.compile(
    r"|".join(
        (
            r"\b(?:cannot|can ?not|can't|could not|couldn't|unable to|impossible to|not possible to|no way to)"
            r"\s+(?:be\s+)?(?:determine|determined|calculate|calculated|compute|computed|answer|answered|"
            r"solve|solved|know|find|figure out|tell|say)",
            r"\b(?:not|insufficient|isn't|is not|lack of|missing)\s+(?:enough\s+)?"
            r"(?:information|info|data|details)\b",
            r"\bnot enough (?:information|info|data|details)\b",
            r"\b(?:information|data|details?|value|number)\s+(?:is|are)\s+(?:missing|not (?:given|provided|"
            r"specified|stated|mentioned))\b",
            r"\b(?:does not|doesn't|did not|didn't|do not|don't)\s+(?:provide|give|specify|state|mention|"
            r"tell us|include)\b",
            r"\b(?:unanswerable|undeterminable|indeterminate|underdetermined|ill-posed)\b",
            r"\b(?:the )?answer is\s*:?\s*\**\s*none\b",
            r"(?:####|\\boxed\{)\s*none\b",
        )
    ),
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    """Whether a response says the question cannot be answered (GSM-Plus "critical thinking").

    Matches statements such as "cannot be determined", "not enough information", "the problem does
    not specify …", "unanswerable" and the literal answers ``None`` / ``#### None``.
    """
    return _REFUSAL_RE.search(text) is not None


# ------------------------------------------------------------------------------------ SciQ
def extract_choice_letter(text: str, letters: str = "ABCD") -> str | None:
    """The chosen option letter: the last "answer is X" / "Answer: X", else the last standalone letter.

    Args:
        text (str): The model's response.
        letters (str, default "ABCD"): The valid option letters.

    Returns:
        str | None: One of ``letters``, or ``None`` when no letter stands alone.
    """
    group = f"[{re.escape(letters)}]"
    stated = re.findall(
        r"answer(?: is|:)\s*:?\s*[*(\[]*\s*(" + group + r")(?![A-Za-z0-9])", text, re.IGNORECASE
    )
    stated = [s for s in stated if s in letters]  # IGNORECASE must not turn "a" into "A"
    if stated:
        return stated[-1]
    alone = re.findall(r"(?<![A-Za-z0-9'])(" + group + r")(?![A-Za-z0-9'])", text)
    return alone[-1] if alone else None


# ------------------------------------------------------------------------------------ BBH
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}


def bbh_extract(text: str) -> str | None:
    """The answer after the last "the answer is" (any case), first line only, without a final ``.``."""
    idx = text.lower().rfind("the answer is")
    if idx < 0:
        return None
    answer = text[idx + len("the answer is") :].strip().split("\n", 1)[0]
    answer = answer.replace("**", "").strip().strip(":").strip()
    return answer[:-1].rstrip() if answer.endswith(".") else answer


def bbh_normalize(subtask: str, answer: str) -> str:
    """Normalise a BBH answer (or target) so equal meanings compare equal.

    Multiple-choice letters become ``(X)``; labels (True/Yes/valid…) lower-case; numbers their
    integer value; ``word_sorting`` lower-case words separated by single spaces; ``dyck_languages``
    the brackets without spaces.
    """
    answer = answer.strip()
    kind = _BBH_KIND.get(subtask)
    if kind == "label":
        words = re.findall(r"[A-Za-z]+", answer)
        return words[0].lower() if words else ""
    if kind == "number":
        return _normalize_count(answer)
    if kind == "words":
        return " ".join(answer.replace(",", " ").rstrip(".").lower().split())
    if kind == "brackets":
        return "".join(ch for ch in answer if ch in "()[]{}<>")
    letter = re.search(r"\(([A-Z])\)", answer) or re.match(r"([A-Z])(?:[).:\s]|$)", answer)
    if letter:
        return f"({letter.group(1)})"
    return " ".join(answer.rstrip(".").lower().split())


def _normalize_count(answer: str) -> str:
    cleaned = _clean_numeric_text(answer)
    found = re.search(r"-?\d+", cleaned)
    if found:
        return str(int(found.group(0)))
    words = re.findall(r"[a-z]+", cleaned.lower())
    return next((str(_NUMBER_WORDS[w]) for w in words if w in _NUMBER_WORDS), "")


def bbh_match(subtask: str, response: str, target: str) -> tuple[bool, str | None]:
    """Paper-protocol BBH scoring: extract, normalise both sides, compare exactly.

    Returns:
        tuple[bool, str | None]: (correct, extracted answer before normalisation).
    """
    extracted = bbh_extract(response)
    if extracted is None:
        return False, None
    normalized = bbh_normalize(subtask, extracted)
    return normalized != "" and normalized == bbh_normalize(subtask, target), extracted
