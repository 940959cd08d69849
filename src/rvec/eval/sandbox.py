"""Run model-written Python (HumanEval candidates) under OS isolation (bubblewrap), one program at a time.

**Isolation** (details, flag by flag, in docs/security.md and :mod:`rvec.eval._bwrap`). Each program
runs under ``bwrap`` as uid/gid 65534 — also on the host: as root an outer ``bwrap`` + ``setpriv``
switch to that uid before the inner, unprivileged ``bwrap`` — with no capabilities and
``no_new_privs``, in its own user (no nested ones), pid, network, ipc, uts and cgroup namespaces.
Its filesystem is a fresh read-only root holding only ``/usr`` and the interpreter, a minimal
``/dev`` and one writable size-limited tmpfs, its folder; no ``/proc``, ``/etc``, ``/home``, ``/root``,
``/run`` or host ``/tmp``. The launcher (:mod:`rvec.eval._launcher`) sets ``RLIMIT_CPU`` (the
timeout), ``RLIMIT_AS``, ``RLIMIT_NPROC``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE`` and ``RLIMIT_CORE=0``;
stdout goes to ``/dev/null`` and stderr to an unnamed file (capped by ``RLIMIT_FSIZE``) of which we
read the last 2 kB. After the run — or at the wall-clock timeout — the sandbox's init (pid 1 of its
pid namespace) is killed through a pidfd, which kills everything left in the sandbox, and we wait
until it is gone. Where ``bwrap`` is missing or cannot create namespaces, :func:`require_isolation`
raises :class:`~rvec.errors.SandboxUnavailableError`; there is no weaker fallback.

**The verdict.** A program passes only when its launcher writes a per-run secret token (16 random
bytes from :mod:`secrets`, hex) to a pipe, and the launcher does so only from the frame that ran
the program, after ``exec`` of the whole program (ending in ``check(entry_point)``) returned. Exit
statuses are never read as a pass: ``sys.exit(0)``, ``os._exit(0)``, a signal, closed descriptors or a
crash before the end leave the pipe without the token. To fake a pass the program would have to know
the token: it is not in argv, the environment, any file or descriptor it can reach (the memfd that
carries it is closed before the program runs; the report pipe is write-only), nor in any Python
object it can reach: the token lives only in the closure of an audit hook, which Python cannot list
or remove, and the launcher refuses the ways to reach that hook's frame (object-graph walks, trace
functions, other threads' frames, signal handlers, native-code modules, crafted code objects). The
pipe content must equal the token exactly, so printing guesses fails. What a program *can* do is
subvert its own test in its own process (return an object equal to everything, swap ``check`` from a
thread): no harness that runs the test in the candidate's process can rule that out.

Example:
    >>> sandbox = Sandbox(allow=True, timeout_s=5)
    >>> sandbox.run("assert 1 + 1 == 2").passed
    True
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from rvec.errors import CodeExecutionNotAllowedError, SandboxUnavailableError
from rvec.eval import _bwrap

__all__ = ["ExecutionResult", "Sandbox", "require_isolation"]

logger = logging.getLogger(__name__)

_LAUNCHER = (Path(__file__).parent / "_launcher.py").read_text(encoding="utf-8")
_EXIT_SIGXCPU = 128 + signal.SIGXCPU  # bwrap reports a signal death as 128 + signal
_TEARDOWN_S = 10.0  # how long the kernel may take to tear the sandbox down after SIGKILL
_SETUP_GRACE_S = 60.0  # bwrap's own start does not count against the program's timeout
_STDERR_TAIL = 2000


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of one program: ``passed`` only when it ran to its end (see the module docstring)."""

    passed: bool
    status: Literal["passed", "failed", "timeout"]
    returncode: int | None
    stderr_tail: str
    duration_s: float


class Sandbox:
    """Runs programs under bubblewrap (see the module docstring for what is contained and how).

    Args:
        allow (bool): Whether code execution was allowed (``--allow-code-execution``).
        timeout_s (float, default 10.0): Wall-clock limit per program; CPU time is limited to it too.
        memory_mb (int, default 512): Address-space limit per process.
        max_processes (int, default 8): ``RLIMIT_NPROC`` inside the sandbox (processes *and* threads).
        max_file_mb (int, default 16): Largest file, and size of the program's folder.
        max_workers (int, default 2): Programs run in parallel by :meth:`run_many`.
        python_guard (bool, default True): The launcher's in-process refusals of processes, sockets
            and writes outside the folder, on top of the OS isolation; tests turn it off to check
            that the OS isolation alone contains them. The verdict's protection is always on.

    Raises:
        CodeExecutionNotAllowedError: from :meth:`run`/:meth:`run_many` when ``allow`` is False.
        SandboxUnavailableError: from :meth:`run`/:meth:`run_many` when bwrap cannot isolate here.
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

    def _limits(self) -> dict[str, int]:
        return {
            "RLIMIT_CPU": max(1, math.ceil(self.timeout_s)),
            "RLIMIT_AS": self.memory_mb * 1024 * 1024,
            "RLIMIT_NPROC": self.max_processes + 1,  # + the sandbox's init, same uid
            "RLIMIT_FSIZE": self.max_file_mb * 1024 * 1024,
            "RLIMIT_NOFILE": 64,
            "RLIMIT_CORE": 0,
        }

    def _execute(self, program: str) -> ExecutionResult:
        token = _new_token()
        report_r, report_w = os.pipe()
        info_r, info_w = os.pipe()
        sync_r, sync_w = os.pipe()
        config = {
            "token": token,
            "report_fd": report_w,
            "limits": self._limits(),
            "workdir": _bwrap.WORKDIR,
            "guard": self.python_guard,
        }
        config_fd = _memfd(json.dumps(config).encode() + b"\n" + program.encode("utf-8", "replace"))
        del config
        python_fd = os.open(_bwrap.interpreter()[0], os.O_RDONLY | os.O_CLOEXEC)  # bwrap reads it to the end
        argv = _bwrap.command(
            _tools(),
            config_fd=config_fd,
            info_fd=info_w,
            sync_fd=sync_w,
            python_fd=python_fd,
            launcher=_LAUNCHER,
            work_bytes=self.max_file_mb * 1024 * 1024,
        )
        owned = [report_r, info_r, sync_r]
        passed_on = (config_fd, report_w, info_w, sync_w, python_fd)
        try:
            with tempfile.TemporaryFile() as stderr:
                start = time.monotonic()
                try:
                    proc = _spawn(argv, stderr, keep=passed_on)
                finally:
                    for fd in passed_on:
                        os.close(fd)
                init = None
                try:
                    child_pid, init = _watch_init(info_r, sync_r, start + self.timeout_s + _SETUP_GRACE_S)
                    # The program's time starts once bwrap has built the sandbox.
                    timed_out = _wait(proc, time.monotonic() + self.timeout_s)
                finally:
                    _kill(proc, init)
                duration = time.monotonic() - start
                stderr_tail = _tail(stderr)
            report = _read_available(report_r, limit=4096)
        finally:
            for fd in owned:
                os.close(fd)
        if child_pid is None:  # bwrap did not start the sandbox: an infrastructure error, not a verdict
            raise SandboxUnavailableError(
                f"the sandbox for model-written code could not start ({_last_line(stderr_tail)}); "
                "bubblewrap needs unprivileged user namespaces (sysctl user.max_user_namespaces > 0)"
            )
        passed = secrets.compare_digest(report, token.encode())
        timed_out = timed_out or proc.returncode == _EXIT_SIGXCPU  # the CPU limit equals the timeout
        status: Literal["passed", "failed", "timeout"] = (
            "passed" if passed else "timeout" if timed_out else "failed"
        )
        returncode = None if timed_out and not passed else proc.returncode
        return ExecutionResult(passed, status, returncode, stderr_tail, duration)


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
        SandboxUnavailableError: bwrap (or setpriv) is missing, or the sandbox cannot be created;
            the one-line message names the install command or the kernel setting.
    """
    global _PROBE_OK
    with _PROBED:
        if _PROBE_OK:
            return
        result = Sandbox(allow=True, timeout_s=60)._execute("pass")
        if not result.passed:
            raise SandboxUnavailableError(
                f"the sandbox for model-written code does not work here ({_last_line(result.stderr_tail)}); "
                "see docs/security.md"
            )
        _PROBE_OK = True


def _new_token() -> str:
    """The per-run pass token (tests fix it to search the sandbox for it)."""
    return secrets.token_hex(16)


def _memfd(data: bytes) -> int:
    # An unnamed in-memory file: nothing on disk, no path the program could reopen.
    fd = os.memfd_create("rvec-sandbox-program", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _spawn(argv: list[str], stderr: IO[bytes], *, keep: tuple[int, ...]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # a program printing forever fills nothing
        stderr=stderr,
        pass_fds=keep,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        start_new_session=True,  # one signal reaches both bwrap monitors
    )


def _watch_init(info_r: int, sync_r: int, deadline: float) -> tuple[int | None, int | None]:
    """The pid bwrap reports for the sandbox's init, and a pidfd on it while it is certainly that init."""
    data = b""
    while (remaining := deadline - time.monotonic()) > 0 and _readable(info_r, remaining):
        chunk = os.read(info_r, 4096)
        if not chunk:
            break
        data += chunk
    with contextlib.suppress(ValueError, KeyError, TypeError):
        child_pid = int(json.loads(data)["child-pid"])
        pidfd = os.pidfd_open(child_pid)
        # Only init holds the sync pipe's write end: if it is still open, init was alive after the
        # pidfd was opened, so the pidfd is init's and not a reused pid's.
        poller = select.poll()
        poller.register(sync_r, select.POLLIN)
        if poller.poll(0):
            os.close(pidfd)
            return child_pid, None
        return child_pid, pidfd
    return None, None


def _readable(fd: int, timeout_s: float) -> bool:
    """Whether ``fd`` turns readable within ``timeout_s``. poll, not select: a process holding many
    files (a test suite, a study with cached datasets) gets descriptors above select's limit of 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout_s * 1000))))


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> bool:
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return True
    return False


def _kill(proc: subprocess.Popen[bytes], init: int | None) -> None:
    """Kill the sandbox's init (hence everything in its pid namespace) and both bwrap monitors."""
    if init is not None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(init, signal.SIGKILL)
        # A pidfd turns readable once the process has exited, which for a namespace's init is after
        # every other process in the namespace is gone.
        if not _readable(init, _TEARDOWN_S):
            logger.warning("sandbox: its init still runs %.0f s after SIGKILL", _TEARDOWN_S)
        os.close(init)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _read_available(fd: int, *, limit: int) -> bytes:
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        return os.read(fd, limit)
    return b""


def _tail(stream: IO[bytes]) -> str:
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - _STDERR_TAIL))
    return stream.read().decode("utf-8", "replace")


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no message"
