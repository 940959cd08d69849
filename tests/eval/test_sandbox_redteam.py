"""Red team: every hostile program of redteam_programs.py and redteam_verdict_programs.py, run for real under the sandbox — with the
in-process guard, and with the OS isolation alone — and checked twice: its verdict (never passed) and
the harm it tried (nothing outside changed or created, no socket reached, no signal received, nothing
left running, no secret or pass token in its output, no escalation)."""

from __future__ import annotations

import importlib.machinery
import os
import re
import signal
import socket
import string
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redteam_programs import HOST_ATTACKS, Attack
from redteam_verdict_programs import VERDICT_ATTACKS

from fixtures import processes_with
from rvec.eval.sandbox import ExecutionResult, Sandbox, _bwrap, _supervise, _view

SECRET = "rvec-redteam-secret-7f3a9c"
NATIVE_MODULES = ("_ctypes", "_posixsubprocess", "_testcapi", "_testinternalcapi")
ATTACKS = HOST_ATTACKS + VERDICT_ATTACKS
LAYERS = {"guard+os": True, "os-only": False}
WATCHED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Host:
    """What the attacks aim at, and what they did to it once all have run."""

    outside: Path
    marker: str
    listeners: dict[str, socket.socket]
    created: list[Path] = field(default_factory=list)  # paths the attacks try to create
    signals: list[int] = field(default_factory=list)
    results: dict[str, dict[str, ExecutionResult]] = field(default_factory=dict)

    @property
    def sentinel(self) -> Path:
        return self.outside / "sentinel.txt"

    @property
    def secret_file(self) -> Path:
        return self.outside / "secret.txt"


def _listeners() -> dict[str, socket.socket]:
    made = {}
    for name, family, kind, address in (
        ("tcp4", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0)),
        ("tcp6", socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0)),
        ("udp", socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0)),
    ):
        sock = socket.socket(family, kind)
        sock.bind(address)
        made[name] = sock
    for sock in made.values():
        sock.setblocking(False)
        if sock.type == socket.SOCK_STREAM:
            sock.listen(8)
    return made


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """Run every attack in both layers against one prepared host, then hand over what happened."""
    outside = tmp_path_factory.mktemp("outside")
    marker = f"{os.getpid()}x{outside.name}"
    h = Host(outside, marker, _listeners())
    h.sentinel.write_text("precious")
    h.secret_file.write_text(SECRET)
    h.secret_file.chmod(0o600)
    unix_path, abstract = str(outside / "host.sock"), f"rvec-redteam-{marker}"
    for name, address in (("unix", unix_path), ("abstract", "\0" + abstract)):
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(address)
        sock.listen(8)
        sock.setblocking(False)
        h.listeners[name] = sock
    python, prefixes = _view.interpreter()
    h.created = [
        Path("/tmp") / f"rvec-pwned-{marker}",
        Path("/usr") / f"rvec-pwned-{marker}",
        Path("/dev/shm") / f"rvec-pwned-{marker}",
        Path("/") / f"rvec-pwned-{marker}",
        *(Path(p) / f"rvec-pwned-{marker}" for p in prefixes),
    ]
    facts = {
        "sentinel": str(h.sentinel),
        "outside": str(outside),
        "secret_file": str(h.secret_file),
        "marker": marker,
        "harness_pid": str(os.getpid()),
        "unix_path": unix_path,
        "abstract_name": abstract,
        **{
            f"{name}_port": str(sock.getsockname()[1])
            for name, sock in h.listeners.items()
            if name[-1].isdigit()
        },
        "udp_port": str(h.listeners["udp"].getsockname()[1]),
        # The host's files of the extension modules the sandbox leaves out (its lib-dynload lacks them).
        **{f"{name.lstrip('_')}_so": _host_extension(name) for name in NATIVE_MODULES},
    }
    programs = [string.Template(a.program).substitute(facts) for a in ATTACKS]
    previous = {
        sig: signal.signal(sig, lambda signum, frame: h.signals.append(signum)) for sig in WATCHED_SIGNALS
    }
    python_before = os.stat(python)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RVEC_REDTEAM_SECRET", SECRET)
            for layer, guard in LAYERS.items():
                sandbox = Sandbox(allow=True, timeout_s=15, max_workers=2, python_guard=guard)
                h.results[layer] = dict(
                    zip((a.name for a in ATTACKS), sandbox.run_many(programs), strict=True)
                )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    python_after = os.stat(python)
    assert (python_before.st_size, python_before.st_mtime_ns) == (
        python_after.st_size,
        python_after.st_mtime_ns,
    )
    yield h
    for sock in h.listeners.values():
        sock.close()


def _host_extension(name: str) -> str:
    """The host's file of a left-out extension module; where this build has none (Debian builds
    `_posixsubprocess` in; `_testcapi` is a separate package) the path it would have: the guard
    refuses the load by its path before any file is opened, so the attack is the same."""
    dynload = Path(_view.view().dynload)
    found = sorted(dynload.glob(f"{name}.cpython-*.so"))
    return str(found[0] if found else dynload / f"{name}{importlib.machinery.EXTENSION_SUFFIXES[0]}")


def reached(sock: socket.socket) -> bool:
    """Whether anything connected to (or sent a datagram to) a listener."""
    try:
        if sock.type == socket.SOCK_STREAM:
            sock.accept()[0].close()
        else:
            sock.recv(64)
    except BlockingIOError:
        return False
    return True


def test_the_red_team_is_at_least_thirty_programs_in_every_category() -> None:
    assert len(ATTACKS) >= 30
    assert len({a.name for a in ATTACKS}) == len(ATTACKS)
    assert {a.tried for a in ATTACKS} == {
        "guard escape",
        "write outside",
        "read secrets",
        "signal processes",
        "sockets",
        "survive the timeout",
        "bombs",
        "fake a pass",
        "regain root",
        "read the token",
        "native code",
    }


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_no_hostile_program_passes(host: Host, attack: Attack, layer: str) -> None:
    result = host.results[layer][attack.name]
    assert not result.passed, result
    assert result.status in ("failed", "timeout")
    assert attack.stopped_by in result.stderr_tail, result.stderr_tail
    # What it tried did not happen (one assertion per kind of harm; all are also checked below).
    harm = {
        "guard escape": files_untouched,
        "write outside": files_untouched,
        "read secrets": secrets_kept,
        "signal processes": no_signal_received,
        "sockets": no_socket_reached,
        "survive the timeout": nothing_left_running,
        "bombs": harness_unharmed,
        "fake a pass": secrets_kept,
        "regain root": no_escalation,
        "read the token": secrets_kept,
        "native code": no_native_code,
    }[attack.tried]
    harm(host)


def files_untouched(host: Host) -> None:
    assert host.sentinel.read_text() == "precious"
    assert sorted(p.name for p in host.outside.iterdir()) == ["host.sock", "secret.txt", "sentinel.txt"]
    assert [p for p in host.created if os.path.lexists(p)] == []
    assert not (Path.cwd() / "stolen").exists()


def secrets_kept(host: Host) -> None:
    shadow = Path("/etc/shadow").read_text().splitlines()
    for layer in host.results.values():
        for result in layer.values():
            assert SECRET not in result.stderr_tail
            assert not any(line and line in result.stderr_tail for line in shadow)


def no_signal_received(host: Host) -> None:
    assert host.signals == []


def no_socket_reached(host: Host) -> None:
    assert {name: reached(sock) for name, sock in host.listeners.items()} == dict.fromkeys(
        host.listeners, False
    )
    interfaces = {name for _, name in socket.if_nameindex()} - {"lo"}
    for layer in host.results.values():
        tail = layer["netlink-interfaces"].stderr_tail
        assert not any(f"'{name}'" in tail for name in interfaces)


def nothing_left_running(host: Host) -> None:
    assert processes_with(f"rvec-alive-{host.marker}") == []


def harness_unharmed(host: Host) -> None:
    for layer in host.results.values():
        assert all(len(r.stderr_tail) <= _supervise.STDERR_TAIL for r in layer.values())
        # Memory or disk held past the bounds (memfd, fallocate on an inherited descriptor).
        assert not any("HELD" in r.stderr_tail for r in layer.values())
        created = re.search(r"created (\d+) files", layer["inode-flood"].stderr_tail)
        assert created and int(created[1]) < _bwrap.WORK_INODES  # the folder's inode limit
    assert host.signals == []


def no_native_code(host: Host) -> None:
    for layer in host.results.values():
        assert not any("NATIVE" in r.stderr_tail for r in layer.values())
    nothing_left_running(host)


def no_escalation(host: Host) -> None:
    for layer in host.results.values():
        assert not any("ESCALATED" in r.stderr_tail for r in layer.values())


def test_the_harm_checks_see_harm(tmp_path: Path) -> None:
    """The checks above can fail: the same observations made of a host where the harm happened."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    client = socket.create_connection(listener.getsockname())
    assert reached(listener)
    client.close()
    listener.close()
    marker = f"rvec-alive-selftest-{os.getpid()}"
    # A process that starts no child of its own: a shell's `sleep` child briefly carries the shell's
    # command line (and so the marker) between fork and exec, which a loaded machine catches.
    proc = os.posix_spawn(sys.executable, [sys.executable, "-c", "import time; time.sleep(30)", marker], {})
    try:
        assert processes_with(marker) == [proc]
    finally:
        os.kill(proc, signal.SIGKILL)
        os.waitpid(proc, 0)
    assert processes_with(marker) == []


def test_layers_differ_only_in_who_stopped_the_attack(host: Host) -> None:
    # With the guard the attacks on processes and files are refused in-process; without it the
    # kernel refuses them. Both layers ran every attack, and neither let one pass.
    guarded, bare = host.results["guard+os"], host.results["os-only"]
    assert "blocked by the rvec sandbox: os.fork" in guarded["fork-bomb"].stderr_tail
    assert "Resource temporarily unavailable" in bare["fork-bomb"].stderr_tail
    assert "blocked by the rvec sandbox: open '/usr/rvec-pwned" in guarded["write-usr"].stderr_tail
    assert "Read-only file system: '/usr/rvec-pwned" in bare["write-usr"].stderr_tail
    assert "blocked by the rvec sandbox: os.exec" in guarded["ignore-sigterm"].stderr_tail
    assert bare["ignore-sigterm"].status == "timeout"
