"""The reasoning-vector artifact and the two things that can supply deltas to ``apply``.

A :class:`DeltaSource` yields float32 blocks of ``v`` per tensor name. Two kinds exist:

* :class:`ReasoningVector` — a vector folder written by ``rvec extract`` (``rvec.json`` + shards),
  each tensor dense, low-rank factored or sparse, verified against its recorded sha256;
* :class:`DonorPair` — ``θ_RL − θ_SFT`` computed on the fly from two checkpoints, so ``apply`` can
  fuse extraction and application without writing the vector (same float32 arithmetic, same bits).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rvec.checkpoint.confine import allowed_roots, member
from rvec.checkpoint.dtypes import F32, all_finite, to_float32
from rvec.checkpoint.hashing import sha256_text
from rvec.checkpoint.index import TensorIndex, TensorInfo
from rvec.checkpoint.reader import FileReader, Workspace, read_small_file
from rvec.checkpoint.source import Checkpoint
from rvec.errors import NonFiniteError, VectorFormatError
from rvec.vector.encodings import (
    Encoding,
    check_stored,
    encoding_of,
    fill_factored,
    fill_sparse,
    stored_tensors,
)
from rvec.vector.integrity import validate_index_files, verify_family, verify_files
from rvec.vector.manifest import FORMAT_VERSION, validate_manifest

__all__ = ["FORMAT_VERSION", "LINEAGE_FILE", "DeltaSource", "DonorPair", "ReasoningVector", "read_vector"]

MANIFEST = "rvec.json"
VECTOR_PREFIX = "vector"
SHARD_GLOB = f"{VECTOR_PREFIX}*.safetensors"
LINEAGE_FILE = "lineage.safetensors"  # first elements of a few SFT weights: apply's lineage check
_MAX_LINEAGE_BYTES = 64 * 1024 * 1024  # a real probe is under 1 MB; a larger one is not read


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

    def read_delta_into(
        self, name: str, start: int, out: np.ndarray, workspace: Workspace, *, check_finite: bool = True
    ) -> np.ndarray:
        """Fill the float32 buffer ``out`` with ``v[name]`` from flat element ``start``.

        ``check_finite``: refuse a block holding NaN or Inf (:class:`~rvec.errors.NonFiniteError`
        naming the tensor); ``False`` only for a caller that checks what it computes from the block
        itself (``apply`` checks ``target + α·v``), so the data is not scanned twice.
        """
        ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class ReasoningVector:
    """A vector folder: ``rvec.json`` manifest plus float32 safetensors shards.

    Each tensor is stored dense, factored or sparse (:mod:`rvec.vector.encodings`); every reader
    gets plain float32 blocks whatever the encoding. ``verified`` says whether the shards were
    checked against the manifest's sha256 (:meth:`verify`, done by :func:`read_vector` by default).
    """

    path: Path
    manifest: dict[str, Any]
    verified: bool = False

    @property
    def label(self) -> str:
        return str(self.path)

    @cached_property
    def index(self) -> TensorIndex:
        roots = allowed_roots(self.path)
        files = [
            member(self.path, f.name, listed_in=str(self.path), roots=roots)
            for f in self.path.glob(SHARD_GLOB)
        ]
        if not files:
            raise VectorFormatError(f"{self.path}: no {SHARD_GLOB} files; re-run rvec extract")
        index = TensorIndex.from_files(files)
        validate_index_files(self.path, index)
        expected = {s.name for n, r in self.manifest["tensors"].items() for s in stored_tensors(n, r)}
        if set(index.names) != expected:
            missing = sorted(expected - set(index.names))
            extra = sorted(set(index.names) - expected)
            raise VectorFormatError(
                f"{self.path}: shards do not match rvec.json ({len(missing)} tensors missing, e.g. {missing[:1]}; "
                f"{len(extra)} unexpected, e.g. {extra[:1]}); re-run rvec extract"
            )
        return index

    @cached_property
    def _stored(self) -> dict[str, list[TensorInfo]]:
        """Per tensor, its stored entries, checked against the manifest's encoding, shape and rank."""
        found = self.index.tensors
        return {n: check_stored(n, r, found, str(self.path)) for n, r in self.manifest["tensors"].items()}

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
    def family(self) -> dict[str, Any]:
        """The model family it was made for (:func:`rvec.vector.family.family_signature`)."""
        return self.manifest["family"]

    def encoding(self, name: str) -> Encoding:
        """How ``v[name]`` is stored: ``dense``, ``factored`` or ``sparse``."""
        return encoding_of(self.manifest["tensors"][name])

    def verify(self) -> None:
        """Check every shard's sha256 and the manifest's family against the recorded values.

        Raises:
            VectorIntegrityError: a shard is missing, unrecorded or edited; ``family`` disagrees with
                the config or the tensors.
        """
        verify_files(self.path, self.manifest, shard_glob=SHARD_GLOB)
        verify_family(self.path, self.manifest)
        self.verified = True

    @property
    def content_hash(self) -> str:
        """Identity of the vector's data: hash of its shard hashes (recorded when it was written).

        Sound once :meth:`verify` has passed. Unverified, the shards' file versions (inode, size,
        mtime, ctime) enter the hash too, so an edited shard still changes the identity (and with
        it every cache key built on it).
        """
        recorded = sorted(self.manifest["files"].values())
        if self.verified:
            return sha256_text(json.dumps(recorded))[:16]
        versions = []
        for file in self.index.files:
            st = file.stat()
            versions.append([file.name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
        return sha256_text(json.dumps({"recorded": recorded, "unverified": versions}))[:16]

    def read_delta(self, name: str, start: int, stop: int) -> np.ndarray:
        n = stop - start
        return self.read_delta_into(name, start, np.empty(n, dtype=np.float32), Workspace(max(n, 1)))

    def read_delta_into(
        self, name: str, start: int, out: np.ndarray, workspace: Workspace, *, check_finite: bool = True
    ) -> np.ndarray:
        stored = self._stored[name]
        enc = self.encoding(name)
        if enc == "dense":  # stored as float32: read straight into the buffer
            self._reader.read_into(stored[0], start, out)
        elif enc == "factored":
            fill_factored(self._reader, stored[0], stored[1], start, out, workspace)
        else:
            fill_sparse(self._reader, stored[0], stored[1], start, out, workspace)
        if check_finite:  # the block as it is read: no second pass over the data
            self._refuse_non_finite(name, out, workspace.get("vector:finite", np.bool_, out.size))
        return out

    def _refuse_non_finite(self, name: str, values: np.ndarray, scratch: np.ndarray | None = None) -> None:
        if not all_finite(values, scratch):
            raise NonFiniteError(
                f"{self.path}: tensor {name!r} holds NaN or Inf; the vector is damaged or was made to mislead: "
                "re-run the command that wrote it, or get it again from a source you trust",
                tensor=name,
            )

    def ensure_finite(self, name: str) -> None:
        """Refuse ``v[name]`` if it holds NaN or Inf, reading only what is stored: a factored
        tensor's factors (and a bound that proves ``B @ A`` cannot overflow float32, else its
        blocks), a sparse tensor's kept values, a dense tensor's blocks. For readers that expand
        the tensor many times (in-memory α switches) and check it once, here, instead.

        Raises:
            NonFiniteError: NaN or Inf in the tensor (named).
        """
        enc, stored = self.encoding(name), self._stored[name]
        if enc == "factored":
            a, b = self.factors(name)  # checked there
            rank = a.shape[0]
            peak = float(np.abs(a).max(initial=0.0)) * float(np.abs(b).max(initial=0.0)) * rank
            if peak < float(np.finfo(np.float32).max) / 2:  # every partial sum stays finite
                return
        elif enc == "sparse":
            self._refuse_non_finite(name, self._reader.read(stored[1]))
            return
        numel, ws = math.prod(self.shapes[name]), Workspace()
        for start in range(0, numel, ws.block_elements):
            self.read_delta_into(
                name, start, ws.get("finite_check", np.float32, min(ws.block_elements, numel - start)), ws
            )

    def is_zero(self, name: str) -> bool:
        """Whether ``v[name]`` is exactly zero: stored with no entries (sparse ``kept: 0``), or recorded
        with norm 0 and read back, block by block, as zeros (the manifest alone is not proof)."""
        record = self.manifest["tensors"][name]
        if self.encoding(name) == "sparse" and int(record["kept"]) == 0:
            return True
        if record.get("norm") != 0:
            return False
        numel, ws = math.prod(self.shapes[name]), Workspace()
        for start in range(0, numel, ws.block_elements):
            n = min(ws.block_elements, numel - start)
            if np.any(self.read_delta_into(name, start, ws.get("zero_check", np.float32, n), ws)):
                return False
        return True

    def read(self, name: str) -> np.ndarray:
        """The whole ``v[name]`` as float32 in its shape."""
        shape = self.shapes[name]
        return self.read_delta(name, 0, math.prod(shape)).reshape(shape)

    def factors(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(A, B)`` of a factored tensor, float32, with ``v[name] = B @ A``: A (r, in), B (out, r).

        Raises:
            VectorFormatError: ``name`` is not stored factored.
            NonFiniteError: a factor holds NaN or Inf.
        """
        if self.encoding(name) != "factored":
            raise VectorFormatError(f"{self.path}: '{name}' is stored {self.encoding(name)}, not factored")
        a_info, b_info = self._stored[name]
        a, b = self._reader.read(a_info), self._reader.read(b_info)
        self._refuse_non_finite(name, a)
        self._refuse_non_finite(name, b)
        return a, b

    def lineage_probe(self) -> dict[str, np.ndarray]:
        """The first elements of a few SFT weights (``lineage.safetensors``), what targets are checked
        against; empty for a vector written without one."""
        file = self.lineage_file
        if file is None:
            return {}
        probe = read_small_file(file, max_bytes=_MAX_LINEAGE_BYTES, dtype=F32)
        for name, values in probe.items():
            if not all_finite(values):
                raise NonFiniteError(
                    f"{file}: the lineage probe of {name!r} holds NaN or Inf; re-run the command that wrote it",
                    tensor=name,
                )
        return probe

    @property
    def lineage_file(self) -> Path | None:
        """``lineage.safetensors`` if the folder has one (refused if it is a link out of the folder)."""
        file = member(self.path, LINEAGE_FILE, listed_in=str(self.path))
        return file if file.is_file() else None

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "vector",
            "path": str(self.path),
            "hash": self.content_hash,
            "verified": self.verified,
            "sources": self.manifest.get("sources"),
        }

    def close(self) -> None:
        self._reader.close()


def read_vector(path: str | Path, *, verify: bool = True) -> ReasoningVector:
    """Open a vector folder written by ``rvec extract`` (or compress, control, pair).

    Args:
        path: the vector folder.
        verify: check every shard against the sha256 in ``rvec.json`` and the manifest's family
            against its config and tensors (streamed; remembered per file version, so a vector
            checked once is not read again until a file changes). ``False`` is ``--no-verify``.

    Raises:
        VectorFormatError: no ``rvec.json``, unreadable or malformed (:mod:`rvec.vector.manifest`),
            from a newer format version, or shards and index inconsistent with it.
        UnsafeNameError: ``rvec.json`` names a file outside the folder, or a file of the folder is a
            link out of it.
        CorruptCheckpointError: a shard's safetensors header is invalid.
        VectorIntegrityError: ``verify`` and a shard or the manifest was changed after writing.
    """
    path = Path(path)
    file = member(path, MANIFEST, listed_in=str(path))
    if not file.is_file():
        raise VectorFormatError(
            f"{path}: not an rvec vector folder (no {MANIFEST}); create one with rvec extract"
        )
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise VectorFormatError(f"{file}: invalid JSON ({err.msg}); re-run rvec extract") from err
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise VectorFormatError(
            f"{file}: invalid JSON ({err.__class__.__name__}); re-run rvec extract"
        ) from None
    manifest = validate_manifest(file, raw)
    vector = ReasoningVector(path=path, manifest=manifest)
    if verify:
        vector.verify()  # before the structure: an edited shard is named as such, not as a bad header
    vector._stored  # noqa: B018 — shards and index must match the manifest before any use
    return vector


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

    def read_delta_into(
        self, name: str, start: int, out: np.ndarray, workspace: Workspace, *, check_finite: bool = True
    ) -> np.ndarray:
        # (n,) float32 = RL − SFT, both widened first so bf16 donors subtract without rounding.
        n = out.size
        rl_dtype = self.rl.index[name].dtype
        if rl_dtype == F32:
            self.rl.read_into(name, start, out)
        else:
            to_float32(self.rl.read_into(name, start, workspace.get("rl", rl_dtype.numpy, n)), out)
        sft = self._read_sft_f32(name, start, n, workspace)
        np.subtract(out, sft, out=out)
        if check_finite and not all_finite(out, workspace.get("vector:finite", np.bool_, n)):
            raise NonFiniteError(
                f"{name}: RL − SFT is NaN or Inf ({self.label}); a donor is damaged or they are not "
                "fine-tunes of one model",
                tensor=name,
            )
        return out

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
