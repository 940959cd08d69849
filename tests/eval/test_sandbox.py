"""The sandbox: HumanEval canonical solutions pass, broken ones fail, the limits hold, and without
bubblewrap code execution is refused before any model loads. Hostile programs: test_sandbox_redteam.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures import processes_with
from rvec.cli import app
from rvec.errors import CodeExecutionNotAllowedError, SandboxUnavailableError
from rvec.eval import sandbox as sandbox_module
from rvec.eval.data import DataSource
from rvec.eval.plan import check_code_execution
from rvec.eval.presets import get_preset
from rvec.eval.sandbox import Sandbox
from rvec.eval.tasks import get_task
from rvec.eval.types import Response

LM_EVAL = get_preset("lm-eval")


def test_canonical_solutions_pass_and_broken_ones_fail(source: DataSource) -> None:
    task = get_task("humaneval")
    docs = task.docs(source)
    sandbox = Sandbox(allow=True, timeout_s=60, max_workers=2)  # generous: CI machines may be loaded
    canonical = [Response(text=d.fields["canonical_solution"]) for d in docs]
    scored = task.score_many(docs, canonical, sandbox=sandbox, preset=LM_EVAL)
    failed = [
        (d.doc_id, s.extracted) for d, s in zip(docs, scored, strict=True) if s.metrics[s.primary] != 1.0
    ]
    assert failed == []
    broken = [
        "    return None\n",
        "    return undefined_name\n",
        "    return (\n",  # syntax error
        "    raise ValueError('no')\n",
        "    import sys\n    sys.exit(0)\n",  # leaving before the tests run is not passing
        "    import os\n    os._exit(0)\n",
    ]
    subset = docs[:12]
    responses = [Response(text=broken[i % len(broken)]) for i in range(len(subset))]
    scored = task.score_many(subset, responses, sandbox=sandbox, preset=LM_EVAL)
    assert [s.metrics["pass@1,create_test"] for s in scored] == [0.0] * len(subset)
    assert all(s.extracted and s.extracted.startswith("failed") for s in scored)


def test_paper_extraction_passes_fenced_full_functions(source: DataSource) -> None:
    task = get_task("humaneval")
    docs = task.docs(source, limit=8)
    responses = [
        Response(
            text=f"Here you go:\n```python\n{d.fields['prompt']}{d.fields['canonical_solution']}```\nDone."
        )
        for d in docs
    ]
    scored = task.score_many(docs, responses, sandbox=Sandbox(allow=True))
    assert [s.metrics["pass@1,extract"] for s in scored] == [1.0] * len(docs)


def test_execution_needs_permission(source: DataSource) -> None:
    with pytest.raises(CodeExecutionNotAllowedError, match="--allow-code-execution"):
        Sandbox(allow=False).run("print(1)")
    task = get_task("humaneval")
    doc = task.docs(source, limit=1)[0]
    with pytest.raises(CodeExecutionNotAllowedError):
        task.score(doc, Response(text="    return True\n"))
    with pytest.raises(CodeExecutionNotAllowedError):
        task.score(doc, Response(text="    return True\n"), sandbox=Sandbox(allow=False))


def test_legitimate_programs_and_exit_codes() -> None:
    sandbox = Sandbox(allow=True, timeout_s=10)
    results = sandbox.run_many(
        [
            "open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n",
            "import math, re, hashlib, collections, itertools, typing, heapq, fractions, json, random\n"
            "assert math.gcd(12, 18) == 6\n",
            "import os\nassert os.getuid() == os.geteuid() == 65534 and os.getcwd() == '/tmp'\n",
            "assert False, 'boom'\n",
            "import sys\nsys.exit(0)\n",  # leaving early is not passing, whatever the status
            "import os\nos._exit(0)\n",
        ]
    )
    assert [r.status for r in results] == ["passed"] * 3 + ["failed"] * 3
    assert [r.returncode for r in results] == [0, 0, 0, 1, 3, 0]
    assert "AssertionError: boom" in results[3].stderr_tail
    assert "program called exit()" in results[4].stderr_tail


def test_reaching_the_cpu_limit_counts_as_a_timeout() -> None:
    # The CPU limit equals the timeout; whichever a busy loop reaches first, it is a timeout. The
    # program raises SIGXCPU itself (what the kernel sends at the limit), so the outcome does not
    # depend on the machine's load.
    program = "import signal\nsignal.raise_signal(signal.SIGXCPU)\n"
    result = Sandbox(allow=True, timeout_s=5).run(program)
    assert (result.passed, result.status, result.returncode) == (False, "timeout", None)


def test_a_program_that_never_ends_is_stopped_at_the_timeout_and_leaves_nothing() -> None:
    marker = f"rvec-sandbox-test-{os.getpid()}-forever"
    program = f"import os\nos.execv('/usr/bin/sh', ['sh', '-c', 'while :; do :; done', {marker!r}])\n"
    result = Sandbox(allow=True, timeout_s=2, python_guard=False).run(program)
    assert (result.passed, result.status, result.returncode) == (False, "timeout", None)
    assert processes_with(marker) == []


@pytest.fixture
def without_bubblewrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH without bwrap, and the once-per-process check forgotten (restored afterwards)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(sandbox_module, "_TOOLS", None)
    monkeypatch.setattr(sandbox_module, "_PROBE_OK", False)


@pytest.mark.usefixtures("without_bubblewrap")
def test_without_bubblewrap_code_execution_is_refused_in_one_line() -> None:
    with pytest.raises(SandboxUnavailableError) as err:
        Sandbox(allow=True).run("assert True")
    message = str(err.value)
    assert "apt-get install bubblewrap" in message and "\n" not in message
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
        check_code_execution(["gsm8k", "humaneval"], allowed=True)
    check_code_execution(["gsm8k"], allowed=True)  # no code to run, nothing to refuse


@pytest.mark.usefixtures("without_bubblewrap")
def test_rvec_eval_refuses_humaneval_without_bubblewrap_before_loading_the_model(tmp_path: Path) -> None:
    # The model does not exist: had rvec tried to load it first, the error would name it instead.
    missing_model = tmp_path / "no-such-model"
    result = CliRunner().invoke(
        app,
        ["eval", str(missing_model), "--tasks", "humaneval", "--allow-code-execution", "--no-progress"],
    )
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rvec: error: ")
    assert "apt-get install bubblewrap" in lines[0] and "no-such-model" not in lines[0]
    assert not missing_model.exists()


def test_the_sandbox_works_in_a_process_holding_more_than_1024_descriptors() -> None:
    """CI ran the suite with > 1024 open descriptors: select() refused them and every sandbox run failed."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        sandbox = Sandbox(allow=True, timeout_s=10)
        ok = sandbox.run("def check(candidate):\n    assert candidate() == 1\n\ncheck(lambda: 1)\n")
        wrong = sandbox.run("def check(candidate):\n    assert candidate() == 1\n\ncheck(lambda: 2)\n")
        assert (ok.passed, wrong.passed) == (True, False)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
