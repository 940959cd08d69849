"""Resolve a source string — local folder, Hugging Face hub id[@revision], or ``.gguf`` file — to a
:class:`Checkpoint`: config, tokenizer files, header-only tensor index and lazy tensor reads."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rvec.checkpoint import hashing
from rvec.checkpoint.confine import allowed_roots, member
from rvec.checkpoint.dtypes import F32, coerce, from_torch, to_float32
from rvec.checkpoint.index import TensorIndex, TensorInfo
from rvec.checkpoint.locate import local_path, split_revision
from rvec.checkpoint.reader import FileReader
from rvec.errors import CorruptCheckpointError, SourceNotFoundError, UnsafeCheckpointError

if TYPE_CHECKING:
    import torch

__all__ = ["Checkpoint", "SourceKind", "describe_tensors", "resolve"]

logger = logging.getLogger(__name__)

SourceKind = Literal["local", "hub", "gguf"]

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass
class Checkpoint:
    """A resolved checkpoint. ``path`` is a local folder (for hub ids: the snapshot folder)."""

    source: str
    kind: SourceKind
    path: Path
    gguf_file: Path | None = None
    repo_id: str | None = None
    revision: str | None = None  # resolved commit for hub sources
    allow_pickle: bool = False
    _reader: FileReader = field(default_factory=FileReader, repr=False)
    _pickled: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    # ---- metadata -------------------------------------------------------------------------
    @cached_property
    def config(self) -> dict[str, Any]:
        """``config.json`` as a dict (for GGUF: the config transformers derives from the file)."""
        if self.gguf_file is not None:
            from rvec.checkpoint.gguf import gguf_config

            return gguf_config(self.gguf_file)
        file = member(self.path, "config.json", listed_in=str(self.path))
        if not file.is_file():
            raise SourceNotFoundError(
                f"{self.source}: no config.json in {self.path}; is this a model folder?", source=self.source
            )
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise CorruptCheckpointError(
                f"{file}: invalid JSON ({err.msg} at line {err.lineno})", path=str(file)
            ) from err
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise CorruptCheckpointError(
                f"{file}: invalid JSON ({err.__class__.__name__})", path=str(file)
            ) from None
        if not isinstance(config, dict):
            raise CorruptCheckpointError(
                f"{file}: not a JSON object; is this a model folder?", path=str(file)
            )
        return config

    @property
    def display(self) -> str:
        return f"{self.repo_id}@{self.revision[:12]}" if self.kind == "hub" and self.revision else self.source

    # ---- tensors ---------------------------------------------------------------------------
    @property
    def has_local_weights(self) -> bool:
        """Whether tensor data can be read (false for a hub checkpoint resolved headers-only)."""
        if self.gguf_file is not None:
            return True
        return any(self.path.glob("*.safetensors")) or any(
            p.suffix in _PICKLE_SUFFIXES for p in self.path.iterdir()
        )

    @cached_property
    def weight_files(self) -> tuple[Path, ...]:
        """The weight files, in the order of the shard index when there is one."""
        if self.gguf_file is not None:
            return (self.gguf_file,)
        found = sorted(self.path.glob("*.safetensors"))
        if found:
            return self._confined(found)
        pickled = sorted(p for p in self.path.iterdir() if p.suffix in _PICKLE_SUFFIXES and p.is_file())
        if pickled:
            self._confined(pickled)
            if not self.allow_pickle:
                raise UnsafeCheckpointError(
                    f"{self.source}: weights are pickled ({pickled[0].name}), which can run arbitrary code when loaded; "
                    "pass --allow-pickle if you trust this checkpoint, or convert it to safetensors"
                )
            return tuple(pickled)
        raise SourceNotFoundError(
            f"{self.source}: no weight files (*.safetensors) in {self.path}", source=self.source
        )

    @cached_property
    def index(self) -> TensorIndex:
        """Every tensor's name, dtype, shape and location, from headers only."""
        if self.gguf_file is not None:
            raise UnsafeCheckpointError(
                f"{self.source}: GGUF weights are quantized; convert first: rvec convert {self.gguf_file} -o FOLDER"
            )
        if self.kind == "hub" and not self.has_local_weights:
            from rvec.checkpoint.hub import remote_index

            return remote_index(self.repo_id or self.source, self.revision)
        files = self.weight_files
        if files[0].suffix != ".safetensors":
            return self._pickle_index(files)
        index = TensorIndex.from_files(files)
        self._check_shard_index(index)
        return index

    def validate(self) -> None:
        """Check what an engine loading this folder relies on, without reading weights: every
        safetensors header (:mod:`rvec.checkpoint.header`), the shard index and the names it holds,
        and the metadata files (no link out of the folder).

        Raises:
            CorruptCheckpointError, UnsafeNameError: as :attr:`index` and :func:`rvec.checkpoint.files.metadata_files`.
        """
        from rvec.checkpoint.files import metadata_files

        metadata_files(self.path)
        if self.gguf_file is None and any(self.path.glob("*.safetensors")):
            self.index  # noqa: B018 — headers and shard index, validated on first access

    def _confined(self, files: list[Path]) -> tuple[Path, ...]:
        """``files`` of the folder, each refused if it is a link to a file outside it (a hub
        snapshot's links into its repository's ``blobs`` are inside)."""
        roots = allowed_roots(self.path)
        return tuple(member(self.path, f.name, listed_in=str(self.path), roots=roots) for f in files)

    def _check_shard_index(self, index: TensorIndex) -> None:
        """A ``*.safetensors.index.json`` must map tensor names to plain shard names inside the folder;
        one that names a tensor no shard holds means a missing shard.

        Raises:
            CorruptCheckpointError: not JSON, no ``weight_map`` object of strings, or a shard missing.
            UnsafeNameError: a shard name outside the folder (``..``, absolute, a link out).
        """
        roots = allowed_roots(self.path)
        for index_file in sorted(self.path.glob("*.safetensors.index.json")):
            weight_map = _weight_map(index_file)
            shards = {
                f: member(self.path, f, listed_in=str(index_file), roots=roots)
                for f in set(weight_map.values())
            }
            missing_files = sorted(
                {f for n, f in weight_map.items() if n not in index and not shards[f].exists()}
            )
            if missing_files:
                raise CorruptCheckpointError(
                    f"{self.source}: shard {missing_files[0]} listed in {index_file.name} is missing; re-download it",
                    path=str(self.path / missing_files[0]),
                )

    def _pickle_index(self, files: tuple[Path, ...]) -> TensorIndex:
        # weights_only=True refuses arbitrary objects; mmap avoids reading data until it is used.
        import torch

        tensors: dict[str, torch.Tensor] = {}
        infos: dict[str, TensorInfo] = {}
        for file in files:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            for name, t in state.items():
                tensors[name] = t
                infos[name] = TensorInfo(
                    name=name,
                    dtype=coerce(t.dtype),
                    shape=tuple(t.shape),
                    file=file,
                    start=0,
                    end=t.numel() * t.element_size(),
                )
        self._pickled = tensors
        return TensorIndex(tensors=infos, files=files)

    def read_range(self, name: str, start: int, stop: int) -> np.ndarray:
        """Flat elements ``[start, stop)`` of tensor ``name`` in its own dtype (a new array;
        :meth:`read_float32` for float32 values)."""
        return self.read_into(name, start, np.empty(stop - start, dtype=self.index[name].dtype.numpy))

    def read_into(self, name: str, start: int, out: np.ndarray) -> np.ndarray:
        """Fill the 1-D buffer ``out`` (the tensor's numpy dtype) with flat elements ``[start, start + len(out))`` of ``name``."""
        info = self.index[name]
        if self._pickled is not None:
            np.copyto(out, from_torch(self._pickled[name].reshape(-1)[start : start + out.size]))
            return out
        return self._reader.read_into(info, start, out)

    def read_float32(self, name: str, start: int, stop: int) -> np.ndarray:
        """Flat elements ``[start, stop)`` of float tensor ``name`` as float32 values (a new array)."""
        dtype = self.index[name].dtype
        raw = self.read_range(name, start, stop)
        return raw if dtype == F32 else to_float32(raw, np.empty(raw.size, np.float32))

    def read(self, name: str) -> np.ndarray:
        """The whole tensor in its dtype and shape."""
        return self.read_range(name, 0, self.index[name].numel).reshape(self.index[name].shape)

    # ---- identity --------------------------------------------------------------------------
    def file_hashes(self) -> dict[str, str]:
        """sha256 of each weight file, by file name (cached by path, size and mtime)."""
        return {f.name: hashing.sha256_file(f) for f in self.weight_files}

    def fingerprint(self) -> str:
        """A content identity for caches: the sorted weight-file hashes, hashed."""
        return hashing.sha256_text(json.dumps(sorted(self.file_hashes().values())))[:16]

    def describe(self, *, hash_files: bool = True) -> dict[str, Any]:
        """Provenance record: source, kind, resolved revision, and sha256 of each weight file
        (``hash_files=False``: only hashes known without reading the files, e.g. hub blobs)."""
        hashes = (
            self.file_hashes() if hash_files else {f.name: hashing.known_sha256(f) for f in self.weight_files}
        )
        return {
            "source": self.source,
            "kind": self.kind,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "path": str(self.path if self.gguf_file is None else self.gguf_file),
            "sha256": hashes,
        }

    def close(self) -> None:
        self._reader.close()


def _weight_map(index_file: Path) -> dict[str, str]:
    """The ``weight_map`` of a ``*.safetensors.index.json``: tensor name → shard file name.

    Raises:
        CorruptCheckpointError: not a JSON object with a ``weight_map`` object of strings.
    """
    try:
        data = json.loads(index_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CorruptCheckpointError(
            f"{index_file}: invalid JSON ({err.__class__.__name__}); re-download it", path=str(index_file)
        ) from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CorruptCheckpointError(
            f"{index_file}: no 'weight_map' object of shard file names; re-download it", path=str(index_file)
        )
    return weight_map


def describe_tensors(ckpt: Checkpoint) -> list[dict[str, Any]]:
    """Every tensor's ``name``, ``dtype``, ``shape``, ``numel`` (and ``file``), from headers only
    (a GGUF's own names and quantization types)."""
    if ckpt.gguf_file is not None:
        from rvec.checkpoint.gguf import gguf_tensors

        return gguf_tensors(ckpt.gguf_file)
    return [
        {"name": t.name, "dtype": t.dtype_name, "shape": list(t.shape), "numel": t.numel, "file": t.file.name}
        for t in ckpt.index
    ]


def resolve(
    source: str | Path,
    *,
    revision: str | None = None,
    allow_pickle: bool = False,
    weights: bool = True,
) -> Checkpoint:
    """Resolve a source to a :class:`Checkpoint`.

    Args:
        source: local folder, ``.gguf`` file, or hub id with optional ``@revision``.
        revision: hub revision (branch, tag or commit); overrides an ``@rev`` suffix.
        allow_pickle: accept pickled ``.bin`` weights (loaded with ``weights_only=True``).
        weights: for hub ids, download the weight files too (``False``: config and headers only).

    Raises:
        SourceNotFoundError: not a folder, file or hub repository.
        HubUnavailableError: a hub id, but the hub is unreachable and nothing is cached.

    Example:
        >>> ckpt = resolve("Qwen/Qwen2.5-0.5B-Instruct@main")  # doctest: +SKIP
    """
    text, suffix_rev = split_revision(str(source))
    revision = revision or suffix_rev
    path = local_path(text)
    if path.is_file() and path.suffix == ".gguf":
        return Checkpoint(source=str(source), kind="gguf", path=path.parent, gguf_file=path.resolve())
    if path.is_dir():
        return Checkpoint(source=str(source), kind="local", path=path.resolve(), allow_pickle=allow_pickle)
    if path.exists():
        raise SourceNotFoundError(
            f"{source}: a file, but not a .gguf checkpoint; pass a model folder, a .gguf file or a hub id",
            source=str(source),
        )
    if not _HUB_ID.match(text):
        raise SourceNotFoundError(
            f"{source}: no such folder or file, and not a hub id (org/name[@revision])", source=str(source)
        )
    from rvec.checkpoint.hub import snapshot

    folder, commit = snapshot(text, revision=revision, weights=weights, allow_pickle=allow_pickle)
    return Checkpoint(
        source=str(source), kind="hub", path=folder, repo_id=text, revision=commit, allow_pickle=allow_pickle
    )
