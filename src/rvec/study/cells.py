"""The cell cache of a run folder: one ``cells/<key>.json`` per finished cell, addressed by content.

A cell's key is the sha256 of everything that changes its result (model fingerprint, vector, α,
preset, condition, task, data, backend settings…), so a rerun finds what it already computed and
an interrupted run resumes where it stopped. Files are written atomically: a cell on disk is whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rvec import __version__
from rvec.atomic import write_json
from rvec.eval.data import DataSource, docs_digest
from rvec.eval.presets import Preset
from rvec.eval.tasks.registry import get_task
from rvec.eval.types import Doc
from rvec.model.state import BackendSpec, HashedDelta
from rvec.study.config import StudyConfig
from rvec.study.plan import PlannedCell
from rvec.study.types import CellResult, Variant

__all__ = ["CellKeys", "cell_from_dict", "cell_key", "cell_to_dict", "load_cell", "save_cell"]

logger = logging.getLogger(__name__)


def cell_key(parts: dict[str, Any]) -> str:
    """Content address of a cell: sha256 of everything that changes its result."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def save_cell(cells_dir: Path, cell: CellResult, samples: list[dict[str, Any]]) -> None:
    # Atomic: a crash never leaves a half-written cell that would be trusted on resume.
    write_json(
        cells_dir / f"{cell.cache_key}.json",
        {"cell": cell_to_dict(cell), "samples": samples},
        indent=1,
        default=str,
    )


def cell_to_dict(cell: CellResult) -> dict[str, Any]:
    return {**asdict(cell), "variant": cell.variant.to_dict()}


def cell_from_dict(data: dict[str, Any]) -> CellResult:
    data = dict(data)
    data["variant"] = Variant(**data["variant"])
    return CellResult(**data)


def load_cell(cells_dir: Path, key: str) -> CellResult | None:
    file = cells_dir / f"{key}.json"
    if not file.is_file():
        return None
    try:
        return cell_from_dict(json.loads(file.read_text())["cell"])
    except (json.JSONDecodeError, KeyError, TypeError):
        logger.warning("ignoring unreadable cached cell %s", file.name)
        return None


class CellKeys:
    """The content address of each planned cell: everything that changes its result.

    Args:
        config (StudyConfig): The study (limits, seed).
        preset (Preset): The resolved preset.
        source (DataSource): Where the tasks' items come from (their content enters the key).
        backend (BackendSpec): The study's backend (what its settings add to the key).
    """

    def __init__(self, config: StudyConfig, preset: Preset, source: DataSource, backend: BackendSpec) -> None:
        self.config = config
        self.preset = preset
        self.source = source
        self.backend_key = backend.cache_identity(config.backend)
        self._data: dict[str, str] = {}
        self._all: dict[str, list[Doc]] = {}

    def data_digest(self, task: str, items: tuple[str, ...] | None = None) -> str:
        """A hash of the task's items as the study evaluates them: its limit applied, or exactly
        ``items`` (doc ids of a split), in the task's order."""
        if items is not None:
            wanted = set(items)
            return docs_digest([d for d in self.docs(task) if d.doc_id in wanted])
        if task not in self._data:
            self._data[task] = docs_digest(
                get_task(task).docs(self.source, limit=self.config.limit_for(task))
            )
        return self._data[task]

    def docs(self, task: str) -> list[Doc]:
        """Every item of ``task``, read once."""
        if task not in self._all:
            self._all[task] = get_task(task).docs(self.source)
        return self._all[task]

    def key(self, cell: PlannedCell, model_fp: str, vectors: Mapping[str, HashedDelta]) -> str:
        """The cell's key, for the model whose weights have fingerprint ``model_fp``."""
        v = cell.variant
        return cell_key(
            {
                "model": model_fp,
                "vector": vectors[v.vector].content_hash if v.vector else None,
                "alpha": v.alpha,
                "preset": self.preset.to_dict(),
                "condition": cell.condition,
                "task": cell.base_task,
                "perturbation": cell.perturbation,
                "data": self.data_digest(cell.base_task, cell.items),
                "limit": self.config.limit_for(cell.base_task) if cell.items is None else None,
                "seed": self.config.seed,
                **self.backend_key,
                "rvec": __version__,
                # only when a part of v is applied: keys of whole-vector cells stay those of older runs
                **({"selection": v.selection} if v.selection is not None else {}),
            }
        )
