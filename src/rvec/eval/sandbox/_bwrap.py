"""The bubblewrap (``bwrap``) command lines that contain one program of :mod:`rvec.eval.sandbox`.

Why two layers when we run as root: bubblewrap run by root maps the sandbox's uid to root outside,
so root-owned files would stay readable and writable to the program. Instead an outer ``bwrap`` (as
root: it can read the interpreter wherever it lives, e.g. under ``/root/.pyenv``) builds a view of
the system dirs and the interpreter, mounts the program's folder (a tmpfs with a size *and* an inode
limit, ``noexec``: bubblewrap 0.8's ``--tmpfs`` has no inode limit), drops every capability but
``setuid``/``setgid``, and ``setpriv`` switches to uid/gid 65534 with no groups and
``no_new_privs``; the inner, unprivileged ``bwrap`` then builds the program's world in its own user
namespace. As any other user, only the inner layer runs (its folder is bubblewrap's size-limited
tmpfs). Each flag is explained where it is set and in docs/security.md.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from rvec.errors import SandboxUnavailableError
from rvec.eval.sandbox._view import View, prepared

__all__ = ["REPORT_PATH", "SANDBOX_UID", "WORKDIR", "Fds", "Tools", "command", "find_tools"]

SANDBOX_UID = 65534  # "nobody": owns nothing on the host, inside or out
WORKDIR = "/tmp"  # the program's folder, its only writable place
REPORT_PATH = "/rvec/report"  # the harness's listening socket, as the sandbox sees it
WORK_INODES = 4096  # files and folders the program may create (each costs kernel memory)
BWRAP_INSTALL = "apt-get install bubblewrap"
_MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_OUTER_WORK = "/rvec-work"  # where the outer layer mounts the program's folder
_OUTER_REPORT = "/rvec-report.sock"
# Mounts the program's folder and becomes the rest of the command line (setpriv ... inner bwrap).
_MOUNT_WORK = 'mount -n -t tmpfs -o "$1" rvec-work "$2" && shift 2 && exec "$@"'


@dataclass(frozen=True)
class Tools:
    """Where the isolation tools live; ``setpriv`` and ``mount`` only when we run as root."""

    bwrap: str
    setpriv: str | None = None
    sh: str | None = None
    mount: str | None = None


@dataclass(frozen=True)
class Fds:
    """The descriptors bwrap reads: its info and sync pipes, the seccomp filter, the interpreter."""

    info: int
    sync: int
    seccomp: int
    python: int


def find_tools() -> Tools:
    """The tools the sandbox needs.

    Raises:
        SandboxUnavailableError: ``bwrap`` (or, as root, ``setpriv``, ``sh`` or ``mount``) is not on PATH.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailableError(
            "running model-written code needs bubblewrap (bwrap), which is not installed; "
            f"install it with `{BWRAP_INSTALL}` (run as root or with sudo)"
        )
    sh = shutil.which("sh")
    if os.geteuid() != 0:
        return Tools(os.path.realpath(bwrap), sh=sh and os.path.realpath(sh))
    found = {name: shutil.which(name) for name in ("setpriv", "sh", "mount")}
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        raise SandboxUnavailableError(
            f"running model-written code as root needs {', '.join(missing)}, which is not installed; "
            "install it with `apt-get install util-linux mount dash`"
        )
    return Tools(
        os.path.realpath(bwrap), *(os.path.realpath(found[n] or "") for n in ("setpriv", "sh", "mount"))
    )


def command(
    tools: Tools, view: View, *, fds: Fds, report_socket: str, launcher: str, work_bytes: int
) -> list[str]:
    """The whole argv: outer layer (as root) + inner ``bwrap`` + the interpreter running ``launcher``.

    Args:
        tools (Tools): from :func:`find_tools`.
        view (View): the interpreter's files (:mod:`rvec.eval.sandbox._view`).
        fds (Fds): descriptors passed to bwrap (``fds.python`` is the interpreter opened for
            reading; the sandbox gets an execute-only copy of it at the same path).
        report_socket (str): the harness's listening socket on the host.
        launcher (str): the launcher's source, run with ``python -c``.
        work_bytes (int): size of the program's folder.

    Returns:
        list[str]: the command line.
    """
    root = tools.setpriv is not None
    inner = _inner(
        tools.bwrap,
        view,
        fds=fds,
        work_bytes=work_bytes,
        outer=root,
        report=_OUTER_REPORT if root else report_socket,
    )
    program = [view.python, "-I", "-S", "-B", "-c", launcher, REPORT_PATH]
    if not root:
        return [*inner, "--", *program]
    return [*_outer(tools, view, report_socket=report_socket, work_bytes=work_bytes), *inner, "--", *program]


def _outer(tools: Tools, view: View, *, report_socket: str, work_bytes: int) -> list[str]:
    extra = tuple(
        p for p in (tools.bwrap, tools.setpriv, tools.sh, tools.mount) if p and not _under(p, "/usr")
    )
    uid = str(SANDBOX_UID)
    work_options = f"size={work_bytes},nr_inodes={WORK_INODES},mode=1777,noexec,nosuid,nodev"
    return [
        tools.bwrap,
        "--die-with-parent",  # our SIGKILL to it reaches the inner layer (which also dies with it)
        # Root's capabilities: none but what mount and setpriv need; no namespace but a mount
        # namespace of its own, in which uid 65534 can reach the interpreter and its folder.
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CAP_SETUID",
        "--cap-add",
        "CAP_SETGID",
        "--cap-add",
        "CAP_SYS_ADMIN",  # mount the folder; dropped with every other one by the uid change
        *_system_view((*view.prefixes, *extra)),
        "--proc",  # the inner bwrap reads /proc/self and writes its uid map there
        "/proc",
        "--dev",
        "/dev",
        "--perms",  # the inner bwrap builds the program's root under /tmp/.bubblewrap-65534
        "1777",
        "--tmpfs",
        "/tmp",
        "--dir",
        _OUTER_WORK,
        "--ro-bind",  # the prepared folders, for the inner layer
        os.path.dirname(prepared()[0]),
        os.path.dirname(prepared()[0]),
        "--ro-bind",
        report_socket,
        _OUTER_REPORT,
        tools.sh or "sh",
        "-c",
        _MOUNT_WORK,
        "rvec-mount-work",
        work_options,
        _OUTER_WORK,
        tools.setpriv or "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--no-new-privs",  # no setuid binary or file capability can raise it again
        "--",
    ]


def _inner(bwrap: str, view: View, *, fds: Fds, work_bytes: int, outer: bool, report: str) -> list[str]:
    uid = str(SANDBOX_UID)
    # As root the outer layer mounted the folder (size and inode limits, noexec); else bwrap's tmpfs.
    work = ["--bind", _OUTER_WORK, WORKDIR] if outer else ["--size", str(work_bytes), "--tmpfs", WORKDIR]
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
        *_system_view(view.prefixes),
        *_python_view(view),
        # An execute-only copy of the interpreter over the original: the kernel makes a process
        # whose image it may not read non-dumpable, so no other process in the sandbox may ptrace
        # the launcher or read or write its memory (seccomp refuses ptrace as well).
        "--perms",
        "0111",
        "--ro-bind-data",
        str(fds.python),
        view.python,
        "--ro-bind",  # the harness's listening socket: the launcher reports there
        report,
        REPORT_PATH,
        "--dev",  # null, zero, full, random, urandom, tty, an empty shm and pts
        "/dev",
        *work,
        "--remount-ro",
        "/dev",
        "--remount-ro",
        "/",
        "--chdir",
        WORKDIR,
        "--seccomp",  # loaded just before the interpreter runs; see _seccomp.py
        str(fds.seccomp),
        "--info-fd",  # tells us the pid of the sandbox's init
        str(fds.info),
        "--sync-fd",  # held by that init: while it is open the pid is still that init's
        str(fds.sync),
    ]


def _python_view(view: View) -> list[str]:
    """The filtered lib-dynload and the hidden extension folders (see _view.py)."""
    dynload, empty = prepared()
    args = ["--ro-bind", dynload, view.dynload]
    for folder in view.hidden:
        args += ["--ro-bind", empty, folder]
    return args


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
