"""sha256 of weight files, computed once per file version and remembered on disk.

A file version is (resolved path, device, inode, size, mtime, ctime): an edit in place changes
mtime and ctime, a replacement changes the inode, and ``touch -r``/``os.utime`` can restore mtime
but not ctime, which only the kernel sets. So a remembered hash is never served for edited bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

from rvec.atomic import write_text

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 8 * 1024 * 1024


def cache_dir() -> Path:
    """``$RVEC_CACHE`` or ``~/.cache/rvec``."""
    return Path(os.environ.get("RVEC_CACHE") or Path.home() / ".cache" / "rvec")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def known_sha256(path: Path) -> str | None:
    """The file's sha256 if it is known without reading it (hub blob link or remembered), else None."""
    path = Path(path)
    return _linked_blob_hash(path) or _remembered(_memo_key(path))


def sha256_file(path: Path, *, trust_blob_links: bool = True) -> str:
    """sha256 of a file's bytes, streamed in 8 MB chunks (memory stays flat).

    Hugging Face cache snapshots link LFS files to ``blobs/<sha256>``, so for hub files the hash is
    read off the link instead of recomputed, unless ``trust_blob_links`` is false (verification:
    a blob edited after download keeps its name). Other files are hashed once and remembered in
    ``<cache_dir>/sha256.json`` under their version (see the module docstring).
    """
    path = Path(path)
    blob = _linked_blob_hash(path) if trust_blob_links else None
    if blob:
        return blob
    key = _memo_key(path)
    known = _remembered(key)
    if known:
        return known
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(_CHUNK))  # reused: a fresh 8 MB chunk per read costs page faults
    with path.open("rb") as f:
        while n := f.readinto(buffer):
            digest.update(buffer[:n])
    _remember(key, digest.hexdigest())
    return _SEEN[key]


def remember(path: Path, digest: str) -> None:
    """Record ``digest`` as the sha256 of ``path`` as it is now, for a writer that hashed the bytes it
    wrote (so reading the file back to verify it does not hash it again)."""
    _remember(_memo_key(Path(path)), digest)


def _remember(key: str, digest: str) -> None:
    _SEEN[key] = digest
    with _MEMO_LOCK:
        memo_file = cache_dir() / "sha256.json"
        memo = _load(memo_file)  # again: another thread may have remembered a file meanwhile
        memo[key] = digest
        _store(memo_file, memo)


def _linked_blob_hash(path: Path) -> str | None:
    if path.is_symlink():
        target = Path(os.readlink(path)).name
        if _SHA256.match(target):
            return target
    return None


def _memo_key(path: Path) -> str:
    stat = path.stat()
    return (
        f"{path.resolve()}|{stat.st_dev}:{stat.st_ino}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}"
    )


def _remembered(key: str) -> str | None:
    if key not in _SEEN:
        found = _load(cache_dir() / "sha256.json").get(key)
        if found is None:
            return None
        _SEEN[key] = found
    return _SEEN[key]


_MEMO_LOCK = threading.Lock()
# Hashes computed or read in this process, so a second request never re-reads a file, even where
# the memo file cannot be written.
_SEEN: dict[str, str] = {}


class BackgroundHashes:
    """sha256 of files (:func:`sha256_file`, so remembered) computed on a thread while other work runs.

    ``extract`` hashes its donors for provenance; reading and hashing them beside the streaming
    loop (hashlib releases the GIL) instead of before it takes their cost off the wall clock on a
    machine with a spare core. The thread is a daemon, so Ctrl-C does not wait for it.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = list(paths)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="rvec-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for path in self._paths:
                sha256_file(path)
        except BaseException as err:  # re-raised by wait()
            self._error = err

    def wait(self) -> None:
        """Wait for every hash (then :func:`sha256_file` returns them at once); re-raise its error."""
        self._thread.join()
        if self._error is not None:
            raise self._error


def _load(file: Path) -> dict[str, str]:
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _store(file: Path, memo: dict[str, str]) -> None:
    # Not fsynced, and a read-only home is fine: a lost memo only costs re-hashing next time.
    with contextlib.suppress(OSError):
        write_text(file, json.dumps(memo), fsync=False)
