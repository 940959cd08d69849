"""HumanEval: code taken out of a response, and the program built around it."""

from __future__ import annotations

from rvec.eval.code_answers import build_humaneval_program, extract_code
from rvec.eval.data import DataSource
from rvec.eval.tasks import get_task


def test_extract_code_copes_with_prose_and_fences() -> None:
    fenced = "Sure!\n```python\ndef f(x):\n    return x\n```\nThis returns x."
    assert extract_code(fenced) == "def f(x):\n    return x\n"
    two = "```python\nprint(f(1))\n```\nand\n```python\ndef f(x):\n    return x\n```"
    assert extract_code(two, entry_point="f") == "def f(x):\n    return x\n"
    prose = "Here is the function:\ndef f(x):\n    return x\nIt simply returns x."
    assert extract_code(prose) == "def f(x):\n    return x\n"
    assert extract_code("```python\ndef f(x):\n    return x") == "def f(x):\n    return x"  # cut off


def test_humaneval_program_variants_run_the_same_tests(source: DataSource) -> None:
    doc = get_task("humaneval").docs(source, limit=1)[0]
    prompt, body = doc.fields["prompt"], doc.fields["canonical_solution"]
    kwargs = {"test": doc.fields["test"], "entry_point": "has_close_elements"}
    raw = build_humaneval_program(prompt, body, mode="raw", **kwargs)
    assert raw.startswith(prompt + body) and raw.endswith("check(has_close_elements)\n")
    dedented = "\n".join(line[4:] for line in body.splitlines())
    only_body = build_humaneval_program(prompt, f"```python\n{dedented}\n```", mode="extract", **kwargs)
    assert only_body.startswith(prompt + "    for idx")
    full = build_humaneval_program(
        prompt,
        f"Here:\n```python\ndef has_close_elements(numbers, threshold):\n{body}```",
        mode="extract",
        **kwargs,
    )
    assert "    pass\n" in full and full.count("def has_close_elements") == 2
    for program in (raw, only_body, full):
        compile(program, "program.py", "exec")
