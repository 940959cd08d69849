"""lm-evaluation-harness 0.4.13's math answer checks, re-implemented so rvec reports its verdicts.

Two lm-eval task families are reproduced, each from its ``utils.py`` in the lm-eval 0.4.13 wheel:

* ``minerva_math500`` (``lm_eval/tasks/minerva_math/utils.py``, task version 3.1). The prediction is
  the text between ``Final Answer: The final answer is`` and ``. I hope it is correct.``
  (:func:`minerva_answer`); prediction and gold are put through the Minerva normaliser
  (:func:`normalize_final_answer`, Lewkowycz et al. 2022 appendix D with lm-eval 3.1's fixes) and
  compared by :func:`sympy_equiv` (identical strings, else sympy's ``parse_latex`` of both and
  ``simplify(a - b) == 0`` within 5 s). The gold is the normalised content of the *solution*'s last
  ``\\boxed{}`` (lm-eval's ``process_docs``), not the dataset's ``answer`` column. Its second metric,
  ``math_verify``, is ``verify(parse(solution), parse(response))`` with math-verify's defaults
  (:func:`minerva_math_verify`).
* ``aime24`` (``lm_eval/tasks/aime/utils.py``, version 0.0). The prediction is the text between the
  first and last ``$`` of the response (the whole response with fewer than two), replaced by the
  last ``\\boxed{}``'s content when there is one (:func:`aime_answer`); it is compared with the gold
  after the Hendrycks MATH normaliser (:func:`hendrycks_strip`, a failure falling back to plain
  equality).

Only the behaviour is reproduced, quirks included (``\\boxed `` with a space wins over a later
``\\boxed{``; a normaliser error is not an error), so that rvec's ``exact_match`` equals lm-eval's
item by item; ``bench/math500_agreement.py`` checks that against lm-eval itself. sympy's LaTeX
parser needs ``antlr4-python3-runtime`` 4.11 exactly (pinned in rvec's dependencies).

Example:
    >>> minerva_answer("... Final Answer: The final answer is $\\\\frac{1}{2}$. I hope it is correct.")
    '$\\\\frac{1}{2}$'
    >>> normalize_final_answer("$\\\\frac{1}{2}$")
    '\\\\frac{1}{2}'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TypeVar

from rvec.eval.math_answers import verify_timeout

__all__ = [
    "INVALID_ANSWER",
    "aime_answer",
    "aime_exact_match",
    "hendrycks_strip",
    "last_boxed_only_string",
    "minerva_answer",
    "minerva_exact_match",
    "minerva_gold",
    "minerva_math_verify",
    "normalize_final_answer",
    "remove_boxed",
    "sympy_equiv",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

INVALID_ANSWER = "[invalidanswer]"
"""What minerva_math extracts from a response without a ``Final Answer:`` sentence."""

_MINERVA_ANSWER = re.compile(r"Final Answer: The final answer is(.*?). I hope it is correct.")
_END = "I hope it is correct."

# Normaliser tables of minerva_math/utils.py (SUBSTITUTIONS, REMOVED_EXPRESSIONS), in their order:
# the replacements run one after another, so the order is part of the behaviour.
_SUBSTITUTIONS: tuple[tuple[str, str], ...] = (
    ("an ", ""),
    ("a ", ""),
    (".$", "$"),
    ("\\$", ""),
    (r"\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
)
# fmt: off
_REMOVED: tuple[str, ...] = (
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units",
    "\\ldots",
    "sue", "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters",
    "meals", "edges", "students", "childrentickets", "multiples",
    "\\text{s}",
    "\\text{.}",
    "\\text{\ns}",
    "\\text{}^2",
    "\\text{}^3",
    "\\text{\n}",
    "\\text{}",
    r"\mathrm{th}",
    r"^\circ",
    r"^{\circ}",
    r"\;",
    r",\!",
    "{,}",
    '"',
    "\\dots",
)
# fmt: on
_COMMAND = re.compile(r"(\\[a-zA-Z]+)")


# ------------------------------------------------------------------------------------- boxes
def last_boxed_only_string(text: str) -> str | None:
    """The last ``\\boxed{…}`` (or ``\\fbox{…}``) of ``text`` with its braces balanced, as lm-eval finds it.

    A ``\\boxed `` followed by a space anywhere wins: everything after its last occurrence up to the
    next ``$`` is returned. An unbalanced last box gives ``None``.
    """
    if "\\boxed " in text:
        return "\\boxed " + text.split("\\boxed ")[-1].split("$")[0]
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def remove_boxed(boxed: str) -> str | None:
    """The content of ``\\boxed{…}`` or ``\\boxed …``; ``None`` where lm-eval's assertions would fail
    (a ``\\fbox{…}`` or a malformed box)."""
    if "\\boxed " in boxed:
        return boxed[len("\\boxed ") :] if boxed.startswith("\\boxed ") else None
    if boxed.startswith("\\boxed{") and boxed.endswith("}"):
        return boxed[len("\\boxed{") : -1]
    return None


# ---------------------------------------------------------------------------------- minerva
def minerva_answer(text: str) -> str:
    """The answer of a Minerva-format response, or :data:`INVALID_ANSWER`.

    The sentence's end may be cut off by the stop sequence, so ``I hope it is correct.`` is appended
    before searching, as lm-eval does.
    """
    match = _MINERVA_ANSWER.search(text + _END)
    return match.group(1).strip() if match else INVALID_ANSWER


def normalize_final_answer(answer: str) -> str:
    """minerva_math's ``normalize_final_answer`` (task version 3.1).

    Keeps the part after the last ``=``; removes unit words (not inside LaTeX command names),
    spaces and the listed expressions; keeps what sits between ``$…$``; unwraps ``\\text``,
    ``\\textbf``, ``\\overline`` and ``\\boxed``; expands ``\\frac12`` / ``\\sqrt2`` shorthands; drops
    ``$``; removes commas of true thousands separators only.
    """
    answer = answer.split("=")[-1]
    for expr in _REMOVED:
        if expr.isalpha():
            answer = re.sub(rf"(?<!\\)\b{expr}\b", "", answer)
    for before, after in _SUBSTITUTIONS:
        answer = answer.replace(before, after)
    for expr in _REMOVED:
        answer = _remove_outside_commands(answer, expr) if expr.isalpha() else answer.replace(expr, "")
    answer = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", answer)
    for command in ("text", "textbf", "overline"):
        answer = re.sub(rf"(\\{command}\{{)(.*?)(\}})", "\\2", answer)
    answer = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", answer)
    answer = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", answer)
    answer = re.sub(r"(sqrt)(\[[^\]]*\])(\w)", "\\1\\2{\\3}", answer)
    answer = re.sub(r"(sqrt)(?!\[)([^{])", "sqrt{\\2}", answer)
    answer = answer.replace("$", "")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+", answer):
        answer = answer.replace(",", "")
    return answer


def _remove_outside_commands(text: str, word: str) -> str:
    # Unit words glued to their neighbours once spaces are gone, but never inside a command name
    # ("ft" must not turn "\left" into "\le"): odd segments of the split are the commands.
    segments = _COMMAND.split(text)
    return "".join(seg if i % 2 else seg.replace(word, "") for i, seg in enumerate(segments))


def sympy_equiv(first: str, second: str) -> bool:
    """minerva_math's ``is_equiv``: identical non-empty strings, else sympy proves the difference 0.

    Both sides go through sympy's ``parse_latex``; anything that fails to parse, subtract or
    simplify within 5 seconds is "not equivalent", as in lm-eval.

    Raises:
        ImportError: sympy's LaTeX parser is unavailable (``antlr4-python3-runtime`` 4.11 missing);
            lm-eval re-raises it too, since every verdict would silently be 0.
    """
    if first and first == second:
        return True
    try:
        return _with_timeout(_sympy_zero_difference, 5)(first, second)
    except ImportError:
        raise
    except Exception as err:  # lm-eval turns every parse, algebra and timeout failure into False
        logger.debug("sympy_equiv(%r, %r): %s", first, second, type(err).__name__)
        return False


def _sympy_zero_difference(first: str, second: str) -> bool:
    import sympy
    from sympy.parsing.latex import parse_latex

    return bool(sympy.simplify(parse_latex(first) - parse_latex(second)) == 0)


def minerva_gold(solution: str) -> str:
    """The gold of a MATH item as minerva_math builds it: the normalised last box of the solution."""
    content = remove_boxed(last_boxed_only_string(solution) or "")
    return normalize_final_answer(content if content is not None else "")


def minerva_exact_match(text: str, gold: str) -> tuple[bool, str]:
    """minerva_math's ``exact_match`` of one response.

    Args:
        text (str): The response (stop sequence removed, think block stripped).
        gold (str): :func:`minerva_gold` of the item.

    Returns:
        tuple[bool, str]: The verdict and the normalised prediction.
    """
    prediction = normalize_final_answer(minerva_answer(text))
    return sympy_equiv(prediction, gold), prediction


def minerva_math_verify(text: str, solution: str) -> bool:
    """minerva_math's ``math_verify``: ``verify(parse(solution), parse(response))``, math-verify's
    default extraction and comparison settings."""
    from math_verify import parse, verify

    timeout = verify_timeout()
    gold = parse(solution, parsing_timeout=timeout)
    return bool(verify(gold, parse(text, parsing_timeout=timeout), timeout_seconds=timeout))


# ------------------------------------------------------------------------------------- aime
def aime_answer(text: str) -> str:
    """What lm-eval's aime task compares: the last box's content, else the span between the first
    and last ``$``, else the whole response."""
    dollars = [i for i, ch in enumerate(text) if ch == "$"]
    answer = text[dollars[0] + 1 : dollars[-1]] if len(dollars) > 1 else text
    boxed = last_boxed_only_string(text)
    content = remove_boxed(boxed) if boxed is not None else None
    return content if content is not None else answer


def aime_exact_match(text: str, gold: str) -> tuple[bool, str]:
    """lm-eval aime's ``exact_match``: Hendrycks-normalised equality (plain equality when the
    normaliser fails). Returns the verdict and the prediction before normalisation."""
    prediction = aime_answer(text)
    try:
        return hendrycks_strip(prediction) == hendrycks_strip(gold), prediction
    except Exception:  # lm-eval's is_equiv falls back to comparing the raw strings on any error
        return prediction == gold, prediction


def hendrycks_strip(text: str) -> str:
    """The Hendrycks MATH ``strip_string`` normaliser (lm-eval ``tasks/aime/utils.py``).

    Raises:
        ValueError, IndexError: where lm-eval's normaliser fails too (two ``"\\text{ "``, ``x/2``,
            a trailing ``\\sqrt``); callers fall back to plain equality, as lm-eval does.
    """
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac")):
        text = text.replace(old, new)
    for old in ("\\left", "\\right", "^{\\circ}", "^\\circ", "\\$"):
        text = text.replace(old, "")
    if "\\text{ " in text:
        parts = text.split("\\text{ ")
        if len(parts) != 2:
            raise ValueError(f"{len(parts) - 1} unit suffixes in {text!r}")
        text = parts[0]
    text = text.replace("\\%", "")  # lm-eval removes "\\%" twice (its second literal is the same string)
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    if not text:
        return text
    if text[0] == ".":
        text = "0" + text
    sides = text.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        text = sides[1]
    text = _fix_sqrt(text).replace(" ", "")
    text = _fix_fracs(text)
    if text == "0.5":
        text = "\\frac{1}{2}"
    return _fix_a_slash_b(text)


def _fix_sqrt(text: str) -> str:
    if "\\sqrt" not in text:
        return text
    head, *rest = text.split("\\sqrt")
    return head + "".join("\\sqrt" + (s if s[0] == "{" else "{" + s[0] + "}" + s[1:]) for s in rest)


def _fix_fracs(text: str) -> str:
    head, *rest = text.split("\\frac")
    out = head
    for part in rest:
        out += "\\frac"
        if part[0] == "{":
            out += part
            continue
        if len(part) < 2:
            return text
        a, b, tail = part[0], part[1], part[2:]
        out += "{" + a + "}{" + b + "}" + tail if b != "{" else "{" + a + "}" + b + tail
    return out


def _fix_a_slash_b(text: str) -> str:
    parts = text.split("/")
    if len(parts) != 2:
        return text
    a, b = int(parts[0]), int(parts[1])  # a ValueError propagates, as in lm-eval (raw-string fallback)
    return f"\\frac{{{a}}}{{{b}}}" if text == f"{a}/{b}" else text


# ---------------------------------------------------------------------------------- helpers
def _with_timeout(func: Callable[..., T], seconds: int) -> Callable[..., T]:
    from math_verify.utils import timeout

    wrapped: Callable[..., T] = timeout(seconds if verify_timeout() is not None else None)(func)
    return wrapped
