"""The red team's hostile programs against the host, as data (run by test_sandbox_redteam.py;
those against the verdict are in redteam_verdict_programs.py).

Each is a ``string.Template`` over the host's facts (``$sentinel``, ``$harness_pid``…). Written so
that if the attack worked the program would run to its end — and so pass — or print what it stole
to stderr, where the test looks for it. ``stopped_by`` is the text the end of stderr must contain:
how the sandbox stopped it, when that is the same with and without the in-process guard.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    """One hostile program: what it tries (``tried``, a category of docs/security.md) and how."""

    name: str
    tried: str
    program: str
    stopped_by: str = ""


HOST_ATTACKS: list[Attack] = [
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
]
