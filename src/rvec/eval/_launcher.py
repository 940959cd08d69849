"""The first code that runs inside the sandbox: limits, in-process guard, the program, the pass report.

:mod:`rvec.eval.sandbox` runs this file's text as ``python -I -S -B -c <text> CONFIG_FD`` inside
bubblewrap. It uses the standard library only (rvec is not importable in there). ``CONFIG_FD`` is a
memfd holding one JSON line (limits, the pass token, the report descriptor, guard settings) followed
by the program's source; it is read and closed before the program runs.

**The verdict.** The program passes only if the launcher writes the per-run token to the report
pipe, and it does so only from the frame that ran the program, after ``exec`` of the whole program
returned. The token lives in the closure of an audit hook (PEP 578): Python offers no way to list,
read or remove audit hooks, and the hook's frame exists only while the hook runs. What could reach it
anyway is refused by a second hook: object-graph walks (``gc.get_objects``/``get_referrers``/
``get_referents``), trace and profile functions (which could also jump over ``check``), other threads'
frames, adding audit hooks, building code objects, and native-code modules (``ctypes``, ``_test*``).
Python-level signal handlers (which receive whatever frame is running) cannot be installed, and the
collector is switched off before the reporting hook takes a frame, so no finaliser runs inside it.
The interpreter's image is execute-only inside the sandbox, so the kernel makes this process
non-dumpable: no other process there may ptrace it or read its memory.

**Defence in depth** (``guard``): processes, signals to other processes, sockets, and writes or
deletions outside the work folder are refused here too, although the OS isolation already contains
them (:mod:`rvec.eval.sandbox` tests both layers separately).
"""

from __future__ import annotations

import builtins
import gc
import json
import os
import resource
import sys

_START, _REPORT = "rvec.start", "rvec.report"
EXIT_CALLED_EXIT = 3  # the program raised SystemExit: never a pass, whatever its code
EXIT_FORGED = 97  # something other than the launcher tried to report a pass

# Events that could reach the pass token or fake the program's control flow: always refused.
_VAULT_EVENTS = frozenset(
    {
        "sys._current_frames",
        "sys._current_exceptions",
        "sys.settrace",
        "sys.setprofile",
        "sys.addaudithook",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "code.__new__",
        "cpython.PyInterpreterState_New",
        "cpython._PySys_ClearAuditHooks",
    }
)
_VAULT_PREFIXES = ("sys.monitoring", "ctypes.")  # every ctypes event: calls, memory reads
_NATIVE_MODULES = frozenset(
    {"ctypes", "_ctypes", "_ctypes_test", "cffi", "_cffi_backend", "_xxsubinterpreters", "_xxinterpchannels"}
)
_PROCESS_MODULES = frozenset({"_posixsubprocess"})  # its fork_exec raises no audit event
# Defence in depth (processes, signals, sockets): the OS isolation already contains these.
_DEFENCE_EVENTS = frozenset(
    {
        "os.fork",
        "os.forkpty",
        "os.system",
        "os.exec",
        "os.spawn",
        "os.posix_spawn",
        "os.kill",
        "os.killpg",
        "subprocess.Popen",
        "pty.spawn",
        "socket.__new__",
        "os.startfile",
    }
)
_PATH_EVENTS = {  # event -> how many leading arguments are paths
    "os.remove": 1,
    "os.rmdir": 1,
    "os.rename": 2,
    "os.link": 2,
    "os.symlink": 2,
    "os.truncate": 1,
    "os.chmod": 1,
    "os.chown": 1,
    "os.chflags": 1,
    "os.mkdir": 1,
    "os.utime": 1,
    "os.setxattr": 1,
    "os.removexattr": 1,
    "shutil.rmtree": 1,
    "shutil.move": 2,
    "shutil.copyfile": 2,
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _install_vault(token: bytes, report_fd: int) -> None:
    """Register the hook that holds the token; nothing keeps a Python reference to it afterwards."""
    write, exit_, getframe, gc_disable, gc_enable = os.write, os._exit, sys._getframe, gc.disable, gc.enable
    start, report, forged = _START, _REPORT, EXIT_FORGED
    started = None

    def vault(event: str, args: tuple[object, ...]) -> None:
        nonlocal started
        # Until the event is known to be ours nothing here allocates, so (CPython 3.11) no collection
        # and no finaliser (program code) can run inside this frame, the only one holding the token.
        if event != report and event != start:
            return
        try:  # no exception, hence no traceback holding this frame, ever leaves this hook
            gc_disable()  # getframe allocates: no collection, so no finaliser, inside this frame
            caller = getframe(1)
            if event == start and started is None:
                started = caller
                gc_enable()
                return
            if event == report and caller is started:
                write(report_fd, token)
                return
            write(2, b"rvec sandbox: a pass was reported from outside the launcher\n")
        except BaseException:
            exit_(forged)
        exit_(forged)

    sys.addaudithook(vault)


def _install_guard(workdir: str, *, defence: bool) -> None:
    """Register the hook that refuses what could reach the vault (and, with ``defence``, more).

    Everything the hook uses is a default argument, so nothing it sees can be changed from outside
    (module globals can be rebound by the program; a default is copied into each call).
    """

    def guard(
        event: str,
        args: tuple[object, ...],
        vault_events: frozenset[str] = _VAULT_EVENTS,
        vault_prefixes: tuple[str, ...] = _VAULT_PREFIXES,
        native: frozenset[str] = _NATIVE_MODULES,
        defence: bool = defence,
        defence_events: frozenset[str] = _DEFENCE_EVENTS,
        process_modules: frozenset[str] = _PROCESS_MODULES,
        path_events: tuple[tuple[str, int], ...] = tuple(_PATH_EVENTS.items()),
        write_flags: int = _WRITE_FLAGS,
        root: str = workdir.rstrip("/") + "/",
        error: type[Exception] = PermissionError,
    ) -> None:
        if event in vault_events or event.startswith(vault_prefixes):
            raise error(f"blocked by the rvec sandbox: {event}")
        if event == "import" and args and type(args[0]) is str:
            top = args[0].partition(".")[0]
            if top in native or top.startswith("_test"):
                raise error(f"blocked by the rvec sandbox: import {args[0]}")
        if not defence:
            return
        if event in defence_events:
            raise error(f"blocked by the rvec sandbox: {event}")
        if event == "import" and args and type(args[0]) is str and args[0] in process_modules:
            raise error(f"blocked by the rvec sandbox: import {args[0]}")
        paths: tuple[object, ...] = ()
        if event == "open" and len(args) == 3:
            mode, flags = args[1], args[2]
            if (type(mode) is str and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)) or (
                type(flags) is int and flags & write_flags
            ):
                paths = args[:1]
        for name, n_paths in path_events:
            if event == name:
                paths = args[:n_paths]
        for path in paths:
            if type(path) is bytes:
                path = path.decode("utf-8", "surrogateescape")
            # Lexical only (descriptors and path objects are left to the OS isolation).
            if type(path) is str and (
                ".." in path.split("/") or (path[:1] == "/" and not path.startswith(root))
            ):
                raise error(f"blocked by the rvec sandbox: {event} {path!r}")

    sys.addaudithook(guard)


def _block_signal_handlers() -> None:
    """No Python-level signal handler, ever: one would run inside whatever frame is executing.

    SIGINT's default handler (the only one Python installs) is set to ignore; then ``signal()`` and
    the making of a second ``_signal`` module are replaced by refusals that keep no reference to the
    originals. Every built-in module the guard allows is imported first, so nothing legitimate needs
    a new one (one the guard refuses stays refused: its import event is raised again on each try).
    """
    import _imp
    import _signal
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # e.g. spwd in Debian's python3.11
        for name in sys.builtin_module_names:
            try:
                __import__(name)
            except PermissionError:  # refused by the guard (Debian builds _posixsubprocess in): stays so
                continue
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError("blocked by the rvec sandbox: Python signal handlers")

    def refuse_builtin(*args: object, **kwargs: object) -> None:
        raise ImportError("blocked by the rvec sandbox: a second copy of a built-in module")

    _signal.signal = refuse
    _imp.create_builtin = refuse_builtin


def _run(code: object) -> None:
    """Run the program; report the pass only after it returned (only this frame may report)."""
    audit = sys.audit
    audit(_START)
    exec(code, {"__name__": "__main__", "__builtins__": builtins})
    audit(_REPORT)
    for stream in (sys.stdout, sys.stderr):  # the program may have replaced or closed them
        try:
            stream.flush()
        except BaseException:
            continue
    os._exit(0)


def main() -> None:
    with os.fdopen(int(sys.argv[1]), "rb") as fh:  # closes the descriptor
        header, _, source = fh.read().partition(b"\n")
    config = json.loads(header)
    for name, value in config["limits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    _install_vault(config.pop("token").encode(), config["report_fd"])
    _install_guard(config["workdir"], defence=config["guard"])
    _block_signal_handlers()
    code = compile(source, "program.py", "exec")
    del config, header, source
    sys.argv = ["program.py"]
    try:
        _run(code)
    except SystemExit:
        os.write(2, b"program called exit()\n")
        os._exit(EXIT_CALLED_EXIT)


if __name__ == "__main__":
    main()
