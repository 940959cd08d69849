"""The red team's hostile programs, as data (run by test_sandbox_redteam.py).

Each is a ``string.Template`` over the host's facts (``$sentinel``, ``$harness_pid``…). Written so
that if the attack worked the program would run to its end — and so pass — or print what it stole
to stderr, where the test looks for it. ``stopped_by`` is the text the end of stderr must contain:
how the sandbox stopped it, when that is the same with and without the in-process guard.
"""

from __future__ import annotations

from dataclasses import dataclass

from rvec.eval.scoring import build_humaneval_program


@dataclass(frozen=True)
class Attack:
    """One hostile program: what it tries (``tried``, a category of docs/security.md) and how."""

    name: str
    tried: str
    program: str
    stopped_by: str = ""


def humaneval(completion: str) -> str:
    """A HumanEval-shaped program (lm-eval layout) whose answer is wrong, completed by ``completion``."""
    prompt = 'def add(a, b):\n    """Return a + b."""\n'
    test = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
    return build_humaneval_program(prompt, completion, test=test, entry_point="add", mode="raw")


# Shared by the "read the harness's secret" programs: collect every 32-hex-digit string reachable,
# print them, then try each as the pass token on every descriptor.
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


ATTACKS: list[Attack] = [
    # --- escape from the Python guard through interpreter internals -----------------------------
    Attack(
        "fileio-from-subclasses",
        "guard escape",
        "def subclasses(cls):\n    for sub in type.__subclasses__(cls):\n        yield sub\n"
        "        yield from subclasses(sub)\n"
        "file_io = next(c for c in subclasses(().__class__.__base__) if c.__name__ == 'FileIO')\n"
        "file_io('$sentinel', 'w').write(b'pwned')\n",
        "No such file or directory",
    ),
    Attack(
        "posix-reimported",
        "guard escape",
        "import importlib, sys\nsys.modules.pop('posix', None)\nposix = importlib.import_module('posix')\n"
        "posix.unlink('$sentinel')\n",
    ),
    Attack(
        "builtins-restored",
        "guard escape",
        "import builtins, io\nbuiltins.open = io.open\nopen('$sentinel', 'w').write('pwned')\n",
    ),
    Attack(
        "builtin-module-copy",
        "guard escape",
        "import _imp, importlib.machinery\n"
        "posix = _imp.create_builtin(importlib.machinery.ModuleSpec('posix', None))\n"
        "posix.unlink('$sentinel')\n",
        "blocked by the rvec sandbox",
    ),
    Attack(
        "ctypes-libc",
        "guard escape",
        "import ctypes\nctypes.CDLL(None).unlink(b'$sentinel')\n",
        "blocked by the rvec sandbox: import ctypes",
    ),
    Attack(
        "extension-loaded-by-hand",
        "guard escape",
        "import _imp, importlib.util\n_imp.create_dynamic(importlib.util.find_spec('_ctypes'))\n",
        "blocked by the rvec sandbox: import _ctypes",
    ),
    Attack(
        "crafted-code-object",
        "guard escape",
        "f = lambda: 0\nf.__code__ = f.__code__.replace(co_consts=())\nf()\n",
        "blocked by the rvec sandbox: code.__new__",
    ),
    Attack(
        "open-relative-to-root-fd",
        "guard escape",
        "import os\nroot = os.open('/', os.O_RDONLY)\n"
        "os.open('$sentinel'.lstrip('/'), os.O_WRONLY | os.O_TRUNC, dir_fd=root)\n",
        "No such file or directory",
    ),
    # --- writes and deletes outside the folder ---------------------------------------------------
    Attack("overwrite-sentinel", "write outside", "open('$sentinel', 'w').write('pwned')\n"),
    Attack("delete-tree", "write outside", "import shutil\nshutil.rmtree('$outside')\n"),
    Attack("write-usr", "write outside", "open('/usr/rvec-pwned-$marker', 'w').write('pwned')\n"),
    Attack(
        "overwrite-interpreter",
        "write outside",
        "import sys\nopen(sys.executable, 'ab').write(b'pwned')\n",
    ),
    Attack(
        "host-tmp",
        "write outside",
        "import os\nopen('/tmp/rvec-pwned-$marker', 'w').write('pwned')\nassert os.path.exists('$outside')\n",
    ),
    Attack(
        "rename-out",
        "write outside",
        "import os\nos.rename('$sentinel', 'stolen')\n",
    ),
    Attack(
        "symlink-then-write",
        "write outside",
        "import os\nos.symlink('$sentinel', 'link')\nopen('link', 'w').write('pwned')\n",
    ),
    Attack(
        "write-into-dev-shm-and-root",
        "write outside",
        "open('/dev/shm/rvec-pwned-$marker', 'w').write('x')\nopen('/rvec-pwned-$marker', 'w').write('x')\n",
    ),
    # --- reading secrets -------------------------------------------------------------------------
    Attack("etc-shadow", "read secrets", "import sys\nsys.stderr.write(open('/etc/shadow').read())\n"),
    Attack("host-file-0600", "read secrets", "import sys\nsys.stderr.write(open('$secret_file').read())\n"),
    Attack(
        "other-process-environ",
        "read secrets",
        "import sys\nsys.stderr.write(open('/proc/$harness_pid/environ').read())\n",
        "No such file or directory",
    ),
    Attack(
        "environment",
        "read secrets",
        "import os, sys\nsys.stderr.write(os.environ['RVEC_REDTEAM_SECRET'])\n",
        "KeyError",
    ),
    Attack(
        "homes-and-root",
        "read secrets",
        "import os, sys\nfor top in ('/root', '/home', '/etc', '/var', '/run', '/proc', '/sys'):\n"
        "    for dirpath, dirs, files in os.walk(top):\n"
        "        dirs[:] = [d for d in dirs if not os.path.join(dirpath, d).startswith(sys.base_prefix)]\n"
        "        for name in files:\n"
        "            if not dirpath.startswith(sys.base_prefix):\n"
        "                sys.stderr.write(open(os.path.join(dirpath, name), errors='replace').read())\n"
        "                raise SystemExit('found ' + os.path.join(dirpath, name))\n"
        "assert False, 'nothing found'\n",
        "nothing found",
    ),
    # --- signalling other processes --------------------------------------------------------------
    Attack(
        "signal-harness",
        "signal processes",
        "import os, signal\nfor sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGHUP):\n"
        "    os.kill($harness_pid, sig)\n",
    ),
    Attack(
        "signal-pid1-and-everyone",
        "signal processes",
        "import os, signal\nos.kill(1, signal.SIGKILL)\nos.kill(-1, signal.SIGUSR2)\nos.kill(0, signal.SIGUSR2)\n"
        "raise SystemExit(0)\n",
    ),
    Attack(
        "pidfd-harness",
        "signal processes",
        "import os, signal\nfd = os.pidfd_open($harness_pid)\nsignal.pidfd_send_signal(fd, signal.SIGUSR1)\n",
    ),
    # --- sockets of every family -------------------------------------------------------------------
    Attack(
        "tcp4-loopback",
        "sockets",
        "import socket\nsocket.create_connection(('127.0.0.1', $tcp4_port), timeout=2)\n",
    ),
    Attack(
        "tcp6-loopback",
        "sockets",
        "import socket\nsocket.create_connection(('::1', $tcp6_port), timeout=2)\n",
    ),
    Attack(
        "udp-loopback",
        "sockets",
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(1)\n"
        "s.sendto(b'pwned', ('127.0.0.1', $udp_port))\nassert s.recv(16)\n",
    ),
    Attack(
        "unix-path",
        "sockets",
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('$unix_path')\n",
    ),
    Attack(
        "unix-abstract",
        "sockets",
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('\\0$abstract_name')\n",
    ),
    Attack(
        "netlink-interfaces",
        "sockets",
        "import socket, sys\nnames = [n for _, n in socket.if_nameindex()]\nsys.stderr.write(str(names))\n"
        "assert names != ['lo'], 'only loopback'\n",
    ),
    Attack(
        "packet-raw",
        "sockets",
        "import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))\n",
    ),
    Attack(
        "icmp-raw",
        "sockets",
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n",
    ),
    Attack(
        "internet",
        "sockets",
        "import socket\nsocket.create_connection(('pypi.org', 443), timeout=2)\n",
    ),
    # --- surviving the timeout ---------------------------------------------------------------------
    Attack(
        "double-fork-setsid",
        "survive the timeout",
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        os.execv('/bin/sh', ['sh', '-c', 'sleep 300', 'rvec-alive-$marker'])\n    os._exit(0)\n"
        "time.sleep(0.5)\nassert False\n",
    ),
    Attack(
        "ignore-sigterm",
        "survive the timeout",
        "import os\nos.execv('/bin/sh', ['sh', '-c', 'trap \"\" TERM HUP INT; while :; do :; done', "
        "'rvec-alive-$marker'])\n",
    ),
    Attack(
        "daemon-thread",
        "survive the timeout",
        "import os, threading, time\n"
        "threading.Thread(target=os.execv, args=('/bin/sh', ['sh', '-c', 'sleep 300', 'rvec-alive-$marker'])).start()\n"
        "time.sleep(300)\n",
    ),
    # --- bombs -------------------------------------------------------------------------------------
    Attack("fork-bomb", "bombs", "import os\nwhile True:\n    os.fork()\n"),
    Attack(
        "thread-bomb",
        "bombs",
        "import threading, time\nfor _ in range(200):\n    threading.Thread(target=time.sleep, args=(5,)).start()\n",
        "can't start new thread",
    ),
    Attack(
        "memory-bomb",
        "bombs",
        "blocks = []\nwhile True:\n    blocks.append(bytes(256 << 20))\n",
        "MemoryError",
    ),
    Attack(
        "disk-bomb",
        "bombs",
        "i = 0\nwhile True:\n    open('fill%d' % i, 'wb').write(b'x' * (1 << 20))\n    i += 1\n",
        "No space left on device",
    ),
    Attack(
        "output-bomb",
        "bombs",
        "import sys\nchunk = 'x' * (1 << 20)\nwhile True:\n    sys.stdout.write(chunk)\n    sys.stderr.write(chunk)\n",
    ),
    Attack(
        "descriptor-bomb",
        "bombs",
        "files = [open('/dev/null') for _ in range(10000)]\n",
        "Too many open files",
    ),
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
    # --- regaining uid 0 ---------------------------------------------------------------------------
    Attack(
        "setuid-and-friends",
        "regain root",
        "import os, sys\nfor attempt in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.setgroups([0]),\n"
        "                lambda: os.chroot('/'), lambda: os.mknod('mem', 0o20600, os.makedev(1, 1))):\n"
        "    try:\n        attempt()\n        sys.stderr.write('ESCALATED\\n')\n    except OSError:\n        pass\n"
        "assert os.getuid() == 0, 'still unprivileged'\n",
        "still unprivileged",
    ),
    Attack(
        "user-namespace",
        "regain root",
        "import subprocess, sys\n"
        "run = subprocess.run(['unshare', '--user', '--map-root-user', 'id', '-u'], capture_output=True, text=True)\n"
        "sys.stderr.write('ESCALATED\\n' if run.returncode == 0 else 'refused: ' + run.stderr)\nassert False\n",
    ),
    Attack(
        "setuid-binaries",
        "regain root",
        "import subprocess, sys\n"
        "for argv in (['su', '-c', 'id'], ['mount', '-t', 'tmpfs', 'none', '/usr'], ['newgrp', 'root']):\n"
        "    run = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)\n"
        "    sys.stderr.write('ESCALATED %s\\n' % argv if run.returncode == 0 else 'refused: ' + run.stderr)\n"
        "assert False\n",
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
