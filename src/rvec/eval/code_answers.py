"""The code in a HumanEval response, and the program that runs it against its official tests.

Example:
    >>> extract_code("Here it is:\n```python\ndef f(x):\n    return x\n```")
    'def f(x):\n    return x\n'
"""

from __future__ import annotations

import ast
import re
import textwrap
from typing import Literal

__all__ = ["build_humaneval_program", "extract_code"]

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_START_RE = re.compile(r"^(?:def |async def |class |import |from |@)", re.MULTILINE)


def extract_code(text: str, *, entry_point: str | None = None) -> str:
    """The code in a response: the first fenced block (the first one defining ``entry_point`` when
    there are several), else the raw text trimmed of surrounding prose.

    An unclosed final fence (generation cut off) still counts as a block.
    """
    blocks = [
        body for lang, body in _FENCE_RE.findall(text) if lang.lower() in ("", "python", "python3", "py")
    ]
    if blocks:
        if entry_point is not None:
            for body in blocks:
                if _defines(body, entry_point):
                    return body
        return blocks[0]
    return _trim_prose(text)


def _trim_prose(text: str) -> str:
    if _parses(text):
        return text
    start = _CODE_START_RE.search(text)
    if start is None:
        return text  # a bare body ("    return x"), completed by the prompt's signature
    lines = text[start.start() :].splitlines()
    # Drop trailing prose line by line until the rest parses; keep the original if nothing does.
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end]) + "\n"
        if _parses(candidate):
            return candidate
    return text


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def build_humaneval_program(
    prompt: str, completion: str, *, test: str, entry_point: str, mode: Literal["extract", "raw"]
) -> str:
    """The program that runs a HumanEval candidate against its official tests.

    ``raw`` is lm-eval's ``create_test``: ``prompt + completion``. ``extract`` (paper) takes the code
    out of the response; if it defines ``entry_point`` the prompt is put first with a ``pass`` stub
    (so its imports and helper functions exist and the model's definition overrides the stub),
    otherwise the code is taken as the function body and appended to the prompt, indented if the
    model dedented it.

    Returns:
        str: Source ending in ``check(<entry_point>)``.
    """
    if mode == "raw":
        candidate = prompt + completion
    else:
        code = extract_code(completion, entry_point=entry_point)
        if _defines(code, entry_point):
            candidate = prompt + "    pass\n\n\n" + code
        else:
            candidate = prompt + _as_body(code)
    return f"{candidate}\n{test}\ncheck({entry_point})\n"


def _as_body(code: str) -> str:
    lines = [ln for ln in code.splitlines() if ln.strip()]
    if lines and not lines[0][0].isspace():
        return textwrap.indent(code, "    ")
    return code
