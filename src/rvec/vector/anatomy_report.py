"""The ``rvec anatomy -o`` folder: ``anatomy.json`` (every figure, the definitions and settings),
``anatomy.md`` (tables), heat maps (layer × module class) and the per-layer norms plot, written
atomically; and the table columns the Markdown and the terminal share.

```
anatomy/
  anatomy.json        per tensor, per layer, per module class, per layer × class, overall
  anatomy.md          the same as tables, with the definitions
  norms.png           per-layer ‖v‖, total and by module class
  rel_norm.png        heat map of ‖v‖/‖θ‖                       (with --like or recorded rel_norm)
  moved.png           heat map of the moved fraction              (with --like)
  rank.png            heat maps of the effective and 90%-energy rank (SVD)
  overlap.png         heat maps of the left and right overlaps   (with --like, SVD)
  cosine.png          heat map of the cosine with --compare       (with --compare)
  rvec.json           marks the folder as rvec's output (--overwrite may replace it)
```
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rvec import __version__
from rvec.atomic import atomic_dir, write_json, write_text
from rvec.vector.anatomy_metrics import AGGREGATION, DEFINITIONS, Anatomy
from rvec.vector.anatomy_plots import HeatMap, plot_heatmaps, plot_norms

__all__ = ["COLUMNS", "markdown", "table_rows", "write_anatomy"]

Row = Mapping[str, Any]


def _num(fmt: str) -> Callable[[Row, str], str]:
    return lambda row, key: "–" if row.get(key) is None else format(row[key], fmt)


def _pct(row: Row, key: str) -> str:
    return "–" if row.get(key) is None else f"{100 * row[key]:.2f}%"


def _overlap(side: str) -> Callable[[Row, str], str]:
    def cell(row: Row, key: str) -> str:
        value, baseline = row.get(f"overlap_{side}"), row.get(f"random_{side}")
        return "–" if value is None else f"{value:.3f} ({baseline:.3f})"

    return cell


COLUMNS: tuple[tuple[str, str, Callable[[Row, str], str]], ...] = (
    ("norm", "‖v‖", _num(".4g")),
    ("rel_norm", "‖v‖/‖θ‖", _num(".3g")),
    ("nonzero_fraction", "non-zero", _pct),
    ("moved_fraction", "moved", _pct),
    ("effective_rank", "eff. rank", _num(".1f")),
    ("energy_rank", "90% rank", _num(".1f")),
    ("max_rank", "max rank", _num(".0f")),
    ("overlap_left", "overlap L (random)", _overlap("left")),
    ("overlap_right", "overlap R (random)", _overlap("right")),
    ("cosine", "cosine", _num(".4f")),
)
"""(key in ``anatomy.json``, header, cell formatter) of every table column."""


def table_rows(groups: Mapping[str, Row]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows (one per group, first cell its label) of the columns that hold any figure.

    Args:
        groups (Mapping[str, Mapping]): label → a record of ``anatomy.json`` (aggregate or tensor).

    Returns:
        tuple[list[str], list[list[str]]]: the headers (without the label column) and the rows.
    """
    shown = [c for c in COLUMNS if any(g.get(c[0]) is not None for g in groups.values())]
    rows = [[label] + [fmt(g, key) for key, _, fmt in shown] for label, g in groups.items()]
    return [header for _, header, _ in shown], rows


def markdown(data: Mapping[str, Any]) -> str:
    """``anatomy.md``: settings, tables coarse to fine (overall, module class, layer, tensor), definitions.

    Args:
        data (Mapping): ``Anatomy.to_dict()``.

    Returns:
        str: the Markdown text.
    """
    vector = data["vector"]["path"]
    lines = [f"# Anatomy of `{vector}`", ""]
    if data["like"]:
        lines.append(f"- θ (--like): `{data['like']['source']}`")
    if data["compare"]:
        lines.append(f"- compared with: `{data['compare']['path']}`")
    settings = data["settings"]
    lines += [
        f"- top-k: {settings['top_k']}; SVD metrics: {'yes' if settings['svd'] else 'no (--no-svd)'}",
        f"- relative norms against: {settings['rel_norm_reference']}",
        *[f"- warning: {w}" for w in data["warnings"]],
        "",
    ]
    sections = (
        ("Overall", {"all tensors": data["overall"]}),
        ("Per module class", data["per_module"]),
        ("Per layer", data["per_layer"]),
        ("Per tensor", data["per_tensor"]),
    )
    for title, groups in sections:
        headers, rows = table_rows(groups)
        lines += [f"## {title}", "", _md_table(["", *headers], rows, code=title == "Per tensor"), ""]
    lines += ["## Definitions", ""]
    lines += [f"- **{k}**: {text}; aggregated: {AGGREGATION.get(k, '—')}" for k, text in DEFINITIONS.items()]
    return "\n".join(lines) + "\n"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, code: bool) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for label, *cells in rows:
        out.append("| " + " | ".join([f"`{label}`" if code else label, *cells]) + " |")
    return "\n".join(out)


def _heatmaps(data: Mapping[str, Any]) -> dict[str, list[HeatMap]]:
    """File name → panels: every heat map whose figure was measured (none without layers)."""
    per = data["per_layer_module"]
    layers = sorted(int(k) for k in per)
    if not layers:
        return {}
    order = list(data["per_module"])
    classes = [m for m in order if any(m in per[str(layer)] for layer in layers)]

    def panel(key: str, title: str, **style: Any) -> HeatMap | None:
        values = np.array(
            [[_value(per[str(layer)].get(m, {}), key) for m in classes] for layer in layers], dtype=np.float64
        )
        keep = [j for j in range(len(classes)) if not np.all(np.isnan(values[:, j]))]
        if not keep:  # the figure was not measured (no --like, --no-svd, no --compare)
            return None
        return HeatMap(title, layers, [classes[j] for j in keep], values[:, keep], **style)

    overall = data["overall"]
    wanted = {
        "rel_norm.png": [panel("rel_norm", "‖v‖/‖θ‖", fmt=".2g")],
        "moved.png": [panel("moved_fraction", "moved fraction", vmin=0.0, vmax=1.0)],
        "rank.png": [
            panel("effective_rank", "effective rank", fmt=".0f"),
            panel("energy_rank", "90% rank", fmt=".0f"),
        ],
        "overlap.png": [
            panel(
                "overlap_left", f"left overlap (random {_fmt(overall['random_left'])})", vmin=0.0, vmax=1.0
            ),
            panel(
                "overlap_right", f"right overlap (random {_fmt(overall['random_right'])})", vmin=0.0, vmax=1.0
            ),
        ],
        "cosine.png": [panel("cosine", "cosine with --compare", cmap="RdBu", vmin=-1.0, vmax=1.0)],
    }
    return {name: [p for p in ps if p is not None] for name, ps in wanted.items() if any(ps)}


def _value(row: Mapping[str, Any], key: str) -> float:
    value = row.get(key)
    return math.nan if value is None else float(value)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def write_anatomy(
    result: Anatomy,
    out: Path,
    *,
    inputs: Sequence[Path] = (),
    overwrite: bool = False,
    overwrite_foreign: bool = False,
) -> list[Path]:
    """Write the anatomy folder (see the module docstring); it appears only when complete.

    Args:
        result (Anatomy): the measured figures.
        out (Path): the folder to create or replace.
        inputs (Sequence[Path], default ()): the paths the anatomy read; ``out`` may not be or hold one.
        overwrite (bool, default False): replace ``out`` if rvec wrote it.
        overwrite_foreign (bool, default False): replace ``out`` even if rvec did not write it.

    Returns:
        The files written, under their final paths.

    Raises:
        OutputExistsError, ForeignOutputError, UnsafeOutputError: ``out`` may not be written.
        OutputError: the filesystem refused.
    """
    data = result.to_dict()
    vector = data["vector"]["path"]
    names: list[str] = []
    with atomic_dir(
        out, overwrite=overwrite, overwrite_foreign=overwrite_foreign, inputs=inputs, needed_bytes=1 << 24
    ) as tmp:
        write_json(tmp / "anatomy.json", data, indent=2)
        write_text(tmp / "anatomy.md", markdown(data))
        plot_norms([(vector, result.norms_panel())], tmp / "norms.png")
        names += ["anatomy.json", "anatomy.md", "norms.png"]
        for name, panels in _heatmaps(data).items():
            plot_heatmaps(
                panels, tmp / name, title=f"{vector}: {name.removesuffix('.png').replace('_', ' ')}"
            )
            names.append(name)
        # rvec.json marks the folder as rvec's output, so a later --overwrite may replace it.
        marker = {
            "kind": "rvec-anatomy",
            "rvec_version": __version__,
            "vector": data["vector"],
            "files": names,
        }
        write_json(tmp / "rvec.json", marker, indent=2)
    return [out / n for n in [*names, "rvec.json"]]
