"""HumanEval (Chen et al. 2021): 164 Python functions checked by their official unit tests.

``paper``: the user turn asks for the complete function in one code block; the code is extracted
and run (:func:`~rvec.eval.code_answers.build_humaneval_program`, mode ``extract``). ``lm-eval``: the
raw prompt is completed and ``prompt + completion`` is run (mode ``raw``, lm-eval's
``create_test``). Programs run only in a :class:`~rvec.eval.sandbox.Sandbox` that allows it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from rvec.errors import CodeExecutionNotAllowedError
from rvec.eval.code_answers import build_humaneval_program
from rvec.eval.data import DataSource
from rvec.eval.presets import Preset, get_preset
from rvec.eval.sandbox import ExecutionResult, Sandbox
from rvec.eval.tasks.base import Task, build_context, take, with_condition, with_fields
from rvec.eval.types import Doc, GenerateRequest, Response, Scored

__all__ = ["HumanEval"]

_EXAMPLE_LINE = re.compile(r">>>|^\s*(?:for )?examples?\b|e\.g\.", re.IGNORECASE)


class HumanEval(Task):
    """The 164 HumanEval problems; doc_id is the ``task_id`` (``HumanEval/0``)."""

    name = "humaneval"
    family = "humaneval"
    reference_url = "https://arxiv.org/abs/2107.03374"
    question_field = "prompt"

    def docs(self, source: DataSource, *, limit: int | None = None) -> list[Doc]:
        return [Doc(self.name, row["task_id"], row) for _, row in take(source.humaneval(), limit)]

    def request(self, doc: Doc, preset: Preset, *, condition: str | None = None) -> GenerateRequest:
        """Instruction + prompt in a code block (``paper``), or the raw prompt (``lm-eval``)."""
        settings = preset.settings(self.family)
        text = settings.template.format(instruction=settings.instruction, prompt=doc.fields["prompt"])
        messages, prompt = build_context(preset, settings, question=with_condition(text, preset, condition))
        return GenerateRequest(messages, prompt, settings.stop, settings.max_new_tokens)

    def program(self, doc: Doc, response: Response, *, preset: Preset | None = None) -> str:
        """The test program for one response under ``preset`` (default ``paper``)."""
        layout = (preset or get_preset("paper")).settings(self.family).layout
        mode = "raw" if layout == "lm-eval" else "extract"
        return build_humaneval_program(
            str(doc.fields["prompt"]),
            response.text or "",
            test=str(doc.fields["test"]),
            entry_point=str(doc.fields["entry_point"]),
            mode=mode,
        )

    def score(
        self, doc: Doc, response: Response, *, sandbox: Sandbox | None = None, preset: Preset | None = None
    ) -> Scored:
        """Run the official tests on the response.

        Raises:
            CodeExecutionNotAllowedError: no sandbox, or one that does not allow execution.
        """
        return self.score_many([doc], [response], sandbox=sandbox, preset=preset)[0]

    def score_many(
        self,
        docs: Sequence[Doc],
        responses: Sequence[Response],
        *,
        sandbox: Sandbox | None = None,
        preset: Preset | None = None,
    ) -> list[Scored]:
        """Run all programs through ``sandbox.run_many`` (parallel workers).

        Raises:
            CodeExecutionNotAllowedError: no sandbox, or one that does not allow execution.
        """
        if sandbox is None:
            raise CodeExecutionNotAllowedError(
                "humaneval runs model-written code; pass --allow-code-execution to score it"
            )
        programs = [self.program(d, r, preset=preset) for d, r in zip(docs, responses, strict=True)]
        results = sandbox.run_many(programs)
        primary = self._primary(preset)
        return [_scored(primary, result) for result in results]

    # ----------------------------------------------------------------------- perturbation hooks
    def gold(self, doc: Doc) -> str:
        return str(doc.fields["canonical_solution"])

    def hint_sentence(self, doc: Doc, rng: random.Random) -> str:
        # There is no short answer to contradict; suggest a wrong implementation instead.
        return rng.choice(
            (
                "I think the function should simply return None.",
                "I think the function can just return its first argument unchanged.",
                "I think the answer is to return an empty result.",
            )
        )

    def add_text(self, doc: Doc, sentence: str, *, where: str) -> Doc:
        """Put the sentence inside the docstring (first or last line), so the code stays valid."""
        prompt = str(doc.fields["prompt"])
        start, end = _docstring_span(prompt)
        if where == "start":
            # Right after the opening quotes, then a line break with the docstring's indentation.
            indent = _indent_of(prompt, end)
            new = prompt[:start] + " " + sentence + "\n" + indent + prompt[start:].lstrip(" ")
        else:
            line_start = prompt.rfind("\n", 0, end) + 1
            if prompt[line_start:end].strip():
                new = prompt[:end] + " " + sentence + " " + prompt[end:]
            else:
                new = prompt[:line_start] + _indent_of(prompt, end) + sentence + "\n" + prompt[line_start:]
        return with_fields(doc, {"prompt": new})

    def map_prose(self, doc: Doc, fn: Callable[[str], str]) -> Doc:
        """Apply ``fn`` to the docstring's description lines, before any example or doctest."""
        prompt = str(doc.fields["prompt"])
        start, end = _docstring_span(prompt)
        lines = prompt[start:end].split("\n")
        n_prose = next((i for i, line in enumerate(lines) if _EXAMPLE_LINE.search(line)), len(lines))
        # One call over the whole description, so a rate applies to it as a whole.
        if n_prose:
            lines = fn("\n".join(lines[:n_prose])).split("\n") + lines[n_prose:]
        return with_fields(doc, {"prompt": prompt[:start] + "\n".join(lines) + prompt[end:]})


def _docstring_span(prompt: str) -> tuple[int, int]:
    """(start, end) of the last docstring's text, between its quotes."""
    quote = '"""' if prompt.rfind('"""') > prompt.rfind("'''") else "'''"
    end = prompt.rfind(quote)
    start = prompt.rfind(quote, 0, end) + len(quote)
    return start, end


def _indent_of(prompt: str, end: int) -> str:
    line_start = prompt.rfind("\n", 0, end) + 1
    line = prompt[line_start:end]
    return line[: len(line) - len(line.lstrip(" "))] or "    "


def _scored(primary: str, result: ExecutionResult) -> Scored:
    # `extracted` records why a program failed: the last line of its traceback.
    lines = result.stderr_tail.strip().splitlines()
    outcome = result.status if result.passed or not lines else f"{result.status}: {lines[-1][:200]}"
    return Scored({primary: float(result.passed)}, primary, outcome, "passes the official tests")
