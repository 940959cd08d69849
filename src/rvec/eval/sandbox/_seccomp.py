"""The seccomp filter of the sandbox: the system calls a unit test never needs, refused by the kernel.

Built with libseccomp through ``pyseccomp`` (ctypes over the system's ``libseccomp.so.2``; never
hand-assembled BPF) once per process, and handed to the inner ``bwrap --seccomp FD``, which loads it
just before it executes the interpreter; every process of the sandbox inherits it and none can
remove it. The default action allows: a Python unit test needs a few hundred system calls that vary
with glibc and the interpreter, and an allow-list that misses one fails programs at random. Refused
with ``EPERM`` unless said otherwise:

* reaching other processes' memory or descriptors: ``ptrace``, ``process_vm_readv``/``writev``,
  ``pidfd_getfd``, ``kcmp``, ``process_madvise``;
* memory beyond ``RLIMIT_AS`` and the folder's size: ``memfd_create``, ``memfd_secret``, System V
  shared memory, semaphores and message queues, POSIX message queues, ``fallocate`` (which can
  reserve blocks past ``RLIMIT_FSIZE`` with ``FALLOC_FL_KEEP_SIZE``), ``mlock*``, AIO and io_uring
  contexts;
* new namespaces and mounts: ``unshare``, ``setns``, ``clone`` with any ``CLONE_NEW*`` flag,
  ``clone3`` (``ENOSYS``: its flags are out of a filter's reach, and glibc falls back to ``clone``),
  the mount API, ``pivot_root``, ``chroot``;
* the kernel's own surfaces: ``bpf``, ``perf_event_open``, ``userfaultfd``, keyrings, modules,
  ``kexec``, ``reboot``, swap, clocks, ``syslog``, ``acct``, quotas, file handles
  (``open_by_handle_at``), ``fanotify``, NUMA policies, ``iopl``/``ioperm``, ``personality`` but
  its query, ``prctl`` that would make the launcher dumpable or traceable, ``TIOCSTI``/``TIOCLINUX``;
* identity: the ``set*id`` family (the sandbox has no capability to use them anyway);
* sockets of any family but ``AF_UNIX`` (``EAFNOSUPPORT``; the network namespace has no route).

Process creation, ``execve`` and threads stay: the kernel bounds them (``RLIMIT_NPROC``, the pid
namespace) and the red team checks that it does.
"""

from __future__ import annotations

import errno
import functools
import socket
import tempfile

from rvec.errors import SandboxUnavailableError

__all__ = ["filter_bpf"]

LIBSECCOMP_INSTALL = "apt-get install libseccomp2"

_REFUSED = (
    # other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    "process_madvise",
    # memory outside the limits
    "memfd_create",
    "memfd_secret",
    "shmget",
    "shmat",
    "shmctl",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "semget",
    "semop",
    "semtimedop",
    "semctl",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    "fallocate",
    "mlock",
    "mlock2",
    "mlockall",
    "io_setup",
    "io_submit",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    # namespaces and mounts
    "unshare",
    "setns",
    "mount",
    "umount2",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "pivot_root",
    "chroot",
    # the kernel's own surfaces
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "syslog",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "open_by_handle_at",
    "name_to_handle_at",
    "fanotify_init",
    "mbind",
    "set_mempolicy",
    "migrate_pages",
    "move_pages",
    "vhangup",
    "uselib",
    "modify_ldt",
    "mknod",
    "mknodat",
    "seccomp",
    # identity
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
    "capset",
)
_CLONE_NEW = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
    "CLONE_NEWTIME": 0x00000080,
}
_PRCTL_REFUSED = {"PR_SET_DUMPABLE": 4, "PR_SET_MM": 35, "PR_SET_PTRACER": 0x59616D61}
_IOCTL_REFUSED = {"TIOCSTI": 0x5412, "TIOCLINUX": 0x541C}
_PERSONALITY_QUERY = 0xFFFFFFFF
_LOW_32 = 0xFFFFFFFF


@functools.cache
def filter_bpf() -> bytes:
    """The compiled filter (BPF for this machine's architecture), built once per process.

    Returns:
        bytes: what ``bwrap --seccomp FD`` reads from ``FD``.

    Raises:
        SandboxUnavailableError: ``pyseccomp`` or the system's libseccomp is missing.
    """
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError, OSError) as err:  # pyseccomp raises RuntimeError without the library
        raise SandboxUnavailableError(
            f"running model-written code needs libseccomp ({err}); install it with "
            f"`{LIBSECCOMP_INSTALL}` and `pip install pyseccomp`"
        ) from err
    flt = sc.SyscallFilter(sc.ALLOW)
    refuse = sc.ERRNO(errno.EPERM)
    for name in _REFUSED:
        # A call this libseccomp does not know (older than the kernel's) cannot be named in a rule.
        if sc.resolve_syscall(sc.Arch.NATIVE, name) >= 0:
            flt.add_rule(refuse, name)
    for flag in _CLONE_NEW.values():
        flt.add_rule(refuse, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for option in _PRCTL_REFUSED.values():
        flt.add_rule(refuse, "prctl", sc.Arg(0, sc.EQ, option))
    for request in _IOCTL_REFUSED.values():
        # The kernel reads the request as 32 bits: compare only those, or high bits would evade it.
        flt.add_rule(refuse, "ioctl", sc.Arg(1, sc.MASKED_EQ, _LOW_32, request))
    flt.add_rule(refuse, "personality", sc.Arg(0, sc.NE, _PERSONALITY_QUERY))
    for call in ("socket", "socketpair"):
        flt.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), call, sc.Arg(0, sc.NE, socket.AF_UNIX))
    with tempfile.TemporaryFile() as out:  # libseccomp writes the program to a descriptor
        flt.export_bpf(out)
        out.seek(0)
        return out.read()
