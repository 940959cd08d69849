"""``v = θ_RL − θ_SFT``: streamed tensor by tensor (large ones in flat blocks), float32 arithmetic,
written as sharded safetensors with a manifest and a model card."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rvec import __version__
from rvec.atomic import atomic_dir
from rvec.checkpoint import hashing
from rvec.checkpoint.dtypes import F32, all_finite, dot
from rvec.checkpoint.reader import DEFAULT_BLOCK_ELEMENTS, Workspace, blocks
from rvec.checkpoint.source import Checkpoint, resolve
from rvec.checkpoint.writer import DEFAULT_MAX_SHARD_BYTES, PlannedTensor, ShardedWriter, metadata_allowance
from rvec.errors import IncompatibleError, NonFiniteError
from rvec.outputs import input_paths
from rvec.vector import family
from rvec.vector.artifact import (
    FORMAT_VERSION,
    LINEAGE_FILE,
    MANIFEST,
    VECTOR_PREFIX,
    DonorPair,
    ReasoningVector,
    read_vector,
)
from rvec.vector.cards import vector_card
from rvec.vector.compat import PROBE_ELEMENTS, PROBE_TENSORS, CheckReport, check_donors, float_shapes
from rvec.vector.writing import remember_hashes, write_lineage_probe

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes done, bytes total) as work advances."""

__all__ = ["LINEAGE_FILE", "LINEAGE_FILE_BYTES", "ProgressCallback", "extract"]

LINEAGE_FILE_BYTES = PROBE_TENSORS * PROBE_ELEMENTS * 4 + 64 * 1024  # float32 values + header, at most


@dataclass
class _TensorStats:
    sum_sq_delta: float = 0.0
    sum_sq_sft: float = 0.0
    zeros: int = 0

    def update(self, delta: np.ndarray, sft: np.ndarray) -> None:
        # float32 dot per block (≈1e-6 relative error, ~9× faster than a float64 norm), summed
        # across blocks in float64 so the error does not grow with the tensor's size.
        self.sum_sq_delta += dot(delta, delta)
        self.sum_sq_sft += dot(sft, sft)
        self.zeros += delta.size - int(np.count_nonzero(delta))

    def record(self, shape: tuple[int, ...], name: str, num_layers: int) -> dict[str, Any]:
        norm = math.sqrt(self.sum_sq_delta)
        base = math.sqrt(self.sum_sq_sft)
        numel = math.prod(shape)
        return {
            "shape": list(shape),
            "encoding": "dense",
            "norm": norm,
            "rel_norm": norm / base if base > 0 else (0.0 if norm == 0 else math.inf),
            "zero_fraction": self.zeros / numel if numel else 1.0,
            "module": family.module_type(name),
            "layer": family.layer_of(name),
        }


def extract(
    sft: str | Path | Checkpoint,
    rl: str | Path | Checkpoint,
    out: str | Path,
    *,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
    skip_lineage: bool = False,
    allow_pickle: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    on_progress: ProgressCallback | None = None,
) -> ReasoningVector:
    """Compute ``v = θ_RL − θ_SFT`` in float32 and write it to the vector folder ``out``.

    Args:
        sft: SFT donor (folder, hub id[@rev], or :class:`Checkpoint`).
        rl: RL donor, trained from the SFT checkpoint.
        out: output folder; created atomically (absent until complete).
        overwrite: replace ``out`` if it exists and rvec wrote it (it has an ``rvec.json``).
        overwrite_foreign: replace ``out`` even if rvec did not write it. Neither flag allows an
            ``out`` that is the working folder, an ancestor of it, home, a filesystem root, or a
            folder holding a donor.
        skip_lineage: combine donors even if the lineage probe says they are unrelated.
        allow_pickle: accept pickled ``.bin`` donors.
        max_shard_bytes: shard size limit of the output.
        block_elements: elements per streamed block (bounds peak memory).
        on_progress: progress callback ``(bytes done, bytes total)``.

    Returns:
        The written :class:`ReasoningVector`.

    Raises:
        IncompatibleError: the donors differ in architecture, tensor names or shapes, or are unrelated.
        NonFiniteError: a donor holds NaN/Inf (nothing is written).
        OutputExistsError: ``out`` exists and ``overwrite`` is false (``ForeignOutputError``: rvec
            did not write it and ``overwrite_foreign`` is false).
        UnsafeOutputError: ``out`` is a protected place or holds a donor (see above).
        OutputError: the filesystem refused the output (read-only, full, permission…).

    Example:
        >>> extract("org/model-sft", "org/model-grpo", "vec/")  # doctest: +SKIP
    """
    sft_ckpt = sft if isinstance(sft, Checkpoint) else resolve(sft, allow_pickle=allow_pickle)
    rl_ckpt = rl if isinstance(rl, Checkpoint) else resolve(rl, allow_pickle=allow_pickle)
    report = check_donors(sft_ckpt, rl_ckpt, lineage=True, lineage_required=not skip_lineage)
    if report.problems:
        raise IncompatibleError(f"donors are incompatible: {report.problems[0]}", problems=report.problems)
    for w in report.warnings:
        logger.warning(w)

    num_layers = int(family.family_fingerprint(sft_ckpt.config).get("num_hidden_layers") or 0)
    floats = [t for t in sft_ckpt.index if t.dtype.is_floating_point]
    skipped = [t.name for t in sft_ckpt.index if not t.dtype.is_floating_point]
    plan = [PlannedTensor(t.name, F32, t.shape) for t in floats]
    total = sum(p.nbytes for p in plan)
    records: dict[str, Any] = {}
    done = 0
    # The manifest records the donors' sha256; hash them beside the loop, not before it.
    donor_hashes = hashing.BackgroundHashes([*sft_ckpt.weight_files, *rl_ckpt.weight_files])
    with atomic_dir(
        Path(out),
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        inputs=input_paths(sft_ckpt, rl_ckpt),
        needed_bytes=total + LINEAGE_FILE_BYTES + metadata_allowance(len(plan)),
    ) as tmp:
        writer = ShardedWriter(tmp, plan, prefix=VECTOR_PREFIX, max_shard_bytes=max_shard_bytes)
        pair = DonorPair(sft=sft_ckpt, rl=rl_ckpt)
        ws = Workspace(block_elements)
        try:
            for info in floats:
                stats = _TensorStats()
                for start, stop in blocks(info.numel, block_elements):
                    n = stop - start
                    # (n,) float32 RL − SFT; the SFT block, widened, stays in the workspace for its norm.
                    delta = pair.read_delta_into(info.name, start, ws.get("delta", np.float32, n), ws)
                    base = pair.sft_block_f32(info.name, n, ws)
                    if not all_finite(delta, ws.get("finite", np.bool_, n)):
                        _raise_non_finite(info.name, sft_ckpt, rl_ckpt)
                    stats.update(delta, base)
                    writer.write(info.name, delta)
                    done += n * 4
                    if on_progress:
                        on_progress(done, total)
                records[info.name] = stats.record(info.shape, info.name, num_layers)
            files = writer.finish()
        except BaseException:
            writer.abort()
            raise
        aux = write_lineage_probe(tmp, sft_ckpt, float_shapes(sft_ckpt))
        donor_hashes.wait()  # remembered now: the manifest's describe() gets them without reading
        manifest = _manifest(sft_ckpt, rl_ckpt, report, records, skipped, writer.sha256, files)
        manifest["aux_files"] = aux
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=True) + "\n")
        (tmp / "README.md").write_text(vector_card(manifest))
    remember_hashes(Path(out), {**manifest["files"], **aux})  # verifying the output reads nothing again
    logger.info("wrote vector %s (%d tensors)", out, len(records))
    return read_vector(out)


def _raise_non_finite(name: str, sft: Checkpoint, rl: Checkpoint) -> None:
    for role, ckpt in (("SFT", sft), ("RL", rl)):
        if not all_finite(ckpt.read_float32(name, 0, ckpt.index[name].numel)):
            raise NonFiniteError(
                f"{name}: the {role} donor {ckpt.display} contains NaN or Inf values; the checkpoint is damaged",
                tensor=name,
            )
    raise NonFiniteError(
        f"{name}: RL − SFT overflows float32; the donors are not fine-tunes of one model", tensor=name
    )


def _manifest(
    sft: Checkpoint,
    rl: Checkpoint,
    report: CheckReport,
    records: dict[str, Any],
    skipped: list[str],
    hashes: dict[str, str],
    files: list[str],
) -> dict[str, Any]:
    return {
        "kind": "reasoning-vector",
        "format_version": FORMAT_VERSION,
        "formula": "v = θ_RL − θ_SFT (float32)",
        "dtype": "float32",
        "rvec_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sources": {"sft": sft.describe(), "rl": rl.describe()},
        "family": family.family_fingerprint(sft.config),
        "config": sft.config,
        "check": report.to_dict(),
        "skipped_non_float": skipped,
        "files": {f: hashes[f] for f in files},
        "tensors": records,
    }
