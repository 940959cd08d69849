"""Random control vectors: a seeded Gaussian direction per tensor, rescaled to a chosen norm.

The norm-matched control answers "is it the *direction* of v that helps, or just perturbing the
weights by that much?": per tensor, ``r = g·‖v‖/‖g‖`` with ``g ~ N(0, 1)`` seeded by (seed, tensor
name), so ``‖r‖ = ‖v‖`` tensor by tensor while the direction is random. The same module builds a
control when no real donor pair exists (``relative_to``: ``‖r‖ = ρ·‖θ_model‖`` per tensor).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rvec.checkpoint.dtypes import dot
from rvec.checkpoint.reader import blocks
from rvec.checkpoint.source import Checkpoint, resolve
from rvec.defaults import DEFAULT_SEED
from rvec.errors import InvalidArgumentError
from rvec.outputs import check_output_target, input_paths
from rvec.vector.artifact import ReasoningVector, read_vector
from rvec.vector.compat import float_shapes
from rvec.vector.writing import Dense, TensorPlan, write_vector

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

    def tensors() -> Iterator[tuple[str, Dense, dict[str, Any]]]:
        for name, shape in shapes.items():
            g = _gaussian(name, math.prod(shape), seed)  # (numel,) float32
            g_norm = float(torch.linalg.vector_norm(g, dtype=torch.float64))
            scale = norms[name] / g_norm if g_norm > 0 else 0.0
            # rel_norm is the one the control was asked for (‖v‖/‖θ‖ of the matched vector, or ρ).
            yield name, Dense(g.mul_(scale).numpy().reshape(shape)), {"rel_norm": rel_norms[name]}

    return write_vector(
        out,
        [TensorPlan(n, s, "dense") for n, s in shapes.items()],
        tensors(),
        manifest={
            "formula": formula,
            "control": {"kind": "random", "seed": seed},
            "sources": sources,
            "config": config,
        },
        lineage=probe_source,
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        inputs=input_paths(probe_source) if probe_source is not None else (),
    )


def norm_matched_random(
    vector: ReasoningVector | str | Path,
    out: str | Path,
    *,
    seed: int = DEFAULT_SEED,
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
    seed: int = DEFAULT_SEED,
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


def random_control(
    vector: ReasoningVector | str | Path | None,
    out: str | Path,
    *,
    like: str | Path | Checkpoint | None = None,
    rel_norm: float | None = None,
    seed: int = DEFAULT_SEED,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
) -> ReasoningVector:
    """``rvec control``: :func:`norm_matched_random` to ``vector``, or :func:`relative_random` for
    ``like`` with ``rel_norm``.

    Raises:
        InvalidArgumentError: neither or both of a vector and ``like``, or ``like`` without ``rel_norm``.
    """
    if vector is not None and like is None:
        return norm_matched_random(
            vector, out, seed=seed, overwrite=overwrite, overwrite_foreign=overwrite_foreign
        )
    if like is not None and vector is None and rel_norm is not None:
        return relative_random(
            like, out, rel_norm=rel_norm, seed=seed, overwrite=overwrite, overwrite_foreign=overwrite_foreign
        )
    raise InvalidArgumentError("pass a VECTOR to match, or --like MODEL with --rel-norm (not both)")
