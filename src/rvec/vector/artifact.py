"""The reasoning-vector artifact and the two things that can supply deltas to ``apply``.

A :class:`DeltaSource` yields float32 blocks of ``v`` per tensor name. Two kinds exist:

* :class:`ReasoningVector` — a vector folder written by ``rvec extract`` (``rvec.json`` + shards);
* :class:`DonorPair` — ``θ_RL − θ_SFT`` computed on the fly from two checkpoints, so ``apply`` can
  fuse extraction and application without writing the vector (same float32 arithmetic, same bits).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rvec.checkpoint.dtypes import F32, to_float32
from rvec.checkpoint.hashing import sha256_text
from rvec.checkpoint.index import TensorIndex
from rvec.checkpoint.reader import FileReader, Workspace
from rvec.checkpoint.source import Checkpoint
from rvec.errors import VectorFormatError

FORMAT_VERSION = 1
MANIFEST = "rvec.json"
VECTOR_PREFIX = "vector"


class DeltaSource(Protocol):
    """Anything that supplies ``v`` as float32, tensor by tensor."""

    label: str

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]: ...

    @property
    def config(self) -> dict[str, Any]: ...

    def read_delta(self, name: str, start: int, stop: int) -> np.ndarray:
        """Flat float32 elements ``[start, stop)`` of ``v[name]`` (a new array)."""
        ...

    def read_delta_into(self, name: str, start: int, out: np.ndarray, workspace: Workspace) -> np.ndarray:
        """Fill the float32 buffer ``out`` with ``v[name]`` from flat element ``start``."""
        ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class ReasoningVector:
    """A vector folder: ``rvec.json`` manifest plus float32 safetensors shards."""

    path: Path
    manifest: dict[str, Any]

    @property
    def label(self) -> str:
        return str(self.path)

    @cached_property
    def index(self) -> TensorIndex:
        files = sorted(self.path.glob(f"{VECTOR_PREFIX}*.safetensors"))
        if not files:
            raise VectorFormatError(
                f"{self.path}: no {VECTOR_PREFIX}*.safetensors files; re-run rvec extract"
            )
        index = TensorIndex.from_files(files)
        expected = set(self.manifest["tensors"])
        if set(index.names) != expected:
            missing = sorted(expected - set(index.names))
            raise VectorFormatError(
                f"{self.path}: shards do not match rvec.json ({len(missing)} tensors missing, e.g. {missing[:1]}); re-run rvec extract"
            )
        return index

    @cached_property
    def _reader(self) -> FileReader:
        return FileReader()

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: tuple(t["shape"]) for n, t in self.manifest["tensors"].items()}

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.manifest["family"]

    @property
    def content_hash(self) -> str:
        """Identity of the vector's data: hash of its shard hashes (recorded at extraction)."""
        return sha256_text(json.dumps(sorted(self.manifest["files"].values())))[:16]

    def read_delta(self, name: str, start: int, stop: int) -> np.ndarray:
        return self._reader.read_range(self.index[name], start, stop)

    def read_delta_into(self, name: str, start: int, out: np.ndarray, workspace: Workspace) -> np.ndarray:
        del workspace  # stored as float32: read straight into the buffer
        return self._reader.read_into(self.index[name], start, out)

    def read(self, name: str) -> np.ndarray:
        """The whole ``v[name]`` as float32 in its shape."""
        info = self.index[name]
        return self._reader.read(info)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "vector",
            "path": str(self.path),
            "hash": self.content_hash,
            "sources": self.manifest.get("sources"),
        }

    def close(self) -> None:
        self._reader.close()


def read_vector(path: str | Path) -> ReasoningVector:
    """Open a vector folder written by ``rvec extract``.

    Raises:
        VectorFormatError: no ``rvec.json``, unreadable, or from a newer format version.
    """
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise VectorFormatError(
            f"{path}: not an rvec vector folder (no {MANIFEST}); create one with rvec extract"
        )
    try:
        manifest = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise VectorFormatError(f"{file}: invalid JSON ({err.msg}); re-run rvec extract") from err
    if manifest.get("kind") != "reasoning-vector" or "tensors" not in manifest:
        raise VectorFormatError(
            f"{file}: not a reasoning-vector manifest; is this a model folder? (rvec apply takes vectors)"
        )
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise VectorFormatError(
            f"{file}: format version {manifest['format_version']} is newer than this rvec supports; upgrade rvec"
        )
    return ReasoningVector(path=path, manifest=manifest)


@dataclass
class DonorPair:
    """``v = θ_RL − θ_SFT`` computed on demand from two checkpoints (float32)."""

    sft: Checkpoint
    rl: Checkpoint

    @property
    def label(self) -> str:
        return f"{self.rl.display} − {self.sft.display}"

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {t.name: t.shape for t in self.sft.index if t.dtype.is_floating_point}

    @property
    def config(self) -> dict[str, Any]:
        return self.sft.config

    def read_delta(self, name: str, start: int, stop: int) -> np.ndarray:
        return self.read_delta_into(
            name, start, np.empty(stop - start, dtype=np.float32), Workspace(stop - start)
        )

    def read_delta_into(self, name: str, start: int, out: np.ndarray, workspace: Workspace) -> np.ndarray:
        # (n,) float32 = RL − SFT, both widened first so bf16 donors subtract without rounding.
        n = out.size
        rl_dtype = self.rl.index[name].dtype
        if rl_dtype == F32:
            self.rl.read_into(name, start, out)
        else:
            to_float32(self.rl.read_into(name, start, workspace.get("rl", rl_dtype.numpy, n)), out)
        sft = self._read_sft_f32(name, start, n, workspace)
        return np.subtract(out, sft, out=out)

    def _read_sft_f32(self, name: str, start: int, n: int, workspace: Workspace) -> np.ndarray:
        dtype = self.sft.index[name].dtype
        if dtype == F32:
            return self.sft.read_into(name, start, workspace.get("sft", np.float32, n))
        raw = self.sft.read_into(name, start, workspace.get("sft", dtype.numpy, n))
        return to_float32(raw, workspace.get("sft32", np.float32, n))

    def sft_block_f32(self, name: str, n: int, workspace: Workspace) -> np.ndarray:
        """The float32 SFT block the last :meth:`read_delta_into` of ``name`` subtracted (for norms)."""
        if self.sft.index[name].dtype == F32:
            return workspace.get("sft", np.float32, n)
        return workspace.get("sft32", np.float32, n)

    def describe(self) -> dict[str, Any]:
        # Donor files are not re-hashed here: apply must not pay a full read for provenance.
        return {
            "kind": "donor-pair",
            "sft": self.sft.describe(hash_files=False),
            "rl": self.rl.describe(hash_files=False),
        }
