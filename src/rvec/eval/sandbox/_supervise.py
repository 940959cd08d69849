"""One sandboxed run, seen from the harness: start bwrap, serve the launcher, drain the output, judge.

The verdict protocol (the argument is in docs/security.md, the launcher's side in ``_launcher.py``):
the harness listens on a unix socket that the sandbox sees at ``REPORT_PATH``. The first connection
is the launcher's, before the program exists: the harness reads its pid (``SO_PEERCRED``), opens a
pidfd on it, records a fingerprint of its executable image (:func:`_image`, which any ``exec``
replaces) and sends the settings and the program. The run passes only when exactly one more
connection arrives, from that pid, saying ``returned``, while the process is alive and its image
unchanged. Any other connection, a
second report, a report from a child or from an image the process ``exec``-ed into, fails the item
and says why at the end of stderr.

Every descriptor the sandbox inherits is a pipe (stdin at end of file, stdout drained and dropped,
stderr drained into its last :data:`STDERR_TAIL` bytes): no host file the program could grow or
``fallocate``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rvec.eval.sandbox._bwrap import Fds

__all__ = ["STDERR_TAIL", "Outcome", "Pipes", "supervise"]

logger = logging.getLogger(__name__)

STDERR_TAIL = 2000
_TEARDOWN_S = 10.0  # how long the kernel may take to tear the sandbox down after SIGKILL
_REPORT_MAX = 64  # a message is one short line
_MAX_CONNECTIONS = 4  # open at once; the launcher needs one at a time
_STARTED, _RETURNED, _ACK = b"started\n", b"returned\n", b"k"
_READ = select.POLLIN | select.POLLHUP | select.POLLERR
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_AUXV_ENTRY = struct.Struct("@LL")  # (type, value), unsigned longs
_AT_RANDOM = 25  # <linux/auxvec.h>: address of 16 random bytes


@dataclass
class Pipes:
    """The harness's ends of the run's pipes (the sandbox's ends are passed to bwrap)."""

    stdout: int
    stderr: int
    info: int
    sync: int


@dataclass
class Outcome:
    """What one run did, before it becomes an :class:`~rvec.eval.sandbox.ExecutionResult`."""

    init_pid: int | None = None  # the sandbox's pid 1; None if bwrap never built the sandbox
    started: bool = False  # the launcher connected and received the program
    passed: bool = False  # one report that check returned, from the launcher's own image
    timed_out: bool = False
    returncode: int | None = None
    stderr: bytearray = field(default_factory=bytearray)
    notes: list[str] = field(default_factory=list)  # why a report was refused


@dataclass(frozen=True)
class _Launcher:
    pid: int
    pidfd: int
    image: bytes


class RunFds(Protocol):
    """The descriptors of one run (``rvec.eval.sandbox._core._RunFds``)."""

    bwrap: Fds
    stdio: tuple[int, int, int]
    pipes: Pipes

    def close_child(self) -> None: ...


def supervise(
    argv: list[str],
    *,
    fds: RunFds,
    listener: socket.socket,
    payload: bytes,
    timeout_s: float,
    setup_s: float,
) -> Outcome:
    """Run bwrap to its end or the timeout (which starts once the launcher has the program).

    Args:
        argv (list[str]): the bwrap command line.
        fds (RunFds): the sandbox's ends (passed to bwrap, then closed here) and the harness's.
        listener (socket.socket): the report socket, listening, non-blocking.
        payload (bytes): the settings line and the program, sent to the launcher.
        timeout_s (float): the program's wall-clock limit.
        setup_s (float): how long bwrap and the launcher may take to start.

    Returns:
        Outcome: what happened.
    """
    pipes = fds.pipes
    try:
        proc = subprocess.Popen(
            argv,
            stdin=fds.stdio[0],
            stdout=fds.stdio[1],
            stderr=fds.stdio[2],
            pass_fds=(fds.bwrap.info, fds.bwrap.sync, fds.bwrap.seccomp, fds.bwrap.python),
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            start_new_session=True,  # one signal reaches both bwrap monitors
        )
    finally:
        fds.close_child()
    run = _Run(proc, pipes, listener, payload)
    try:
        run.loop(timeout_s=timeout_s, setup_s=setup_s)
    finally:
        run.close()
        _kill(proc, run.init)
        run.outcome.returncode = proc.returncode
        _drain(pipes.stdout, None)
        _drain(pipes.stderr, run.outcome.stderr)
    return run.outcome


class _Run:
    """The state of one run's event loop."""

    def __init__(self, proc: subprocess.Popen[bytes], pipes: Pipes, listener: socket.socket, payload: bytes):
        self.outcome = Outcome()
        self.pipes, self.listener, self.payload = pipes, listener, payload
        self.bwrap = os.pidfd_open(proc.pid)
        self.init: int | None = None
        self.launcher: _Launcher | None = None
        self.info = bytearray()
        self.conns: dict[int, tuple[socket.socket, bytearray]] = {}
        self.poller = select.poll()
        for fd in (self.bwrap, pipes.stdout, pipes.stderr, pipes.info, listener.fileno()):
            self.poller.register(fd, _READ)

    def loop(self, *, timeout_s: float, setup_s: float) -> None:
        deadline = time.monotonic() + setup_s
        while (remaining := deadline - time.monotonic()) > 0:
            events = dict(self.poller.poll(max(1, int(remaining * 1000))))
            if self.pipes.info in events and not _read_into(self.pipes.info, self.info, limit=1 << 16):
                self.poller.unregister(self.pipes.info)
                self.outcome.init_pid, self.init = _watch_init(bytes(self.info), self.pipes.sync)
            for fd in (self.pipes.stdout, self.pipes.stderr):
                keep = self.outcome.stderr if fd == self.pipes.stderr else None
                if fd in events and not _read_into(fd, keep):
                    self.poller.unregister(fd)
            if self.listener.fileno() in events:
                self._accept()
            for fd in [fd for fd in self.conns if fd in events]:
                if self._receive(fd) and self.launcher is not None and not self.outcome.started:
                    self._serve_launcher(fd, deadline)
                    deadline = time.monotonic() + timeout_s  # the program's time starts now
            if self.bwrap in events:
                return
        self.outcome.timed_out = self.outcome.started

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as err:  # e.g. out of descriptors: the harness must not fail with the program
                self._refuse(f"cannot accept a connection ({err})")
                return
            if len(self.conns) >= _MAX_CONNECTIONS:  # a flood of connections holds no harness descriptor
                conn.close()
                self._refuse("too many connections to the report socket")
                continue
            conn.setblocking(False)
            self.conns[conn.fileno()] = (conn, bytearray())
            self.poller.register(conn.fileno(), _READ)

    def _receive(self, fd: int) -> bool:
        """Read from a connection; once its line is complete judge it. True when it was ``started``."""
        conn, buffer = self.conns[fd]
        try:
            chunk = conn.recv(_REPORT_MAX)
        except OSError:
            chunk = b""
        buffer += chunk
        if chunk and b"\n" not in buffer and len(buffer) <= _REPORT_MAX:
            return False
        self.poller.unregister(fd)
        pid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))[0]
        if self.launcher is None and bytes(buffer) == _STARTED:
            # Nothing but the launcher runs before it has the program: this is the launcher.
            image = _image(pid)
            if image:
                self.launcher = _Launcher(pid, os.pidfd_open(pid), image)
                return True
            self.outcome.notes.append(f"rvec sandbox: cannot read /proc/{pid}/auxv and mem of the launcher")
        else:
            self._judge(conn, bytes(buffer), pid)
        del self.conns[fd]
        conn.close()
        return False

    def _serve_launcher(self, fd: int, deadline: float) -> None:
        conn, _ = self.conns.pop(fd)
        with conn:
            conn.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                conn.sendall(self.payload)
            except OSError as err:  # the launcher died before the program ran: not a verdict
                self.outcome.notes.append(f"rvec sandbox: the launcher did not take the program ({err})")
                return
        self.outcome.started = True

    def _judge(self, conn: socket.socket, message: bytes, pid: int) -> None:
        """Passed only for the first report, ``returned``, from the launcher's pid and image."""
        launcher = self.launcher
        if launcher is None or message != _RETURNED:
            self._refuse(f"an unexpected message on the report socket ({message[:32]!r})")
        elif pid != launcher.pid:
            self._refuse(f"a report came from another process (pid {pid}, not the launcher's {launcher.pid})")
        elif self.outcome.passed or self.outcome.notes:
            self._refuse("a second report")
        elif _image(pid) != launcher.image or _exited(launcher.pidfd):
            self._refuse("the launcher's process ran another program (exec) before it reported")
        else:
            self.outcome.passed = True
            with contextlib.suppress(OSError):
                conn.send(_ACK)

    def _refuse(self, why: str) -> None:
        self.outcome.passed = False
        note = f"rvec sandbox: {why}; the item fails"
        if note not in self.outcome.notes:
            self.outcome.notes.append(note)

    def close(self) -> None:
        for conn, _ in self.conns.values():
            conn.close()
        self.conns.clear()
        os.close(self.bwrap)
        if self.launcher is not None:
            os.close(self.launcher.pidfd)


def _image(pid: int) -> bytes:
    """A fingerprint of the process's current executable image, which any ``exec`` replaces.

    The kernel's copy of the auxiliary vector (where it placed the image, the loader and the stack:
    random per ``exec`` under ASLR, and not writable by the process) and the 16 random bytes it
    wrote for ``AT_RANDOM`` (fresh per ``exec`` even without ASLR, and never shown to Python code,
    so a new image cannot write the old ones back). Empty when the process is gone.
    """
    try:
        auxv = Path(f"/proc/{pid}/auxv").read_bytes()
        entries = dict(_AUXV_ENTRY.iter_unpack(auxv[: len(auxv) - len(auxv) % _AUXV_ENTRY.size]))
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            mem.seek(entries[_AT_RANDOM])
            return auxv + mem.read(16)
    except (OSError, KeyError, ValueError):
        return b""


def _exited(pidfd: int) -> bool:
    return _readable(pidfd, 0)  # a pidfd turns readable once its process has exited


def _read_into(fd: int, keep: bytearray | None, *, limit: int = STDERR_TAIL) -> bool:
    """Read what ``fd`` holds into ``keep`` (its last ``limit`` bytes) or nowhere; False at its end."""
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:
        return True
    if keep is not None:
        keep += chunk
        del keep[:-limit]
    return bool(chunk)


def _drain(fd: int, keep: bytearray | None) -> None:
    # After the sandbox is gone nobody holds the write end: read what is left, without blocking.
    os.set_blocking(fd, False)
    with contextlib.suppress(OSError):
        while _read_into(fd, keep) and _readable(fd, 0):
            pass


def _watch_init(info: bytes, sync_r: int) -> tuple[int | None, int | None]:
    """The pid bwrap reports for the sandbox's init, and a pidfd on it while it is certainly that init."""
    with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
        child_pid = int(json.loads(info)["child-pid"])
        pidfd = os.pidfd_open(child_pid)
        # Only init holds the sync pipe's write end: if it is still open, init was alive after the
        # pidfd was opened, so the pidfd is init's and not a reused pid's.
        if _readable(sync_r, 0):
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
