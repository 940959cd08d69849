"""The red team's programs against the verdict: faking a pass, reading the pass token (as data, run
by test_sandbox_redteam.py). The token hunters collect every 32-hex-digit string they can reach,
print them, then try each as the token on every descriptor."""

from __future__ import annotations

from redteam_programs import Attack

from rvec.eval.code_answers import build_humaneval_program


def humaneval(completion: str) -> str:
    """A HumanEval-shaped program (lm-eval layout) whose answer is wrong, completed by ``completion``."""
    prompt = 'def add(a, b):\n    """Return a + b."""\n'
    test = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
    return build_humaneval_program(prompt, completion, test=test, entry_point="add", mode="raw")


_HUNT = r"""
import os, re, sys
HEX = re.compile(r"[0-9a-f]{32}")
found = set()
def look(value, depth=0):
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        found.update(HEX.findall(value))
    elif depth < 2 and isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            look(item, depth + 1)
    elif depth < 2 and isinstance(value, dict):
        for key, item in list(value.items()):
            look(key, depth + 1)
            look(item, depth + 1)
def look_function(fn):
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            look(cell.cell_contents)
        except ValueError:
            pass
    look(getattr(fn, "__defaults__", None))
    look(getattr(fn, "__kwdefaults__", None))
def forge():
    sys.stderr.write("candidates: %s\n" % sorted(found))
    for candidate in sorted(found):
        for fd in range(3, 64):
            try:
                os.write(fd, candidate.encode())
            except OSError:
                pass
    os._exit(0)
"""


def _hunt(body: str) -> str:
    return _HUNT + body + "\nforge()\n"


# Run outside the guard (a fresh interpreter), it reads another process's memory by address.
_PTRACE_HELPER = r"""
import ctypes, re, sys
libc = ctypes.CDLL(None, use_errno=True)
pid, center, size = int(sys.argv[1]), int(sys.argv[2]), 1 << 16
class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
found, refused = set(), 0
for start in range(center - (64 << 20), center + (64 << 20), size):
    buf = ctypes.create_string_buffer(size)
    n = libc.process_vm_readv(pid, ctypes.byref(Iovec(ctypes.addressof(buf), size)), 1,
                              ctypes.byref(Iovec(start, size)), 1, 0)
    if n > 0:
        found.update(re.findall(rb"[0-9a-f]{32}", buf.raw[:n]))
    refused += n < 0 and ctypes.get_errno() == 1
sys.stdout.write(" ".join(sorted(f.decode() for f in found)))
sys.stderr.write("refused %d reads\n" % refused)
"""


# Run by a fresh interpreter (no guard, `_socket` importable): reports `returned` to the harness.
_REPORTER = (
    "import _socket, sys\ns = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)\ns.connect('/rvec/report')\n"
    "s.sendall(b'returned\\n')\nsys.stderr.write('reported, answer %r\\n' % s.recv(1))\n"
)


VERDICT_ATTACKS: list[Attack] = [
    # --- faking a pass -----------------------------------------------------------------------------
    Attack("os-exit-before-check", "fake a pass", humaneval("    return 0\nimport os\nos._exit(0)\n")),
    Attack("sys-exit-inside-candidate", "fake a pass", humaneval("    import sys\n    sys.exit(0)\n")),
    Attack(
        "exit-from-finally-and-atexit",
        "fake a pass",
        humaneval(
            "    return 0\nimport atexit, os\natexit.register(os._exit, 0)\ntry:\n    pass\nfinally:\n"
            "    raise SystemExit(0)\n"
        ),
        "program called exit()",
    ),
    Attack(
        "kill-itself",
        "fake a pass",
        humaneval("    return 0\nimport os, signal\nsignal.raise_signal(signal.SIGKILL)\n"),
    ),
    Attack(
        "close-every-descriptor",
        "fake a pass",
        humaneval("    return 0\nimport os\nos.closerange(0, 1024)\nos._exit(0)\n"),
    ),
    Attack(
        "guess-the-token",
        "fake a pass",
        humaneval(
            "    return 0\nimport os\nfor fd in range(64):\n    for guess in (b'passed', b'0' * 32, b'1'):\n"
            "        try:\n            os.write(fd, guess)\n        except OSError:\n            pass\nos._exit(0)\n"
        ),
    ),
    Attack(
        "report-event-from-program",
        "fake a pass",
        humaneval("    return 0\nimport sys\nsys.audit('rvec.report')\nsys.audit('rvec.start')\n"),
        "a pass was reported from outside the launcher",
    ),
    Attack(
        "override-check",
        "fake a pass",
        humaneval(
            "    return 0\nimport builtins\nbuiltins.check = lambda candidate: None\n"
            "def check(candidate):\n    pass\n"
        ),
        "AssertionError",
    ),
    Attack(
        "jump-over-the-asserts",
        "fake a pass",
        humaneval(
            "    return 0\nimport sys\n"
            "def tracer(frame, event, arg):\n"
            "    if event == 'line' and frame.f_code.co_name == 'check':\n        frame.f_lineno = 99\n"
            "    return tracer\nsys.settrace(tracer)\n"
        ),
        "blocked by the rvec sandbox: sys.settrace",
    ),
    Attack(
        "monkeypatch-the-launcher",
        "fake a pass",
        humaneval(
            "    return 0\nimport os, sys\nlauncher = sys.modules['__main__']\n"
            "launcher._REPORT = launcher._START = 'open'\nsys.audit = lambda *a: None\n"
            "os._exit = lambda code: None\nraise SystemExit(0)\n"
        ),
    ),
    Attack(
        "signal-handler-in-the-hook",
        "fake a pass",
        "import _signal, _thread, sys\n_signal.signal(_signal.SIGALRM, lambda s, f: None)\n",
        "blocked by the rvec sandbox: Python signal handlers",
    ),
    # --- reporting a pass through the harness's socket (issue 19) --------------------------------------
    Attack(
        "report-socket-from-the-program",
        "fake a pass",
        humaneval(
            "    return 0\nimport socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('/rvec/report')\n"
            "s.sendall(b'returned\\n')\ns.recv(1)\n"
        ),
        "blocked by the rvec sandbox: socket.__new__",
    ),
    Attack(
        "report-from-a-child",
        "fake a pass",
        # A fresh interpreter has no guard: forked, it reports from another pid.
        humaneval(
            "    return 0\nimport os, sys\nif os.fork() == 0:\n    os.execv(sys.executable, [sys.executable, '-c', "
            + repr(_REPORTER)
            + "])\nos.wait()\n"
        ),
    ),
    Attack(
        "report-after-exec",
        "fake a pass",
        # The same pid, in another executable image (the launcher's is gone).
        humaneval(
            "    return 0\nimport os, sys\nos.execv(sys.executable, [sys.executable, '-c', "
            + repr(_REPORTER)
            + "])\n"
        ),
    ),
    Attack(
        "report-from-c-callbacks",
        "fake a pass",
        # Built-in callables run by finalisers, weakref callbacks and atexit push no Python frame: they
        # run "in" whatever frame is current, perhaps the launcher's. Each tries to make the socket.
        humaneval(
            "    return 0\nimport _socket, atexit, functools, gc, weakref\n"
            "make = functools.partial(_socket.socket, _socket.AF_UNIX, _socket.SOCK_STREAM)\n"
            "class Cycle:\n    __del__ = make\n"
            "for _ in range(1000):\n    c = Cycle()\n    c.self = c\n"
            "class Target:\n    pass\nkeep = [weakref.ref(Target(), make) for _ in range(10)]\n"
            "atexit.register(make)\ngc.set_threshold(1)\n"
        ),
    ),
    Attack(
        "pending-call-reads-the-hooks",
        "read the token",
        # _testcapi under another name schedules a callback that runs inside whichever audit hook is
        # running and reads its frame: the verdict token of the old design was found this way.
        _hunt(
            "import importlib.util, threading, time\n"
            "spec = importlib.util.spec_from_file_location('alias._testcapi', '$testcapi_so')\n"
            "capi = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(capi)\n"
            "def spy():\n    frame = sys._getframe(1)\n    while frame is not None:\n"
            "        look(dict(frame.f_locals))\n        frame = frame.f_back\n    return 0\n"
            "def schedule():\n    for _ in range(300):\n        capi._pending_threadfunc(spy)\n        time.sleep(0.002)\n"
            "thread = threading.Thread(target=schedule)\nthread.start()\n"
            "list(map(sys.audit, ['rvec-redteam'] * 400000))\nthread.join()\n"
        ),
        "blocked by the rvec sandbox: import alias._testcapi from",
    ),
    # --- reading the harness's secret (the pass token) ----------------------------------------------
    Attack(
        "token-from-env-argv-descriptors",
        "read the token",
        _hunt(
            "look(dict(os.environ))\nlook(sys.argv)\nlook(sys.orig_argv)\n"
            "for fd in range(1024):\n    try:\n        os.set_blocking(fd, False)\n        look(os.read(fd, 1 << 16))\n"
            "    except OSError:\n        pass\n"
        ),
    ),
    Attack(
        "token-from-frames",
        "read the token",
        _hunt(
            "frame = sys._getframe()\nwhile frame is not None:\n    look(dict(frame.f_locals))\n"
            "    look(dict(frame.f_globals))\n    frame = frame.f_back\n"
            "try:\n    raise ValueError\nexcept ValueError as err:\n    tb = err.__traceback__\n"
            "    while tb is not None:\n        look(dict(tb.tb_frame.f_locals))\n        tb = tb.tb_next\n"
        ),
    ),
    Attack(
        "token-from-every-function",
        "read the token",
        _hunt(
            "def walk(cls, seen):\n    for sub in type.__subclasses__(cls):\n        if sub not in seen:\n"
            "            seen.add(sub)\n            walk(sub, seen)\n    return seen\n"
            "for module in list(sys.modules.values()):\n    for value in list(vars(module).values() if module else []):\n"
            "        if callable(value):\n            look_function(value)\n"
            "for cls in walk(object, set()):\n    for value in list(vars(cls).values()):\n        look_function(value)\n"
            "        look_function(getattr(value, '__func__', None))\n"
        ),
    ),
    Attack(
        "token-from-gc-and-threads",
        "read the token",
        _hunt(
            "import gc\ntry:\n    for obj in gc.get_objects():\n        look_function(obj)\n"
            "except PermissionError as err:\n    sys.stderr.write('%s\\n' % err)\n"
            "try:\n    for frame in sys._current_frames().values():\n        look(dict(frame.f_locals))\n"
            "except PermissionError as err:\n    sys.stderr.write('%s\\n' % err)\n"
        ),
    ),
    Attack(
        "token-by-ptrace-from-a-child",
        "read the token",
        # A child running an unguarded Python with ctypes reads the launcher's heap around an address
        # the program gives it: process_vm_readv needs ptrace rights over the launcher.
        _hunt(
            "import subprocess\n"
            "run = subprocess.run([sys.executable, '-c', HELPER, str(os.getpid()), str(id(object()))],\n"
            "                     capture_output=True, text=True)\n"
            "sys.stderr.write(run.stderr[-200:])\n"
            "found.update(run.stdout.split())\n"
        ).replace("import os, re, sys\n", "import os, re, sys\nHELPER = " + repr(_PTRACE_HELPER) + "\n", 1),
    ),
    Attack(
        "token-from-a-finaliser-during-the-report",
        "read the token",
        _hunt(
            "class Spy:\n    def __del__(self):\n        frame = sys._getframe()\n"
            "        while frame is not None:\n            look(dict(frame.f_locals))\n            frame = frame.f_back\n"
            "for _ in range(10000):\n    spy = Spy()\n    spy.cycle = spy\ndel spy\n"
            "try:\n    sys.audit('rvec.report')\nfinally:\n    pass\n"
        ),
    ),
]
