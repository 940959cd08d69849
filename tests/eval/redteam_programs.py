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
        # The sandbox's lib-dynload has no _ctypes any more: the program names the host's file.
        "import _imp, importlib.util\n"
        "_imp.create_dynamic(importlib.util.spec_from_file_location('_ctypes', '$ctypes_so'))\n",
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
    # --- native code under another name (issue 19): each prints NATIVE if it got some ------------
    Attack(
        "ctypes-under-another-name",
        "native code",
        "import importlib.machinery, importlib.util, sys\n"
        "loader = importlib.machinery.ExtensionFileLoader('alias._ctypes', '$ctypes_so')\n"
        "ffi = loader.create_module(importlib.util.spec_from_loader('alias._ctypes', loader))\n"
        "sys.stderr.write('NATIVE %r\\n' % ffi.dlopen(None))\n",
        "blocked by the rvec sandbox: import alias._ctypes from",
    ),
    Attack(
        "posixsubprocess-under-another-name",
        "native code",
        # fork_exec raises no audit event: a process the in-process guard never hears of.
        "import importlib.util, os, sys\n"
        "spec = importlib.util.spec_from_file_location('x._posixsubprocess', '$posixsubprocess_so')\n"
        "ps = importlib.util.module_from_spec(spec)\n"
        "sys.stderr.write('NATIVE\\n')\n"
        "r, w = os.pipe()\n"
        "ps.fork_exec([b'/bin/sh', b'-c', b'sleep 300', b'rvec-alive-$marker'], [b'/bin/sh'], True, (), None,\n"
        "             None, -1, -1, -1, -1, -1, -1, r, w, True, False, -1, None, None, None, -1, None, False)\n",
        "blocked by the rvec sandbox: import x._posixsubprocess from",
    ),
    Attack(
        "testinternalcapi-by-extension-loader",
        "native code",
        "import importlib.machinery, importlib.util, sys\n"
        "loader = importlib.machinery.ExtensionFileLoader('y._testinternalcapi', '$testinternalcapi_so')\n"
        "spec = importlib.util.spec_from_loader('y._testinternalcapi', loader)\n"
        "loader.exec_module(loader.create_module(spec))\nsys.stderr.write('NATIVE\\n')\n",
        "blocked by the rvec sandbox: import y._testinternalcapi from",
    ),
    Attack(
        "extension-copied-into-the-folder",
        "native code",
        # An allowed module copied under another file name: the guard allows files, not names (and
        # the folder is noexec, so the copy could not be mapped anyway).
        "import importlib.util, os, sys\n"
        "dynload = [p for p in sys.path if p.endswith('lib-dynload')][0]\n"
        "name = [n for n in os.listdir(dynload) if n.startswith('math.')][0]\n"
        "open('/tmp/' + name, 'wb').write(open(dynload + '/' + name, 'rb').read())\n"
        "importlib.util.module_from_spec(importlib.util.spec_from_file_location('math', '/tmp/' + name))\n"
        "sys.stderr.write('NATIVE\\n')\n",
        "blocked by the rvec sandbox: import math from '/tmp/",
    ),
    Attack(
        "crafted-bytecode-by-marshal",
        "native code",
        # Hand-made bytecode indexes past its constants: arbitrary memory reads and writes.
        "import marshal, sys\ncode = compile('x = 1', 'c', 'exec')\n"
        "crafted = marshal.loads(marshal.dumps(code).replace(b'd\\x00', b'd\\x7f'))\n"
        "sys.stderr.write('NATIVE %r\\n' % crafted)\n",
        "blocked by the rvec sandbox: marshal.loads",
    ),
    Attack(
        "bytecode-file-in-the-folder",
        "native code",
        "import importlib.util, marshal, sys\n"
        "data = importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(compile('import sys', 'p', 'exec'))\n"
        "open('payload.pyc', 'wb').write(data)\nsys.path.insert(0, '/tmp')\nimport payload\n"
        "sys.stderr.write('NATIVE\\n')\n",
        "blocked by the rvec sandbox: marshal.loads",
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
        "memfd-beyond-the-address-limit",
        "bombs",
        # 48 unnamed files of 15 MiB each: every one under RLIMIT_FSIZE, none mapped (so none in
        # RLIMIT_AS), 720 MiB of shared memory together
        "import os, sys\nheld = []\nfor _ in range(48):\n    held.append(os.memfd_create('hold'))\n"
        "    os.posix_fallocate(held[-1], 0, 15 << 20)\nsys.stderr.write('HELD 720 MiB outside RLIMIT_AS\\n')\n",
        "Operation not permitted",
    ),
    Attack(
        "fallocate-inherited-descriptors",
        "bombs",
        # FALLOC_FL_KEEP_SIZE reserves blocks past RLIMIT_FSIZE; native code for it comes from perl's
        # syscall() (285 is fallocate on x86_64), run in place of the launcher where exec is allowed.
        "import os, sys\n"
        "script = ('for my $$fd (0..63) { if (syscall(285, $$fd, 1, 0, 64 << 20) == 0) '\n"
        "          '{ print STDERR \"HELD 64 MiB through descriptor $$fd\\\\n\" } } exit 1')\n"
        "os.execv('/usr/bin/perl', ['perl', '-e', script])\n",
    ),
    Attack(
        "inode-flood",
        "bombs",
        "import os, sys\nn = 0\ntry:\n    while True:\n"
        "        os.close(os.open('f%d' % n, os.O_CREAT | os.O_WRONLY))\n        n += 1\n"
        "finally:\n    sys.stderr.write('created %d files\\n' % n)\n",
        "No space left on device",
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
