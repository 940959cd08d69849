"""``v = θ_RL − θ_SFT``: streamed tensor by tensor (large ones in flat blocks), float32 arithmetic,
written as sharded safetensors with a manifest and a model card."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rvec.checkpoint import hashing
from rvec.checkpoint.dtypes import all_finite, dot
from rvec.checkpoint.index import TensorInfo
from rvec.checkpoint.reader import DEFAULT_BLOCK_ELEMENTS, Workspace, blocks
from rvec.checkpoint.source import Checkpoint, resolve
from rvec.checkpoint.writer import DEFAULT_MAX_SHARD_BYTES
from rvec.errors import IncompatibleError, NonFiniteError
from rvec.outputs import input_paths
from rvec.progress import ProgressCallback
from rvec.vector.artifact import DonorPair, ReasoningVector
from rvec.vector.compat import check_donors
from rvec.vector.writing import Blocks, TensorPlan, write_vector

logger = logging.getLogger(__name__)

__all__ = ["extract"]


def extract(
    sft: str | Path | Checkpoint,
    rl: str | Path | Checkpoint,
    out: str | Path,
    *,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
    lineage: bool = True,
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
        lineage: refuse donors the lineage probe finds unrelated (False: combine them anyway).
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
    report = check_donors(sft_ckpt, rl_ckpt, lineage=True, lineage_required=lineage)
    if report.problems:
        raise IncompatibleError(f"donors are incompatible: {report.problems[0]}", problems=report.problems)
    for w in report.warnings:
        logger.warning(w)

    floats = [t for t in sft_ckpt.index if t.dtype.is_floating_point]
    total = sum(t.numel * 4 for t in floats)
    done = 0
    pair = DonorPair(sft=sft_ckpt, rl=rl_ckpt)
    ws = Workspace(block_elements)

    def delta_blocks(info: TensorInfo, base_sq: list[float]) -> Iterator[np.ndarray]:
        nonlocal done
        for start, stop in blocks(info.numel, block_elements):
            n = stop - start
            # (n,) float32 RL − SFT; the SFT block, widened, stays in the workspace for its norm.
            # Not checked here: the writer checks every block and names the damaged donor.
            delta = pair.read_delta_into(
                info.name, start, ws.get("delta", np.float32, n), ws, check_finite=False
            )
            base = pair.sft_block_f32(info.name, n, ws)
            base_sq[0] += dot(base, base)  # float32 per block, float64 across: as the writer sums ‖v‖
            yield delta
            done += n * 4
            if on_progress:
                on_progress(done, total)

    def tensors() -> Iterator[tuple[str, Blocks, dict[str, Any]]]:
        for info in floats:
            base_sq = [0.0]
            yield (
                info.name,
                Blocks(
                    delta_blocks(info, base_sq),
                    after=lambda base_sq=base_sq: {"base_norm": math.sqrt(base_sq[0])},
                    non_finite=lambda name=info.name: _raise_non_finite(name, sft_ckpt, rl_ckpt),
                ),
                {},
            )

    # The manifest records the donors' sha256; hash them beside the loop, not before it.
    donor_hashes = hashing.BackgroundHashes([*sft_ckpt.weight_files, *rl_ckpt.weight_files])

    def sources(records: Any) -> dict[str, Any]:
        donor_hashes.wait()  # remembered now: describe() gets them without reading
        return {"sources": {"sft": sft_ckpt.describe(), "rl": rl_ckpt.describe()}}

    vector = write_vector(
        out,
        [TensorPlan(t.name, t.shape, "dense") for t in floats],
        tensors(),
        manifest={
            "formula": "v = θ_RL − θ_SFT (float32)",
            "config": sft_ckpt.config,
            "check": report.to_dict(),
            "skipped_non_float": [t.name for t in sft_ckpt.index if not t.dtype.is_floating_point],
        },
        summarise=sources,
        lineage=sft_ckpt,
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        inputs=input_paths(sft_ckpt, rl_ckpt),
        max_shard_bytes=max_shard_bytes,
    )
    logger.info("wrote vector %s (%d tensors)", out, len(floats))
    return vector


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
