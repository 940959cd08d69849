"""The bubblewrap (``bwrap``) command lines that contain one program of :mod:`rvec.eval.sandbox`.

Why two layers when we run as root: bubblewrap run by root maps the sandbox's uid to root outside,
so root-owned files would stay readable and writable to the program. Instead an outer ``bwrap`` (as
root: it can read the interpreter wherever it lives, e.g. under ``/root/.pyenv``) builds a view of
the system dirs and the interpreter, drops every capability but ``setuid``/``setgid``, and
``setpriv`` switches to uid/gid 65534 with no groups and ``no_new_privs``; the inner, unprivileged
``bwrap`` then builds the program's world in its own user namespace. As any other user, only the
inner layer runs. Each flag is explained where it is set and in docs/security.md.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from rvec.errors import SandboxUnavailableError

__all__ = ["SANDBOX_UID", "WORKDIR", "Tools", "command", "find_tools"]

SANDBOX_UID = 65534  # "nobody": owns nothing on the host, inside or out
WORKDIR = "/tmp"  # the program's folder, its only writable place (a size-limited tmpfs)
BWRAP_INSTALL = "apt-get install bubblewrap"
_MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class Tools:
    """Where the isolation tools live; ``setpriv`` only when we run as root."""

    bwrap: str
    setpriv: str | None


def find_tools() -> Tools:
    """The tools the sandbox needs.

    Raises:
        SandboxUnavailableError: ``bwrap`` (or, as root, ``setpriv``) is not on PATH.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailableError(
            "running model-written code needs bubblewrap (bwrap), which is not installed; "
            f"install it with `{BWRAP_INSTALL}` (run as root or with sudo)"
        )
    setpriv = None
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise SandboxUnavailableError(
                "running model-written code as root needs setpriv, which is not installed; "
                "install it with `apt-get install util-linux`"
            )
    return Tools(os.path.realpath(bwrap), setpriv and os.path.realpath(setpriv))


@functools.cache
def interpreter() -> tuple[str, tuple[str, ...]]:
    """The real path of this Python's base interpreter and the folders it needs (read-only)."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    prefixes = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
    prefixes.add(os.path.dirname(os.path.dirname(exe)))
    return exe, tuple(sorted(p for p in prefixes if not _under(p, "/usr")))


def command(
    tools: Tools,
    *,
    config_fd: int,
    info_fd: int,
    sync_fd: int,
    python_fd: int,
    launcher: str,
    work_bytes: int,
) -> list[str]:
    """The whole argv: outer layer (as root) + inner ``bwrap`` + the interpreter running ``launcher``.

    ``python_fd`` is the interpreter binary opened for reading; the sandbox gets an execute-only
    copy of it at the same path (see :func:`_inner`).
    """
    python, prefixes = interpreter()
    inner = _inner(tools.bwrap, prefixes=prefixes, work_bytes=work_bytes, info_fd=info_fd, sync_fd=sync_fd)
    inner += [
        # An execute-only copy of the interpreter over the original: the kernel makes a process
        # whose image it may not read non-dumpable, so no other process in the sandbox (a child
        # running a Python with ctypes, say) may ptrace the launcher or read its memory.
        "--perms",
        "0111",
        "--ro-bind-data",
        str(python_fd),
        python,
    ]
    program = [python, "-I", "-S", "-B", "-c", launcher, str(config_fd)]
    if tools.setpriv is None:
        return [*inner, "--", *program]
    return [*_outer(tools, prefixes=prefixes), *inner, "--", *program]


def _outer(tools: Tools, *, prefixes: tuple[str, ...]) -> list[str]:
    extra = tuple(p for p in (tools.bwrap, tools.setpriv) if p and not _under(p, "/usr"))
    uid = str(SANDBOX_UID)
    return [
        tools.bwrap,
        "--die-with-parent",  # our SIGKILL to it reaches the inner layer (which also dies with it)
        # Root's capabilities: none but what setpriv needs to change uid; no namespace of its own is
        # needed, this layer only builds a view in which uid 65534 can reach the interpreter.
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CAP_SETUID",
        "--cap-add",
        "CAP_SETGID",
        *_system_view(prefixes + extra),
        "--proc",  # the inner bwrap reads /proc/self and writes its uid map there
        "/proc",
        "--dev",
        "/dev",
        "--perms",  # the inner bwrap builds the program's root under /tmp/.bubblewrap-65534
        "1777",
        "--tmpfs",
        "/tmp",
        tools.setpriv or "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--no-new-privs",  # no setuid binary or file capability can raise it again
        "--",
    ]


def _inner(
    bwrap: str, *, prefixes: tuple[str, ...], work_bytes: int, info_fd: int, sync_fd: int
) -> list[str]:
    uid = str(SANDBOX_UID)
    return [
        bwrap,
        # Own user, pid, network, ipc, uts and cgroup namespaces: no interface but a down loopback
        # (so no socket of any family reaches anything, abstract unix sockets included), no other
        # process visible, and killing pid 1 (bwrap's init) kills everything in the sandbox.
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",  # no nested user namespace, hence no capability ever again
        "--uid",
        uid,
        "--gid",
        uid,
        "--hostname",
        "rvec-sandbox",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",  # no controlling terminal to inject input into
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "HOME",
        WORKDIR,
        "--setenv",
        "TMPDIR",
        WORKDIR,
        "--setenv",
        "LANG",
        "C.UTF-8",
        # A fresh root holding only the system dirs and the interpreter, read-only: no /home, /root,
        # /etc, /run, /var, /proc, /sys or host /tmp (so no host socket, secret or process).
        *_system_view(prefixes),
        "--dev",  # null, zero, full, random, urandom, tty, an empty shm and pts
        "/dev",
        "--size",
        str(work_bytes),
        "--tmpfs",
        WORKDIR,
        "--remount-ro",
        "/dev",
        "--remount-ro",
        "/",
        "--chdir",
        WORKDIR,
        "--info-fd",  # tells us the pid of the sandbox's init
        str(info_fd),
        "--sync-fd",  # held by that init: while it is open the pid is still that init's
        str(sync_fd),
    ]


def _system_view(prefixes: tuple[str, ...]) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _MERGED_USR:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for prefix in prefixes:
        for parent in reversed(Path(prefix).parents[:-1]):
            args += ["--perms", "0755", "--dir", str(parent)]  # reachable by uid 65534
        args += ["--ro-bind", prefix, prefix]
    return args


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
