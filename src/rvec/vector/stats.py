"""Vector statistics: per-tensor, per-layer and per-module norms, cosine between vectors, a plot."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rvec.checkpoint import dtypes
from rvec.checkpoint.reader import blocks
from rvec.plotting import new_figure, save_png
from rvec.vector.artifact import ReasoningVector, read_vector


@dataclass
class VectorStats:
    """Norms of one vector, aggregated as root-sum-of-squares."""

    total_norm: float
    per_tensor: dict[str, dict[str, Any]]
    per_layer: dict[int, float]
    per_module: dict[str, float]
    per_layer_module: dict[int, dict[str, float]]
    encodings: dict[str, int]  # tensors per storage encoding (dense, factored, sparse)

    @property
    def storage(self) -> str:
        """``"30 factored, 21 dense"``: how the tensors are stored."""
        return ", ".join(f"{n} {enc}" for enc, n in sorted(self.encodings.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_norm": self.total_norm,
            "encodings": self.encodings,
            "per_layer": {str(k): v for k, v in sorted(self.per_layer.items())},
            "per_module": self.per_module,
            "per_layer_module": {str(k): v for k, v in sorted(self.per_layer_module.items())},
            "per_tensor": self.per_tensor,
        }


def vector_stats(vector: ReasoningVector) -> VectorStats:
    """Aggregate the per-tensor norms recorded in ``rvec.json`` (no tensor data is read).

    Every encoding records its exact norm when written (factored: from r×r Gram matrices), so
    dense, factored and sparse vectors aggregate alike.
    """
    layer_sq: dict[int, float] = defaultdict(float)
    module_sq: dict[str, float] = defaultdict(float)
    layer_module_sq: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    total_sq = 0.0
    encodings: dict[str, int] = defaultdict(int)
    for name, rec in vector.manifest["tensors"].items():
        encodings[vector.encoding(name)] += 1
        sq = rec["norm"] ** 2
        total_sq += sq
        module_sq[rec["module"]] += sq
        if rec["layer"] is not None:
            layer_sq[rec["layer"]] += sq
            layer_module_sq[rec["layer"]][rec["module"]] += sq
    return VectorStats(
        total_norm=math.sqrt(total_sq),
        per_tensor=vector.manifest["tensors"],
        per_layer={k: math.sqrt(v) for k, v in layer_sq.items()},
        per_module={k: math.sqrt(v) for k, v in module_sq.items()},
        per_layer_module={k: {m: math.sqrt(s) for m, s in v.items()} for k, v in layer_module_sq.items()},
        encodings=dict(encodings),
    )


def cosine(a: ReasoningVector, b: ReasoningVector) -> dict[str, Any]:
    """Cosine similarity of two vectors over their shared tensors: overall, per layer, per tensor.

    Streams both vectors block by block (float64 accumulation); tensors present in only one vector
    or with different shapes are listed, not compared.
    """
    shared = [n for n in a.shapes if n in b.shapes and a.shapes[n] == b.shapes[n]]
    dot_t: dict[str, float] = {}
    na_t: dict[str, float] = {}
    nb_t: dict[str, float] = {}
    for name in shared:
        xy = na = nb = 0.0
        for start, stop in blocks(math.prod(a.shapes[name])):
            x = a.read_delta(name, start, stop).astype(np.float64)
            y = b.read_delta(name, start, stop).astype(np.float64)
            xy += dtypes.dot(x, y)
            na += dtypes.dot(x, x)
            nb += dtypes.dot(y, y)
        dot_t[name], na_t[name], nb_t[name] = xy, na, nb
    per_layer: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for name in shared:
        layer = a.manifest["tensors"][name]["layer"]
        if layer is not None:
            acc = per_layer[layer]
            acc[0] += dot_t[name]
            acc[1] += na_t[name]
            acc[2] += nb_t[name]
    return {
        "overall": _cos(sum(dot_t.values()), sum(na_t.values()), sum(nb_t.values())),
        "per_layer": {str(k): _cos(*v) for k, v in sorted(per_layer.items())},
        "per_tensor": {n: _cos(dot_t[n], na_t[n], nb_t[n]) for n in shared},
        "only_in_first": sorted(set(a.shapes) - set(shared)),
        "only_in_second": sorted(set(b.shapes) - set(shared)),
    }


def _cos(dot: float, na: float, nb: float) -> float:
    return dot / math.sqrt(na * nb) if na > 0 and nb > 0 else 0.0


def plot_norms(panels: Sequence[tuple[str, Mapping[str, Any]]], path: str | Path) -> Path:
    """PNG: per-layer ‖v‖, the layer total and one line per module type, one panel per vector.

    Args:
        panels (Sequence[tuple[str, Mapping]]): ``(label, VectorStats.to_dict())`` per vector: uses
            ``per_layer`` ``{layer: norm}``, ``per_layer_module`` ``{layer: {module: norm}}`` and
            ``total_norm``; layer keys may be strings of integers.
        path (str | Path): the PNG to write (atomically).

    Returns:
        Path: ``path``.
    """
    from matplotlib.ticker import MaxNLocator

    fig, axes = new_figure(7.2, 3.6 * len(panels), rows=len(panels))
    for ax, (label, stats) in zip(axes, panels, strict=True):
        per_layer = {int(k): float(v) for k, v in stats.get("per_layer", {}).items()}
        per_module = {int(k): dict(v) for k, v in stats.get("per_layer_module", {}).items()}
        layers = sorted(per_layer)
        ax.plot(layers, [per_layer[k] for k in layers], color="black", linewidth=2, label="layer total")
        for module in sorted({m for v in per_module.values() for m in v}):
            # NaN leaves a gap where a layer has no such module, instead of a false zero.
            values = [float(per_module.get(k, {}).get(module, math.nan)) for k in layers]
            ax.plot(layers, values, marker="o", markersize=3, label=module)
        total = stats.get("total_norm")
        title = f"{label}: per-layer ‖v‖" if label else "per-layer ‖v‖"
        ax.set_title(title + (f" (total ‖v‖ = {float(total):.4g})" if total is not None else ""), fontsize=9)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("‖v‖ (Frobenius)")
        ax.legend(fontsize=7)
    return save_png(fig, path)


def stats_report(
    vector: str | Path,
    *,
    compare: str | Path | None = None,
    plot: str | Path | None = None,
    verify: bool = True,
) -> tuple[VectorStats, dict[str, Any] | None]:
    """``rvec stats``: the vector's norms, its cosine with ``compare``, and the norms plot.

    Raises:
        OutputExistsError, UnsafeOutputError: ``plot`` would replace an input or a folder.
        VectorIntegrityError: a vector fails verification.
    """
    from rvec.outputs import check_output_file

    if plot:
        check_output_file(Path(plot), inputs=[Path(vector), *([Path(compare)] if compare else [])])
    vec = read_vector(vector, verify=verify)
    stats = vector_stats(vec)
    other = read_vector(compare, verify=verify) if compare else None
    if plot:
        panels = [(str(vector), stats.to_dict())] + (
            [(str(compare), vector_stats(other).to_dict())] if other else []
        )
        plot_norms(panels, plot)
    return stats, cosine(vec, other) if other else None
