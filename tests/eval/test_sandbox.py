"""The sandbox: HumanEval canonical solutions pass, broken ones fail, the limits hold, and without
bubblewrap code execution is refused before any model loads. Hostile programs: test_sandbox_redteam.py."""

from __future__ import annotations

import dis
import errno
import os
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures import processes_with
from rvec.cli import app
from rvec.errors import CodeExecutionNotAllowedError, SandboxUnavailableError
from rvec.eval.data import DataSource
from rvec.eval.plan import check_code_execution
from rvec.eval.presets import get_preset
from rvec.eval.sandbox import Sandbox, _launcher, _view
from rvec.eval.sandbox import _core as sandbox_module
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


def test_a_program_that_spends_its_cpu_time_before_the_wall_clock_is_a_timeout() -> None:
    # Two threads hashing outside the GIL spend CPU time about twice as fast as the wall clock runs,
    # so on an idle machine the CPU limit comes first. Linux checks the hard limit before the soft
    # one: with soft == hard the kernel's SIGKILL made this a plain "failed" (exit 137) on CI.
    program = (
        "import hashlib, threading\nblock = b'x' * (1 << 24)\n"
        "def burn():\n    while True:\n        hashlib.sha256(block).digest()\n"
        "threads = [threading.Thread(target=burn) for _ in range(2)]\n"
        "for t in threads:\n    t.start()\nfor t in threads:\n    t.join()\n"
    )
    result = Sandbox(allow=True, timeout_s=3).run(program)
    assert (result.passed, result.status, result.returncode) == (False, "timeout", None), result.stderr_tail


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


# --- issue 19: what the sandbox's Python can reach, the verdict channel, the resource bounds --------
_LAYERS = pytest.mark.parametrize("guard", [True, False], ids=["guard+os", "os-only"])


@_LAYERS
def test_every_descriptor_the_program_inherits_is_a_pipe(guard: bool) -> None:
    # A host file among them (stderr used to be one) could be grown with fallocate(KEEP_SIZE).
    program = (
        "import os, stat\nopen_fds = {}\nfor fd in range(1024):\n    try:\n"
        "        open_fds[fd] = stat.S_ISFIFO(os.fstat(fd).st_mode)\n    except OSError:\n        pass\n"
        "assert open_fds == {0: True, 1: True, 2: True}, open_fds\n"
    )
    result = Sandbox(allow=True, timeout_s=10, python_guard=guard).run(program)
    assert result.passed, result.stderr_tail


@_LAYERS
def test_the_sandbox_python_holds_only_the_allowed_extension_modules(guard: bool) -> None:
    view = _view.view()
    program = (
        "import os, sys\n"
        f"dynload, hidden = {view.dynload!r}, {list(view.hidden)!r}\n"
        "names = {n.partition('.')[0] for n in os.listdir(dynload)}\n"
        f"assert names <= {set(_view.ALLOWED_EXTENSIONS)!r}, names\n"
        "assert not {'_ctypes', '_testcapi', '_testinternalcapi', '_posixsubprocess'} & names\n"
        "assert [os.listdir(h) for h in hidden] == [[] for _ in hidden], hidden\n"
    )
    assert view.hidden  # at least the interpreter's site-packages (dist-packages on Debian's Python)
    result = Sandbox(allow=True, timeout_s=10, python_guard=guard).run(program)
    assert result.passed, result.stderr_tail


def test_the_seccomp_filter_refuses_what_a_unit_test_never_needs() -> None:
    # Raw system calls from perl (x86_64 numbers), where exec is allowed: each must fail with EPERM.
    calls = {
        "ptrace": "101, 16, 1, 0, 0",  # PTRACE_ATTACH to the sandbox's init
        "process_vm_readv": "310, 1, 0, 0, 0, 0, 0",
        "pidfd_getfd": "438, 0, 0, 0",
        "memfd_create": "319, $name, 0",
        "mount": "165, $name, $target, $kind, 0, 0",
        "unshare": "272, 0x10000000",
        "setns": "308, 0, 0",
        "userfaultfd": "323, 0",
        "perf_event_open": "298, 0, 0, -1, -1, 0",
        "bpf": "321, 0, 0, 0",
        "keyctl": "250, 0, 0, 0, 0, 0",
        "fallocate": "285, 2, 1, 0, 4096",
    }
    # perl passes a variable's buffer as a pointer (a literal would be read-only)
    script = 'my ($name, $target, $kind) = ("x", "/tmp", "tmpfs");\n' + "".join(
        f'syscall({args}); print STDERR "{name}=", $!+0, "\\n";\n' for name, args in calls.items()
    )
    program = f"import os\nos.execv('/usr/bin/perl', ['perl', '-e', {script!r}])\n"
    result = Sandbox(allow=True, timeout_s=10, python_guard=False).run(program)
    found = dict(line.split("=") for line in result.stderr_tail.split() if "=" in line)
    assert found == dict.fromkeys(calls, str(errno.EPERM)), result.stderr_tail


@pytest.mark.parametrize(
    "program",
    [
        # four processes flooding the folder with empty files, ignoring every error: on a tmpfs without
        # an inode limit the kernel's teardown of the files took the run 1.6 s past its timeout
        "import os\nfor _ in range(2):\n    os.fork()\nn, me = 0, str(os.getpid())\nwhile True:\n    n += 1\n"
        "    try:\n        os.close(os.open('%s-%d' % (me, n), os.O_CREAT))\n    except OSError:\n        pass\n",
        # every signal blocked, then a busy loop
        "import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))\nwhile True:\n    pass\n",
        # sleepers with signals blocked, forked as fast as the process limit lets them
        "import os, signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))\nwhile True:\n"
        "    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n",
    ],
    ids=["inode-flood", "signals-blocked", "fork-bomb-signals-blocked"],
)
def test_the_timeout_holds_whatever_the_program_does(program: str) -> None:
    result = Sandbox(allow=True, timeout_s=5, python_guard=False).run(program)
    assert (result.passed, result.status) == (False, "timeout")
    assert result.duration_s < 5 + 1.2, result.duration_s  # killed and torn down promptly


def _reporter(delay_s: float) -> str:
    """A fresh interpreter (no guard) that reports `returned` to the harness after ``delay_s``."""
    return (
        f"import _socket, time\ntime.sleep({delay_s})\ns = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)\n"
        "s.connect('/rvec/report')\ns.sendall(b'returned\\n')\ns.recv(1)\n"
    )


@pytest.mark.parametrize(
    ("program", "note"),
    [
        # a wrong answer; a child reports from another pid
        (
            "import os, sys\nif os.fork() == 0:\n    os.execv(sys.executable, [sys.executable, '-c', REPORT])\n"
            "os.wait()\nassert 1 == 2\n",
            "a report came from another process",
        ),
        # a wrong answer; the launcher's own process becomes a reporter
        (
            "import os, sys\nos.execv(sys.executable, [sys.executable, '-c', REPORT])\n",
            "the launcher's process ran another program (exec) before it reported",
        ),
        # a right answer, but the channel was used before check returned: a second report
        (
            "import os, sys\nif os.fork() == 0:\n    os.execv(sys.executable, [sys.executable, '-c', REPORT])\n"
            "os.wait()\nassert 1 == 1\n",
            "a second report",
        ),
    ],
    ids=["from-a-child", "after-exec", "earlier-use-of-a-passing-program"],
)
def test_a_report_that_is_not_the_launchers_fails_the_item(program: str, note: str) -> None:
    sandbox = Sandbox(allow=True, timeout_s=10, python_guard=False)
    result = sandbox.run(f"REPORT = {_reporter(0)!r}\n{program}")
    assert (result.passed, result.status) == (False, "failed")
    assert f"rvec sandbox: {note}" in result.stderr_tail, result.stderr_tail


def test_the_guard_and_the_gate_load_no_global_name() -> None:
    # A name the hooks looked up at call time (a global, `builtins.type`) could be rebound by the program.
    codes = [f.__code__ for f in (_launcher._check_import, _launcher._check_bytecode, _launcher._check_paths)]
    for install in (_launcher._install_gate, _launcher._install_guard):
        codes += [c for c in install.__code__.co_consts if isinstance(c, types.CodeType)]
    loads = {
        code.co_name: [
            i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")
        ]
        for code in codes
    }
    assert loads == {
        name: [] for name in ("_check_import", "_check_bytecode", "_check_paths", "gate", "guard")
    }


def test_model_written_code_is_refused_on_python_3_13(monkeypatch: pytest.MonkeyPatch) -> None:
    # PEP 667 lets a finaliser rewrite an audit hook's locals: the guard is not sound there.
    monkeypatch.setattr(sandbox_module, "_PROBE_OK", False)
    monkeypatch.setattr(sys, "version_info", (3, 13, 0, "final", 0))
    with pytest.raises(SandboxUnavailableError) as err:
        Sandbox(allow=True).run("assert True")
    assert "needs CPython 3.10-3.12, found 3.13.0" in str(err.value) and "\n" not in str(err.value)
