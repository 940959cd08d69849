"""sha256 of weight files, computed once per (path, size, mtime) and remembered on disk."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

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
    if path.is_symlink() and _SHA256.match(Path(os.readlink(path)).name):
        return Path(os.readlink(path)).name
    stat = path.stat()
    return _load(cache_dir() / "sha256.json").get(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}")


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes.

    Hugging Face cache snapshots link LFS files to ``blobs/<sha256>``, so for hub files the hash is
    read off the link instead of recomputed. Other files are hashed once and remembered in
    ``<cache_dir>/sha256.json`` under (resolved path, size, mtime).
    """
    path = Path(path)
    if path.is_symlink():
        target = Path(os.readlink(path)).name
        if _SHA256.match(target):
            return target
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo_file = cache_dir() / "sha256.json"
    memo = _load(memo_file)
    if key in memo:
        return memo[key]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    memo[key] = digest.hexdigest()
    _store(memo_file, memo)
    return memo[key]


def _load(file: Path) -> dict[str, str]:
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _store(file: Path, memo: dict[str, str]) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, file)
    except OSError:
        pass  # a read-only home only costs re-hashing next time
