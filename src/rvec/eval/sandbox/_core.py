"""The :class:`Sandbox`: runs one program per bubblewrap sandbox and scores it (see the package docstring)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rvec.errors import CodeExecutionNotAllowedError, SandboxUnavailableError
from rvec.eval.sandbox import _bwrap, _cgroup, _seccomp, _supervise, _view

__all__ = ["ExecutionResult", "Sandbox", "require_isolation"]

_LAUNCHER = (Path(__file__).parent / "_launcher.py").read_text(encoding="utf-8")
_EXIT_SIGXCPU = 128 + signal.SIGXCPU  # bwrap reports a signal death as 128 + signal
_SETUP_GRACE_S = 60.0  # bwrap's own start does not count against the program's timeout
_LAST_SOUND_PYTHON = (3, 13)  # see _check_python
_CGROUP_SLACK_MB = 64  # the sandbox's cgroup also holds bwrap's monitors and the kernel's share


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of one program: ``passed`` only when its ``check`` returned (see the package docstring)."""

    passed: bool
    status: Literal["passed", "failed", "timeout"]
    returncode: int | None
    stderr_tail: str
    duration_s: float


class Sandbox:
    """Runs programs under bubblewrap (see the package docstring for what is contained and how).

    Args:
        allow (bool): Whether code execution was allowed (``--allow-code-execution``).
        timeout_s (float, default 10.0): Wall-clock limit per program; CPU time is limited to it too.
        memory_mb (int, default 512): Address-space limit per process.
        max_processes (int, default 8): ``RLIMIT_NPROC`` inside the sandbox (processes *and* threads).
        max_file_mb (int, default 16): Largest file, and size of the program's folder.
        max_workers (int, default 2): Programs run in parallel by :meth:`run_many`.
        python_guard (bool, default True): The launcher's in-process refusals of processes, signals
            and writes outside the folder, on top of the OS isolation; tests turn it off to check
            that the OS isolation alone contains them. The verdict's protections (the report gate,
            no native code, no introspection of the hooks) are always on.

    Raises:
        CodeExecutionNotAllowedError: from :meth:`run`/:meth:`run_many` when ``allow`` is False.
        SandboxUnavailableError: from :meth:`run`/:meth:`run_many` when bwrap cannot isolate here.

    Example:
        >>> Sandbox(allow=True, timeout_s=5).run("assert 1 + 1 == 2").passed
        True
    """

    def __init__(
        self,
        allow: bool,
        *,
        timeout_s: float = 10.0,
        memory_mb: int = 512,
        max_processes: int = 8,
        max_file_mb: int = 16,
        max_workers: int = 2,
        python_guard: bool = True,
    ) -> None:
        self.allow = allow
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_processes = max_processes
        self.max_file_mb = max_file_mb
        self.max_workers = max(1, max_workers)
        self.python_guard = python_guard

    def run(self, program: str) -> ExecutionResult:
        """Run one program to its end or the timeout.

        Args:
            program (str): Python source; it passes when it runs to its end without an exception.

        Returns:
            ExecutionResult: passed/failed/timeout, exit code, the end of stderr, duration.

        Raises:
            CodeExecutionNotAllowedError: ``allow`` is False.
            SandboxUnavailableError: bwrap is missing or cannot create the sandbox.
        """
        self._check_allowed()
        require_isolation()
        return self._execute(program)

    def run_many(self, programs: Sequence[str]) -> list[ExecutionResult]:
        """Run programs ``max_workers`` at a time; results keep the input order.

        Raises:
            CodeExecutionNotAllowedError: ``allow`` is False.
            SandboxUnavailableError: bwrap is missing or cannot create the sandbox.
        """
        self._check_allowed()
        require_isolation()
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="rvec-sandbox") as pool:
            return list(pool.map(self._execute, programs))

    # ---------------------------------------------------------------------------------- internals
    def _check_allowed(self) -> None:
        if not self.allow:
            raise CodeExecutionNotAllowedError(
                "this task runs model-written code; pass --allow-code-execution to allow it "
                "(it runs isolated by bubblewrap, see rvec.eval.sandbox)"
            )

    def _settings(self, view: _view.View) -> dict[str, object]:
        return {
            "limits": {
                "RLIMIT_CPU": _cpu_limits(self.timeout_s),
                "RLIMIT_AS": self.memory_mb << 20,
                "RLIMIT_NPROC": self.max_processes + 1,  # + the sandbox's init, same uid
                "RLIMIT_FSIZE": self.max_file_mb << 20,
                "RLIMIT_NOFILE": 64,
                "RLIMIT_CORE": 0,
            },
            "workdir": _bwrap.WORKDIR,
            "guard": self.python_guard,
            "extensions": list(view.extensions),
            "refused_modules": sorted(_view.REFUSED_MODULES),
            "stdlib": view.stdlib,
        }

    def _execute(self, program: str) -> ExecutionResult:
        view = _view.view()
        payload = json.dumps(self._settings(view)).encode() + b"\n" + program.encode("utf-8", "replace")
        tools = _tools()
        bound = {"memory_bytes": (self.memory_mb + _CGROUP_SLACK_MB) << 20, "pids": self.max_processes + 8}
        while True:
            with _cgroup.cgroup(**bound) as cgroup, _report_socket() as (listener, path):
                fds = _RunFds(view)
                try:
                    argv = _cgroup.join_prefix(tools.sh or "sh", cgroup) + _bwrap.command(
                        tools,
                        view,
                        fds=fds.bwrap,
                        report_socket=path,
                        launcher=_LAUNCHER,
                        work_bytes=self.max_file_mb << 20,
                    )
                    start = time.monotonic()
                    outcome = _supervise.supervise(
                        argv,
                        fds=fds,
                        listener=listener,
                        payload=payload,
                        timeout_s=self.timeout_s,
                        setup_s=self.timeout_s + _SETUP_GRACE_S,
                    )
                    duration = time.monotonic() - start
                finally:
                    fds.close()
            if cgroup is None or outcome.started or outcome.returncode != _cgroup.JOIN_FAILED:
                return _result(outcome, duration)
            _cgroup.disable(f"cannot move a sandbox into {cgroup}")  # then run it again without


def _cpu_limits(timeout_s: float) -> tuple[int, int]:
    """SIGXCPU at the timeout, SIGKILL well after it.

    Linux checks the hard CPU limit before the soft one, so with soft == hard a busy program dies by
    SIGKILL (indistinguishable from any other kill) instead of SIGXCPU. The hard limit is a backstop
    for a program that blocks SIGXCPU: one thread cannot reach it before the wall clock's timeout.
    """
    soft = max(1, math.ceil(timeout_s))
    return soft, 2 * soft + 2


def _result(outcome: _supervise.Outcome, duration: float) -> ExecutionResult:
    stderr_tail = bytes(outcome.stderr).decode("utf-8", "replace")
    if outcome.notes:
        stderr_tail = (stderr_tail + "\n" + "\n".join(outcome.notes))[-_supervise.STDERR_TAIL :]
    if not outcome.started:  # bwrap or the launcher did not start: an infrastructure error, not a verdict
        raise SandboxUnavailableError(
            f"the sandbox for model-written code could not start ({_last_line(stderr_tail)}); "
            "bubblewrap needs unprivileged user namespaces (sysctl user.max_user_namespaces > 0)"
        )
    passed = outcome.passed
    timed_out = outcome.timed_out or outcome.returncode == _EXIT_SIGXCPU  # the CPU limit equals the timeout
    status: Literal["passed", "failed", "timeout"] = (
        "passed" if passed else "timeout" if timed_out else "failed"
    )
    returncode = None if timed_out and not passed else outcome.returncode
    return ExecutionResult(passed, status, returncode, stderr_tail, duration)


@contextlib.contextmanager
def _report_socket() -> Iterator[tuple[socket.socket, str]]:
    """A listening unix socket in a fresh private folder; as root, connectable only by uid 65534."""
    folder = tempfile.mkdtemp(prefix="rvec-sandbox-")
    path = os.path.join(folder, "report.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        if os.geteuid() == 0:  # the sandbox's uid must reach it through the folder, and connect
            os.chmod(folder, 0o711)
            os.chown(path, _bwrap.SANDBOX_UID, _bwrap.SANDBOX_UID)
            os.chmod(path, 0o600)
        listener.listen(8)
        listener.setblocking(False)
        yield listener, path
    finally:
        listener.close()
        shutil.rmtree(folder, ignore_errors=True)


class _RunFds:
    """Every descriptor of one run: the sandbox's ends (closed once bwrap has them) and ours."""

    def __init__(self, view: _view.View) -> None:
        self.child: list[int] = []
        self.parent: list[int] = []
        try:
            stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
            os.close(stdin_w)  # the program reads end of file
            self.child.append(stdin_r)
            (out_r, out_w), (err_r, err_w) = self._pipe(), self._pipe()
            (info_r, info_w), (sync_r, sync_w) = self._pipe(), self._pipe()
            bpf_r, bpf_w = os.pipe2(os.O_CLOEXEC)  # bwrap reads the filter from this one
            self.child.append(bpf_r)
            _write_all(bpf_w, _seccomp.filter_bpf())  # a few kB: fits in the pipe
            python = os.open(view.python, os.O_RDONLY | os.O_CLOEXEC)  # bwrap reads it to the end
            self.child.append(python)
        except BaseException:
            self.close()
            raise
        self.bwrap = _bwrap.Fds(info=info_w, sync=sync_w, seccomp=bpf_r, python=python)
        self.stdio = (stdin_r, out_w, err_w)
        self.pipes = _supervise.Pipes(stdout=out_r, stderr=err_r, info=info_r, sync=sync_r)

    def _pipe(self) -> tuple[int, int]:
        r, w = os.pipe2(os.O_CLOEXEC)
        self.parent.append(r)
        self.child.append(w)
        return r, w

    def close_child(self) -> None:
        """Close the sandbox's ends (bwrap holds its own copies): the sync pipe then ends with init."""
        while self.child:
            os.close(self.child.pop())

    def close(self) -> None:
        self.close_child()
        while self.parent:
            os.close(self.parent.pop())


def _write_all(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


_TOOLS: _bwrap.Tools | None = None
_PROBED = threading.Lock()
_PROBE_OK = False


def _tools() -> _bwrap.Tools:
    global _TOOLS
    if _TOOLS is None:
        _TOOLS = _bwrap.find_tools()
    return _TOOLS


def require_isolation() -> None:
    """Check once per process that bwrap is installed and can run a program in the sandbox.

    Called before any model is loaded (``check_code_execution``) and by :class:`Sandbox`.

    Raises:
        SandboxUnavailableError: bwrap, setpriv or libseccomp is missing, or the sandbox cannot be
            created; the one-line message names the install command or the kernel setting.
    """
    global _PROBE_OK
    with _PROBED:
        if _PROBE_OK:
            return
        _check_python()
        _seccomp.filter_bpf()
        result = Sandbox(allow=True, timeout_s=60)._execute("pass")
        if not result.passed:
            raise SandboxUnavailableError(
                f"the sandbox for model-written code does not work here ({_last_line(result.stderr_tail)}); "
                "see docs/security.md"
            )
        _PROBE_OK = True


def _check_python() -> None:
    """The launcher's audit hooks are sound on CPython 3.10-3.12 only (docs/security.md).

    A finaliser can run inside an audit hook (the cyclic collector runs at an allocation there, and
    from 3.12 at instruction boundaries too). Up to 3.12 it can only read the hook's locals, which
    hold nothing secret; 3.13's write-through ``frame.f_locals`` (PEP 667) lets it rewrite them, e.g.
    empty the set of refused modules for the rest of that call.
    """
    if sys.version_info >= _LAST_SOUND_PYTHON:
        version = ".".join(map(str, sys.version_info[:3]))
        raise SandboxUnavailableError(
            f"running model-written code needs CPython 3.10-3.12, found {version}: from 3.13 a finaliser "
            "can rewrite the sandbox's audit hooks through frame.f_locals; run rvec with Python 3.12 or older"
        )


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no message"
