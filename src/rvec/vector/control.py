"""Random control vectors: a seeded Gaussian direction per tensor, rescaled to a chosen norm.

The norm-matched control answers "is it the *direction* of v that helps, or just perturbing the
weights by that much?": per tensor, ``r = g·‖v‖/‖g‖`` with ``g ~ N(0, 1)`` seeded by (seed, tensor
name), so ``‖r‖ = ‖v‖`` tensor by tensor while the direction is random. The same module builds a
control when no real donor pair exists (``relative_to``: ``‖r‖ = ρ·‖θ_model‖`` per tensor).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rvec import __version__
from rvec.atomic import atomic_dir
from rvec.checkpoint.dtypes import F32, dot
from rvec.checkpoint.reader import blocks
from rvec.checkpoint.source import Checkpoint, resolve
from rvec.checkpoint.writer import DEFAULT_MAX_SHARD_BYTES, PlannedTensor, ShardedWriter, metadata_allowance
from rvec.outputs import check_output_target, input_paths
from rvec.vector import family
from rvec.vector.artifact import FORMAT_VERSION, MANIFEST, VECTOR_PREFIX, ReasoningVector, read_vector
from rvec.vector.compat import float_shapes
from rvec.vector.extract import LINEAGE_FILE_BYTES
from rvec.vector.writing import remember_hashes, write_lineage_probe

if TYPE_CHECKING:
    import torch


def _generator(seed: int, name: str) -> torch.Generator:
    # Seed per tensor (not one stream for all), so a tensor's noise does not depend on the others.
    # torch's generator (imported here, not per command) keeps controls identical to earlier releases.
    import torch

    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def _gaussian(name: str, numel: int, seed: int) -> torch.Tensor:
    import torch

    return torch.randn(numel, generator=_generator(seed, name), dtype=torch.float32)


def _write(
    out: Path,
    *,
    shapes: dict[str, tuple[int, ...]],
    norms: dict[str, float],
    rel_norms: dict[str, float | None],
    seed: int,
    config: dict[str, Any],
    sources: dict[str, Any],
    formula: str,
    probe_source: Checkpoint | ReasoningVector | None,
    overwrite: bool,
    overwrite_foreign: bool,
) -> ReasoningVector:
    import torch

    plan = [PlannedTensor(n, F32, s) for n, s in shapes.items()]
    records: dict[str, Any] = {}
    with atomic_dir(
        out,
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        inputs=input_paths(probe_source) if probe_source is not None else (),
        needed_bytes=sum(p.nbytes for p in plan) + LINEAGE_FILE_BYTES + metadata_allowance(len(plan)),
    ) as tmp:
        writer = ShardedWriter(tmp, plan, prefix=VECTOR_PREFIX, max_shard_bytes=DEFAULT_MAX_SHARD_BYTES)
        try:
            for name, shape in shapes.items():
                numel = math.prod(shape)
                g = _gaussian(name, numel, seed)  # (numel,) float32
                g_norm = float(torch.linalg.vector_norm(g, dtype=torch.float64))
                scale = norms[name] / g_norm if g_norm > 0 else 0.0
                r = g.mul_(scale)
                writer.write(name, r.numpy())
                records[name] = {
                    "shape": list(shape),
                    "encoding": "dense",
                    "norm": float(torch.linalg.vector_norm(r, dtype=torch.float64)),
                    "rel_norm": rel_norms[name],
                    "zero_fraction": float((r == 0).double().mean()) if numel else 1.0,
                    "module": family.module_type(name),
                    "layer": family.layer_of(name),
                }
            files = writer.finish()
        except BaseException:
            writer.abort()  # the writer thread stops before the temporary folder is removed
            raise
        aux = write_lineage_probe(tmp, probe_source, shapes)
        manifest = {
            "kind": "reasoning-vector",
            "format_version": FORMAT_VERSION,
            "formula": formula,
            "control": {"kind": "random", "seed": seed},
            "dtype": "float32",
            "rvec_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "sources": sources,
            "family": family.family_fingerprint(config),
            "config": config,
            "check": None,
            "skipped_non_float": [],
            "files": {f: writer.sha256[f] for f in files},
            "aux_files": aux,
            "tensors": records,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / "README.md").write_text(
            f"---\ntags:\n- rvec\n- random-control\n---\n\n# Random control vector\n\n`{formula}`, seed {seed}.\n"
            "This is **not** a reasoning vector: it is a control with a random direction.\n"
        )
    remember_hashes(out, {**manifest["files"], **aux})  # verifying the output reads nothing again
    return read_vector(out)


def norm_matched_random(
    vector: ReasoningVector | str | Path,
    out: str | Path,
    *,
    seed: int = 0,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
) -> ReasoningVector:
    """A random vector with ``‖r[t]‖ = ‖v[t]‖`` for every tensor ``t`` of ``vector``.

    Example:
        >>> norm_matched_random("vec/", "vec-random/", seed=0)  # doctest: +SKIP
    """
    v = read_vector(vector) if isinstance(vector, (str, Path)) else vector
    norms = {n: float(rec["norm"]) for n, rec in v.manifest["tensors"].items()}
    return _write(
        Path(out),
        shapes=v.shapes,
        norms=norms,
        rel_norms={n: rec.get("rel_norm") for n, rec in v.manifest["tensors"].items()},
        seed=seed,
        config=v.config,
        sources={"matched_to": v.describe()},
        formula="r[t] = g[t]·‖v[t]‖/‖g[t]‖, g ~ N(0, I) seeded per tensor",
        probe_source=v,
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
    )


def relative_random(
    model: str | Path | Checkpoint,
    out: str | Path,
    *,
    rel_norm: float,
    seed: int = 0,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
) -> ReasoningVector:
    """A random vector for ``model``'s family with ``‖r[t]‖ = rel_norm·‖θ[t]‖`` per tensor.

    Used where no real donor pair exists for a model (the offline demo): clearly a control.
    """
    ckpt = model if isinstance(model, Checkpoint) else resolve(model)
    # Before reading the whole model for its norms: a refused -o costs nothing.
    check_output_target(
        Path(out), inputs=input_paths(ckpt), overwrite=overwrite, overwrite_foreign=overwrite_foreign
    )
    shapes = float_shapes(ckpt)
    norms = {}
    for name in shapes:
        sq = 0.0
        for start, stop in blocks(ckpt.index[name].numel):
            values = ckpt.read_float32(name, start, stop).astype(np.float64)
            sq += dot(values, values)
        norms[name] = rel_norm * math.sqrt(sq)
    return _write(
        Path(out),
        shapes=shapes,
        norms=norms,
        rel_norms=dict.fromkeys(shapes, rel_norm),
        seed=seed,
        config=ckpt.config,
        sources={"relative_to": ckpt.describe(hash_files=False), "rel_norm": rel_norm},
        formula=f"r[t] = g[t]·{rel_norm:g}·‖θ[t]‖/‖g[t]‖, g ~ N(0, I) seeded per tensor",
        probe_source=ckpt,
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
    )
