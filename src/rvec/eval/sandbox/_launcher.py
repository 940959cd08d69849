"""The first code that runs inside the sandbox: it fetches the program, sets the limits and the guard,
runs the program, and tells the harness that ``check`` returned.

:mod:`rvec.eval.sandbox` runs this file's text as ``python -I -S -B -c <text> REPORT_PATH`` inside
bubblewrap. It uses the standard library only (rvec is not importable in there).

**No secret.** The process that runs the program holds nothing that could fake a pass: no token, no
descriptor to the harness. The launcher connects to the harness's socket (``REPORT_PATH``) once
before the program, says ``started`` and receives its settings and the program; the harness notes
the connecting process (its pid, from ``SO_PEERCRED``) and that process's executable image (its
auxiliary vector), then closes the connection. After ``exec`` of the whole program (which ends in
``check(entry_point)``) returned, the launcher opens a *second* connection and says ``returned``.
The harness scores *passed* only for exactly one such second connection, from the same process,
still running the same image (so no ``exec`` happened in between: any other image, a child, a
second connection or anything else fails the item). Making that connection needs a socket, and the
guard below lets exactly one socket be made: from the launcher's own frame, on the line after the
``exec`` returned (``_GATE``). Everything else in this file keeps the program from getting native
code (which could make the connection itself) and from subverting the guard.
"""

import _socket
import builtins
import gc
import json
import os
import resource
import sys

_START = "rvec.start"
_GATE = 2  # lines from the launcher's `audit(_START)` to the line that makes the report socket
EXIT_CALLED_EXIT = 3  # the program raised SystemExit: never a pass, whatever its code
EXIT_TAMPERED = 97  # the program raised an rvec event or reached the gate's state

# Always refused: ways to subvert the guard or the program's control flow, or to get native code.
_ALWAYS_EVENTS = frozenset(
    {
        "sys._current_frames",
        "sys._current_exceptions",
        "sys.settrace",  # a tracer can also jump over check's asserts
        "sys.setprofile",
        "sys.addaudithook",
        "gc.get_objects",  # object-graph walks reach the hooks' closures
        "gc.get_referrers",
        "gc.get_referents",
        "code.__new__",  # hand-made bytecode corrupts memory: native code by another name
        "marshal.load",
        "cpython.PyInterpreterState_New",
        "cpython._PySys_ClearAuditHooks",
    }
)
_ALWAYS_PREFIXES = ("sys.monitoring", "ctypes.")
# Defence in depth (processes, signals, paths): the OS isolation already contains these.
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
_PYC_HEADER = 16


def _install_gate() -> None:
    """Register the hook that lets exactly one socket be made, by the launcher after the program.

    Its state (the launcher's frame, whether the socket was made) lives in this closure, which only
    the audit-hook list references: Python cannot list audit hooks, and the guard refuses the gc
    walks that would find the cells. Until an event is known to be its own the hook allocates
    nothing, and it turns the collector off before it takes a frame, so no finaliser (program code)
    runs inside it and sees its state.
    """
    write, exit_, getframe, gc_disable, gc_enable = os.write, os._exit, sys._getframe, gc.disable, gc.enable
    start, new_socket, error, tampered = _START, "socket.__new__", PermissionError, EXIT_TAMPERED
    message = b"rvec sandbox: a pass was reported from outside the launcher\n"
    lines_to_gate, anything = _GATE, BaseException
    started, gate_line, used = None, -1, False

    def gate(event: str, args: tuple[object, ...]) -> None:
        nonlocal started, gate_line, used
        if event != new_socket and event != start:
            if event.startswith("rvec."):
                write(2, message)
                exit_(tampered)
            return
        try:  # no exception other than the refusal below ever leaves this hook
            gc_disable()
            caller = getframe(1)
            if event == start:
                if started is not None:
                    write(2, message)
                    exit_(tampered)
                started, gate_line = caller, caller.f_lineno + lines_to_gate
                gc_enable()
                return
            allowed = not used and caller is started and caller.f_lineno == gate_line
            used = used or allowed
            del caller
            gc_enable()
        except anything:
            exit_(tampered)
        if not allowed:
            raise error("blocked by the rvec sandbox: socket.__new__")

    sys.addaudithook(gate)


def _install_guard(config: dict[str, object], *, defence: bool) -> None:
    """Register the hook that refuses native code, introspection and (with ``defence``) more.

    The hook and its helpers load no global or built-in name: everything they use is a default
    argument, bound here, so nothing the program rebinds (module globals, ``builtins.type``) reaches
    them, and a finaliser that runs inside them finds only immutable values in their frames.
    """
    import importlib._bootstrap_external as bootstrap

    def guard(
        event: str,
        args: tuple[object, ...],
        always: frozenset[str] = _ALWAYS_EVENTS,
        prefixes: tuple[str, ...] = _ALWAYS_PREFIXES,
        check_import: object = _check_import,
        check_bytecode: object = _check_bytecode,
        check_paths: object = _check_paths,
        extensions: frozenset[str] = frozenset(config["extensions"]),
        refused: frozenset[str] = frozenset(config["refused_modules"]),
        stdlib: str = str(config["stdlib"]).rstrip("/") + "/",
        get_code: object = bootstrap.SourceLoader.get_code.__code__,
        getframe: object = sys._getframe,
        defence: bool = defence,
        defence_events: frozenset[str] = _DEFENCE_EVENTS,
        root: str = str(config["workdir"]).rstrip("/") + "/",
        error: type[Exception] = PermissionError,
    ) -> None:
        if event in always or event.startswith(prefixes):
            raise error(f"blocked by the rvec sandbox: {event}")
        if event == "import":
            check_import(args, extensions=extensions, refused=refused)
        elif event == "marshal.loads":
            check_bytecode(args, getframe(2), get_code=get_code, stdlib=stdlib)
        elif defence and event in defence_events:
            raise error(f"blocked by the rvec sandbox: {event}")
        elif defence:
            check_paths(event, args, root=root)

    sys.addaudithook(guard)


def _check_import(
    args: tuple[object, ...],
    *,
    extensions: frozenset[str],
    refused: frozenset[str],
    len: object = len,
    type: object = type,
    str: object = str,
    error: type[Exception] = PermissionError,
) -> None:
    """An extension module arrives with its file (``_imp.create_dynamic``): only the allowed files,
    under whatever name. A built-in or source module arrives by name: no dotted part may name a
    refused module (a built-in can only be created under its own name)."""
    name = args[0] if len(args) else None
    path = args[1] if len(args) > 1 else None
    if type(name) is not str:
        raise error(f"blocked by the rvec sandbox: import of a module named {name!r}")
    if path is not None and (type(path) is not str or path not in extensions):
        raise error(f"blocked by the rvec sandbox: import {name} from {path!r}")
    for part in name.split("."):
        if part in refused or part.startswith("_test"):
            raise error(f"blocked by the rvec sandbox: import {name}")


def _check_bytecode(
    args: tuple[object, ...],
    frame: object,
    *,
    get_code: object,
    stdlib: str,
    len: object = len,
    type: object = type,
    str: object = str,
    bytes: object = bytes,
    getattr: object = getattr,
    open_: object = os.open,
    read: object = os.read,
    close: object = os.close,
    flags: int = os.O_RDONLY | os.O_CLOEXEC,
    header: int = _PYC_HEADER,
    os_error: type[Exception] = OSError,
    error: type[Exception] = PermissionError,
) -> None:
    """Let ``marshal`` load only the standard library's own bytecode, byte for byte.

    Crafted bytecode reads and writes memory out of bounds; importing the standard library loads its
    ``.pyc`` files through ``SourceLoader.get_code``. So the data must come from that function and
    equal the file it names under the (read-only) standard library, whatever the program patched.
    """
    path = None
    if getattr(frame, "f_code", None) is get_code:
        path = frame.f_locals.get("bytecode_path")
    ok = type(path) is str and path.startswith(stdlib) and "/../" not in path and len(args) == 1
    if ok:
        data = b""
        try:
            fd = open_(path, flags)
            try:
                while chunk := read(fd, 1 << 20):
                    data += chunk
            finally:
                close(fd)
        except os_error:
            ok = False
        ok = ok and data[header:] == bytes(args[0])
    if not ok:
        raise error(f"blocked by the rvec sandbox: marshal.loads from {path!r}")


def _check_paths(
    event: str,
    args: tuple[object, ...],
    *,
    root: str,
    path_events: tuple[tuple[str, int], ...] = tuple(_PATH_EVENTS.items()),
    write_flags: int = _WRITE_FLAGS,
    len: object = len,
    type: object = type,
    str: object = str,
    bytes: object = bytes,
    int: object = int,
    error: type[Exception] = PermissionError,
) -> None:
    """Defence in depth: no write or deletion outside the folder, by path (lexical only: descriptors
    and path objects are left to the OS isolation)."""
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
        if type(path) is str and (".." in path.split("/") or (path[:1] == "/" and not path.startswith(root))):
            raise error(f"blocked by the rvec sandbox: {event} {path!r}")


def _block_signal_handlers() -> None:
    """No Python-level signal handler, ever: one would run inside whatever frame is executing.

    SIGINT's default handler (the only one Python installs) is set to ignore; then ``signal()`` and
    the making of a second built-in module are replaced by refusals that keep no reference to the
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


def _fetch(path: str) -> tuple[dict[str, object], bytes]:
    """Say ``started`` to the harness, then read the settings line and the program until it closes."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
        sock.sendall(b"started\n")
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    finally:
        sock.close()
    header, _, source = b"".join(chunks).partition(b"\n")
    return json.loads(header), source


def _run(
    code: object,
    namespace: dict[str, object],
    path: str,
    *,
    audit: object = sys.audit,
    run: object = exec,
    new_socket: object = _socket.socket,
    family: int = _socket.AF_UNIX,
    kind: int = _socket.SOCK_STREAM,
) -> None:
    """Run the program; only after it returned may this frame make the report socket (the gate)."""
    audit(_START)
    run(code, namespace)
    report = new_socket(family, kind)  # the gate: _GATE lines below audit(_START)
    report.connect(path)
    report.sendall(b"returned\n")
    report.recv(1)  # the harness checks this process before it answers
    for stream in (sys.stdout, sys.stderr):  # the verdict is in; the program may have replaced them
        try:
            stream.flush()
        except BaseException:
            continue
    os._exit(0)


def main() -> None:
    path = sys.argv[1]
    config, source = _fetch(path)
    for name, value in config["limits"].items():
        soft, hard = value if isinstance(value, list) else (value, value)  # [soft, hard] or one value
        resource.setrlimit(getattr(resource, name), (soft, hard))
    _install_gate()
    _install_guard(config, defence=bool(config["guard"]))
    _block_signal_handlers()
    # From text, not bytes: a coding cookie in the program cannot change how the rest of it reads.
    code = compile(source.decode("utf-8", "replace"), "program.py", "exec")
    del config, source
    sys.argv = ["program.py"]
    try:
        _run(code, {"__name__": "__main__", "__builtins__": builtins}, path)
    except SystemExit:
        os.write(2, b"program called exit()\n")
        os._exit(EXIT_CALLED_EXIT)


if __name__ == "__main__":
    main()
