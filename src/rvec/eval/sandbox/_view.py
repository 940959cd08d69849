"""What the sandbox's filesystem holds of Python: the interpreter, its standard library, and only the
native extension modules a unit test may need.

A HumanEval program must have no way to native code: CPython's test modules (``_testcapi`` reads
and schedules code inside any frame), the FFI (``_ctypes``) and process spawning without an audit
event (``_posixsubprocess``) are extension modules, and a program can load one under any dotted name
(``importlib.util.spec_from_file_location("x._testcapi", path)``). So the sandbox does not refuse
names only: its view of the interpreter's ``lib-dynload`` is an empty tmpfs into which only the
modules of :data:`ALLOWED_EXTENSIONS` are bound, read-only, and the folders where other builds keep
extension modules (the interpreter's ``site-packages``, the system Python's ``/usr/lib/python3*``,
``/usr/local/lib/python3*``) are hidden behind empty read-only tmpfs. The launcher's guard also
refuses, by path, every extension module that is not one of these files (:attr:`View.extensions`),
whatever name it is imported under, and the built-in ones of :data:`REFUSED_MODULES` by name.
"""

from __future__ import annotations

import atexit
import functools
import glob
import os
import shutil
import sys
import sysconfig
import tempfile

__all__ = ["ALLOWED_EXTENSIONS", "REFUSED_MODULES", "View", "interpreter", "prepared", "view"]

# The standard library's extension modules a unit test may use; everything else (test modules,
# ctypes, process spawning, subinterpreters, shared memory and mmap, the profiler, sqlite's
# load_extension, terminals, sockets other than the launcher's) is absent from the sandbox.
# `_socket` is here for the launcher's report (the guard refuses sockets to the program) and, with
# `select`, so that `import socket, subprocess` work and fail where the guard says why; `resource`
# for the launcher's limits.
ALLOWED_EXTENSIONS = frozenset(
    {
        "_asyncio",
        "_bisect",
        "_blake2",
        "_bz2",
        "_codecs_cn",
        "_codecs_hk",
        "_codecs_iso2022",
        "_codecs_jp",
        "_codecs_kr",
        "_codecs_tw",
        "_contextvars",
        "_csv",
        "_datetime",
        "_decimal",
        "_elementtree",
        "_hashlib",
        "_heapq",
        "_json",
        "_lzma",
        "_md5",
        "_multibytecodec",
        "_opcode",
        "_pickle",
        "_queue",
        "_random",
        "_sha1",
        "_sha256",
        "_sha3",
        "_sha512",
        "_socket",
        "_statistics",
        "_struct",
        "_typing",
        "_uuid",
        "_zoneinfo",
        "array",
        "binascii",
        "cmath",
        "math",
        "pyexpat",
        "resource",
        "select",
        "unicodedata",
        "zlib",
    }
)
# Refused by name wherever they appear in a dotted module name: built-in modules (compiled into the
# interpreter, e.g. Debian builds `_posixsubprocess` in: a view cannot hide them, and a built-in can
# only be created under its own name) and the FFI packages, so that `import ctypes` says why.
REFUSED_MODULES = frozenset(
    {
        "_cffi_backend",
        "_ctypes",
        "_ctypes_test",
        "cffi",
        "ctypes",
        "_lsprof",
        "_multiprocessing",
        "_posixshmem",
        "_posixsubprocess",
        "_sqlite3",
        "_xxinterpchannels",
        "_xxsubinterpreters",
        "mmap",
    }
)
_HIDDEN_GLOBS = ("/usr/lib/python3*", "/usr/local/lib/python3*")


@functools.cache
def interpreter() -> tuple[str, tuple[str, ...]]:
    """The real path of this Python's base interpreter and the folders it needs (read-only)."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    prefixes = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
    prefixes.add(os.path.dirname(os.path.dirname(exe)))
    return exe, tuple(sorted(p for p in prefixes if not _under(p, "/usr")))


class View:
    """The paths the sandbox's filesystem is built from (see the module docstring).

    Attributes:
        python (str): the interpreter, bound execute-only.
        prefixes (tuple[str, ...]): folders bound read-only besides ``/usr`` (the interpreter's).
        stdlib (str): the standard library folder (its ``.pyc`` files are the only bytecode the
            guard lets ``marshal`` load).
        dynload (str): the interpreter's ``lib-dynload``, replaced by a filtered copy.
        extensions (tuple[str, ...]): the allowed extension module files in ``dynload``.
        hidden (tuple[str, ...]): folders replaced by an empty read-only tmpfs.
    """

    def __init__(self) -> None:
        self.python, self.prefixes = interpreter()
        paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
        self.stdlib = os.path.realpath(paths["stdlib"])
        self.dynload = os.path.join(os.path.realpath(paths["platstdlib"]), "lib-dynload")
        names = sorted(os.listdir(self.dynload)) if os.path.isdir(self.dynload) else []
        self.extensions = tuple(
            os.path.join(self.dynload, name) for name in names if name.partition(".")[0] in ALLOWED_EXTENSIONS
        )
        hidden = {os.path.realpath(paths["purelib"]), os.path.realpath(paths["platlib"])}
        for pattern in _HIDDEN_GLOBS:
            hidden.update(os.path.realpath(p) for p in glob.glob(pattern))
        visible = ("/usr", *self.prefixes)
        hidden = {
            p
            for p in hidden
            if os.path.isdir(p)
            and not _under(self.stdlib, p)  # a system Python's own stdlib stays (/usr/lib/python3.11)
            and any(_under(p, v) and p != v for v in visible)
        }
        # One mount hides a folder with all it holds (and a folder inside a hidden one is not there).
        self.hidden = tuple(sorted(p for p in hidden if not any(_under(p, q) and p != q for q in hidden)))


@functools.cache
def view() -> View:
    """The view of this interpreter, computed once per process."""
    return View()


@functools.cache
def prepared() -> tuple[str, str]:
    """Host folders bound into every sandbox of this process: the filtered ``lib-dynload`` and an
    empty folder (what hidden folders show), made once and removed when the process exits.

    One bind of a prepared folder costs one mount; binding the allowed files one by one cost ~40
    mounts per run (about 15 ms). The files are hard links to the interpreter's own (copies where the
    temporary folder is on another filesystem); the folders are private to this process's user
    but readable by uid 65534, through whose eyes the inner bwrap resolves them.
    """
    root = tempfile.mkdtemp(prefix="rvec-sandbox-view-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    dynload, empty = os.path.join(root, "lib-dynload"), os.path.join(root, "empty")
    for folder in (dynload, empty):
        os.mkdir(folder)
    for path in view().extensions:
        target = os.path.join(dynload, os.path.basename(path))
        try:
            os.link(path, target)
        except OSError:  # another filesystem, or a kernel that refuses links to others' files
            shutil.copy2(path, target)
    for folder in (root, dynload, empty):
        os.chmod(folder, 0o755)
    return dynload, empty


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
