"""The sandbox: HumanEval canonical solutions pass, broken ones fail, hostile programs are contained."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from rvec.errors import CodeExecutionNotAllowedError
from rvec.eval.data import DataSource
from rvec.eval.presets import get_preset
from rvec.eval.sandbox import Sandbox
from rvec.eval.tasks import get_task
from rvec.eval.types import Response

LM_EVAL = get_preset("lm-eval")


def test_canonical_solutions_pass_and_broken_ones_fail(source: DataSource) -> None:
    task = get_task("humaneval")
    docs = task.docs(source)
    sandbox = Sandbox(allow=True, timeout_s=10, max_workers=2)
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
    sandbox = Sandbox(allow=True, timeout_s=5)
    results = sandbox.run_many(
        [
            "open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n",
            "import math, re, hashlib, collections, itertools\nassert math.gcd(12, 18) == 6\n",
            "assert False, 'boom'\n",
            "import sys\nsys.exit(0)\n",  # leaving early is not passing
        ]
    )
    assert [r.status for r in results] == ["passed", "passed", "failed", "failed"]
    assert "boom" in results[2].stderr_tail
    # The launcher reports what it set up; as root it must have had its namespace and its own uid.
    expected = {"netns": os.geteuid() == 0, "nproc": True}
    report = sandbox.run(f"import json\nassert json.load(open('isolation.json')) == {expected!r}\n")
    assert report.passed, report.stderr_tail


@pytest.fixture
def listener() -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    yield server
    server.close()


def test_reaching_the_cpu_limit_counts_as_a_timeout() -> None:
    # The CPU limit equals the timeout; whichever a busy loop reaches first, it is a timeout. The
    # program raises SIGXCPU itself (what the kernel sends at the limit), so the outcome does not
    # depend on the machine's load.
    program = "import signal\nsignal.raise_signal(signal.SIGXCPU)\n"
    result = Sandbox(allow=True, timeout_s=5).run(program)
    assert (result.passed, result.status, result.returncode) == (False, "timeout", None)


def test_hostile_programs_are_contained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listener: socket.socket
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    sentinel = outside / "sentinel.txt"
    sentinel.write_text("precious")
    monkeypatch.setenv("RVEC_SANDBOX_SECRET", "hunter2")
    port = listener.getsockname()[1]
    hostile = {
        "infinite loop": "while True:\n    pass\n",
        "fork bomb": "import os\nwhile True:\n    os.fork()\n",
        # Threads count against RLIMIT_NPROC too: this proves the process limit is in force.
        "thread bomb": (
            "import threading, time\n"
            "threads = [threading.Thread(target=time.sleep, args=(2,)) for _ in range(200)]\n"
            "for t in threads:\n    t.start()\n"
        ),
        "subprocess": f"import subprocess\nsubprocess.run(['rm', '-f', {str(sentinel)!r}])\n",
        "memory bomb": "blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 1024 * 1024))\n",
        "write outside": f"with open({str(sentinel)!r}, 'w') as fh:\n    fh.write('pwned')\n",
        "pathlib write": f"import pathlib\npathlib.Path({str(sentinel)!r}).write_text('pwned')\n",
        "delete file": f"import os\nos.remove({str(sentinel)!r})\n",
        "delete tree": f"import shutil\nshutil.rmtree({str(outside)!r})\n",
        "rename": f"import os\nos.rename({str(sentinel)!r}, 'stolen.txt')\n",
        "env secret": "import os\nassert os.environ.get('RVEC_SANDBOX_SECRET') == 'hunter2'\n",
        "parent env": "import os\nassert b'hunter2' in open(f'/proc/{os.getppid()}/environ', 'rb').read()\n",
        "socket": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n",
        "raw _socket": f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))\n",
        "kill parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    }
    sandbox = Sandbox(allow=True, timeout_s=3, memory_mb=512, max_workers=2)
    results = dict(zip(hostile, sandbox.run_many(list(hostile.values())), strict=True))
    passed = [name for name, result in results.items() if result.passed]
    assert passed == []
    assert results["infinite loop"].status == "timeout"
    assert results["infinite loop"].duration_s < 3 + 2
    assert "can't start new thread" in results["thread bomb"].stderr_tail
    assert "MemoryError" in results["memory bomb"].stderr_tail
    assert sentinel.read_text() == "precious"  # the file system outside is unharmed
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever connected
    os.kill(os.getpid(), 0)  # and we are alive to say so
