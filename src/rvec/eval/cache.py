"""A resumable response cache: finished items are appended as they finish, so a rerun redoes nothing.

One JSONL file per (model, backend, preset@version, condition, task key, perturbation, seed, and
the sampling of a sampled run). Its first line holds that key; each further line is one finished
item::

    {"doc_id": "17", "request": "<sha256 of the request>", "response": {"text": "...", ...}}

An item of a sampled run is one sample: its id is ``<doc_id>#<j>`` and its request carries the
sample's draw (temperature, top-p, its own seed), so every sampling parameter is in the digest too.

A response is reused only when the doc_id *and* the request digest match: the request is everything
the backend sees (rendered messages or prompt, stops, token budget, continuations), so a change of
template, data file or perturbation text that forgot to bump a preset version still misses the
cache instead of returning a stale answer. What the request cannot show (the weights, the dtype,
the chat template, the decoding code) is in the file key through the backend's identity.

A crash can leave a truncated last line; it is skipped on reading and the next append starts a
fresh line. Lines are appended with one ``write`` on an ``O_APPEND`` descriptor, so two processes
sharing a cache never interleave inside a line.

Example:
    >>> cache = ResponseCache(Path("out/cache"))
    >>> entry = cache.open(key)
    >>> entry.get("17", request_digest(request)) is None
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rvec.errors import os_error
from rvec.eval.types import GenerateRequest, LoglikelihoodRequest, Response

__all__ = ["CACHE_FORMAT", "CacheEntry", "CacheKey", "ResponseCache", "request_digest"]

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Bumped when the line format changes; part of every key, so old files are ignored, never misread."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")


@dataclass(frozen=True)
class CacheKey:
    """Everything outside the request that changes a response, plus what names the file.

    Args:
        model (str): The weights' fingerprint (vectors applied in memory included).
        backend (str): The backend's identity: name, dtype, chat template, decoding version.
        preset (str): ``"<name>@<version>"``.
        condition (str): Prompt condition (``"plain"``, ``"think"``).
        task (str): Task key, ``"gsm8k"`` or ``"gsm8k+typo:0.05"``.
        perturbation (str | None): Canonical perturbation name, ``None`` for clean items.
        seed (int): Seed of the perturbations and of the samples (kept for clean greedy items too:
            harmless, and simpler).
        sampling (str | None, default None): A sampled run's :meth:`~rvec.eval.decoding.Sampling.label`
            (``samples=8,temperature=0.6,top_p=0.95``); ``None`` for greedy, and then absent from the
            key, so the files of greedy runs keep their names.
    """

    model: str
    backend: str
    preset: str
    condition: str
    task: str
    perturbation: str | None
    seed: int
    sampling: str | None = None

    def payload(self) -> dict[str, Any]:
        """The key as its file's first line holds it (format version included)."""
        data = {"format": CACHE_FORMAT, **asdict(self)}
        if data["sampling"] is None:
            del data["sampling"]
        return data

    def digest(self) -> str:
        """sha256 of the key's canonical JSON (format version included)."""
        return _sha256_json(self.payload())

    def filename(self) -> str:
        """A readable, filesystem-safe name: the task key, then 16 hex digits of the digest."""
        return f"{_UNSAFE.sub('_', self.task)}.{self.digest()[:16]}.jsonl"


def request_digest(request: GenerateRequest | LoglikelihoodRequest) -> str:
    """sha256 over the canonical JSON of a request (its type included).

    A greedy request without chat-template switches leaves ``draw`` and ``template_args`` out, so
    its digest is the one it had before those fields existed (cached responses stay valid).
    """
    payload = {"type": type(request).__name__, **asdict(request)}
    if payload.get("draw", 0) is None:
        del payload["draw"]
    if not payload["template_args"]:
        del payload["template_args"]
    return _sha256_json(payload)


class CacheEntry:
    """The cached items of one key: read once when opened, then appended to as items finish."""

    def __init__(self, path: Path, key: CacheKey) -> None:
        self.path = path
        self.key = key
        self._items: dict[str, tuple[str, Response]] = {}
        self._fd: int | None = None
        if path.exists():
            self._read()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, doc_id: str, digest: str) -> Response | None:
        """The cached response of ``doc_id`` when it answered the same request, else ``None``."""
        hit = self._items.get(doc_id)
        if hit is None or hit[0] != digest:
            return None
        return hit[1]

    def put(self, doc_id: str, digest: str, response: Response) -> None:
        """Append one finished item (and remember it)."""
        self._items[doc_id] = (digest, response)
        line = {"doc_id": doc_id, "request": digest, "response": _response_to_json(response)}
        self._write(json.dumps(line, ensure_ascii=False) + "\n")

    def close(self) -> None:
        """Close the file descriptor (reads stay available)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------------------------- internals
    def _read(self) -> None:
        with self.path.open(encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        header, skipped = None, 0
        for raw in lines:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                skipped += 1  # a line cut short by a crash
                continue
            if header is None:
                header = record
                if header.get("key") != self.key.payload():
                    logger.warning("cache file %s belongs to another key; ignoring it", self.path)
                    return
                continue
            if "doc_id" not in record:
                continue  # a second header: two processes created the file at the same moment
            self._items[str(record["doc_id"])] = (record["request"], _response_from_json(record["response"]))
        if skipped:
            logger.info("cache %s: skipped %d truncated line(s)", self.path.name, skipped)

    def _write(self, text: str) -> None:
        try:
            self._append(text)
        except OSError as err:  # a full or read-only disk mid-run: one line naming the cache
            raise os_error(err, self.path) from err

    def _append(self, text: str) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if fresh:
                header = {"key": self.key.payload()}
                os.write(self._fd, (json.dumps(header) + "\n").encode("utf-8"))
            elif not _ends_with_newline(self.path):
                os.write(self._fd, b"\n")  # after a crash mid-line: never glue onto the torn line
        os.write(self._fd, text.encode("utf-8"))


class ResponseCache:
    """A folder of :class:`CacheEntry` files.

    Args:
        root (Path): The folder (created on the first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def open(self, key: CacheKey) -> CacheEntry:
        """The entry of ``key``, with whatever a previous run finished already loaded."""
        return CacheEntry(self.root / key.filename(), key)


def _sha256_json(payload: Mapping[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=list)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def _response_to_json(response: Response) -> dict[str, Any]:
    # json writes floats with repr(), which round-trips exactly: cached log-likelihoods are bitwise.
    return {
        "text": response.text,
        "loglikelihoods": list(response.loglikelihoods) if response.loglikelihoods is not None else None,
        "continuation_lengths": (
            list(response.continuation_lengths) if response.continuation_lengths is not None else None
        ),
        "n_generated_tokens": response.n_generated_tokens,
    }


def _response_from_json(data: Mapping[str, Any]) -> Response:
    lls = data.get("loglikelihoods")
    lengths = data.get("continuation_lengths")
    return Response(
        text=data.get("text"),
        loglikelihoods=tuple(float(x) for x in lls) if lls is not None else None,
        continuation_lengths=tuple(int(x) for x in lengths) if lengths is not None else None,
        n_generated_tokens=int(data.get("n_generated_tokens", 0)),
    )
