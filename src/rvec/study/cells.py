"""The cell cache of a run folder: one ``cells/<key>.json`` per finished cell, addressed by content.

A cell's key is the sha256 of everything that changes its result (model fingerprint, vector, α,
preset, condition, task, data, backend settings…), so a rerun finds what it already computed and
an interrupted run resumes where it stopped. Files are written atomically: a cell on disk is whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rvec.study.types import CellResult, Variant

__all__ = ["cell_from_dict", "cell_key", "cell_to_dict", "load_cell", "save_cell"]

logger = logging.getLogger(__name__)


def cell_key(parts: dict[str, Any]) -> str:
    """Content address of a cell: sha256 of everything that changes its result."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)  # a crash never leaves a half-written cell that would be trusted on resume


def save_cell(cells_dir: Path, cell: CellResult, samples: list[dict[str, Any]]) -> None:
    _write_json(cells_dir / f"{cell.cache_key}.json", {"cell": cell_to_dict(cell), "samples": samples})


def cell_to_dict(cell: CellResult) -> dict[str, Any]:
    return {**asdict(cell), "variant": asdict(cell.variant)}


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
