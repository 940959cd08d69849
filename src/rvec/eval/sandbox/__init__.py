"""Run model-written Python (HumanEval candidates) under OS isolation (bubblewrap), one program at a time.

**Isolation** (flag by flag in docs/security.md and :mod:`rvec.eval.sandbox._bwrap`). Each program
runs under ``bwrap`` as uid/gid 65534 — also on the host: as root an outer ``bwrap`` + ``setpriv``
switch to that uid before the inner, unprivileged ``bwrap`` — with no capabilities and
``no_new_privs``, in its own user (no nested ones), pid, network, ipc, uts and cgroup namespaces,
under a seccomp filter (:mod:`~rvec.eval.sandbox._seccomp`). Its filesystem is a fresh read-only root
holding only ``/usr`` and the interpreter — whose ``lib-dynload`` holds only the extension modules a
unit test needs (:mod:`~rvec.eval.sandbox._view`) — a minimal ``/dev``, the harness's report socket
and one writable folder (a tmpfs limited in size and, as root, in inodes, ``noexec``). The launcher
(:mod:`~rvec.eval.sandbox._launcher`) sets ``RLIMIT_CPU`` (SIGXCPU at the timeout), ``RLIMIT_AS``,
``RLIMIT_NPROC``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE`` and ``RLIMIT_CORE=0``. stdin, stdout and stderr
are pipes (the harness keeps the last 2 kB of stderr). After the run — or at the wall-clock timeout —
the sandbox's init is killed through a pidfd, which kills everything in the sandbox. Where ``bwrap``
is missing or cannot create namespaces, :func:`require_isolation` raises
:class:`~rvec.errors.SandboxUnavailableError`; there is no weaker fallback.

**The verdict.** A program passes only when ``check`` returned: the process that runs it holds no
secret and no channel to the harness; after ``exec`` of the whole program returned, the launcher's
own frame makes the one socket the guard allows and reports ``returned``, and the harness accepts
that report only from the launcher's process still running the launcher's executable image
(:mod:`~rvec.eval.sandbox._supervise`). Exit statuses are never read as a pass. What a program *can*
do is subvert its own test in its own process (return an object equal to everything, swap ``check``
from a thread): no harness that runs the test in the candidate's process can rule that out.

Example:
    >>> sandbox = Sandbox(allow=True, timeout_s=5)
    >>> sandbox.run("assert 1 + 1 == 2").passed
    True
"""

from rvec.eval.sandbox._core import ExecutionResult, Sandbox, require_isolation

__all__ = ["ExecutionResult", "Sandbox", "require_isolation"]
