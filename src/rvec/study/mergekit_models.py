"""A study model made from a mergekit YAML: ``models: {paper-merge: {mergekit: merges/paper.yml}}``.

The YAML is run once by :func:`rvec.vector.mergekit.apply_mergekit` (as ``rvec apply --mergekit``
would) into ``RUN/models/<name>-<key>/`` and reused on resume; the key is made of the YAML's text,
the DARE seed and the weights fingerprint of every model it names, so an edited YAML or a changed
model gives another folder. A model the YAML names may be a study model defined earlier under
``models:`` (made first); a relative path is read from the YAML's folder first, then the working
folder (mergekit reads the working folder only).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from rvec.checkpoint.hashing import sha256_text
from rvec.defaults import DEFAULT_SEED
from rvec.errors import ConfigError, RvecError
from rvec.study.validation import _looks_local, study_path

__all__ = [
    "MergekitModel",
    "mergekit_errors",
    "mergekit_model_folder",
    "mergekit_references",
    "resolve_reference",
]


class MergekitModel(BaseModel):
    """A model the run makes from a mergekit YAML (``rvec apply --mergekit``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    mergekit: str
    """The mergekit YAML (a relative path is read from the study file's folder first)."""
    seed: int = DEFAULT_SEED
    """DARE's mask seed (mergekit's masks are unseeded); ``rvec apply --mergekit``'s default."""


def _job(model: MergekitModel) -> Any:
    from rvec.vector.mergekit import load_mergekit

    return load_mergekit(model.mergekit, seed=model.seed)


def mergekit_references(model: MergekitModel) -> list[str]:
    """The model references of the YAML (base or target first), as written.

    Raises:
        ConfigError: the YAML cannot be run by rvec (every problem listed).
    """
    job = _job(model)
    return list(dict.fromkeys([job.target, *(ref for pair in job.pairs for ref in pair)]))


def resolve_reference(ref: str, yaml_file: Path, models: Collection[str]) -> str:
    """A YAML reference as the study resolves it: a study model's name, else a path read from the
    YAML's folder first (a hub id stays as written)."""
    if ref in models:
        return ref
    return str(study_path(ref, yaml_file.parent)) if _looks_local(ref) or "/" in ref else ref


def mergekit_errors(models: dict[str, Any], base: Path) -> list[str]:
    """Every problem of the ``mergekit:`` entries of ``models:``: a YAML that is missing or that rvec
    cannot run (each of its problems), and local models it names that do not exist or are study
    models defined later."""
    from rvec.checkpoint.locate import local_path

    errors: list[str] = []
    earlier: list[str] = []
    for name, entry in models.items():
        text = entry.get("mergekit") if isinstance(entry, dict) else None
        where = f"models.{name}.mergekit"
        if isinstance(text, str):
            file = study_path(text, base)
            seed = entry.get("seed", DEFAULT_SEED)
            if not file.is_file():
                errors.append(f"{where}: {text} is not a file; give the path of a mergekit YAML")
                earlier.append(str(name))
                continue
            try:
                refs = mergekit_references(MergekitModel(mergekit=str(file), seed=int(seed)))
            except ConfigError as err:
                errors += [f"{where}: {e}" for e in err.errors]
            except (RvecError, OSError, ValueError) as err:
                errors.append(f"{where}: {err}")
            else:
                for ref in refs:
                    if ref in models and ref not in earlier:
                        errors.append(f"{where}: {ref} is defined later or is {name} itself; define it first")
                    elif ref not in models and _looks_local(resolved := resolve_reference(ref, file, models)):
                        try:
                            if not local_path(resolved).exists():
                                errors.append(f"{where}: model {ref} does not exist")
                        except RvecError as err:
                            errors.append(f"{where}: {err}")
        earlier.append(str(name))
    return errors


def mergekit_model_key(model: MergekitModel, folders: dict[str, str]) -> str:
    """A content identity of the recipe: the YAML's text, the seed and every named model's weights."""
    from rvec.checkpoint.source import resolve

    parts = {
        "yaml": Path(model.mergekit).read_text(),
        "seed": model.seed,
        "models": {ref: resolve(folder).fingerprint() for ref, folder in sorted(folders.items())},
    }
    return sha256_text(json.dumps(parts, sort_keys=True))[:12]


def mergekit_model_folder(
    name: str,
    model: MergekitModel,
    models_dir: Path,
    *,
    local: Callable[[str], str],
    study_models: Collection[str],
) -> Path:
    """The folder of model ``name``, made now unless a complete one of the same recipe exists.

    Args:
        name: the model's name under ``models:``.
        model: its recipe.
        models_dir: ``RUN/models``.
        local: maps a source (or an earlier study model's name) to a local folder.
        study_models: the names under ``models:``.

    Raises:
        ConfigError: the YAML cannot be run by rvec.
        IncompatibleError, SourceNotFoundError…: as :func:`rvec.vector.mergekit.apply_mergekit`.
    """
    from rvec.vector.mergekit import apply_mergekit

    job = _job(model)
    file = Path(model.mergekit)
    folders = {ref: local(resolve_reference(ref, file, study_models)) for ref in mergekit_references(model)}
    job = replace(
        job, target=folders[job.target], pairs=tuple((folders[s], folders[r]) for s, r in job.pairs)
    )
    folder = models_dir / f"{name}-{mergekit_model_key(model, folders)}"
    if (folder / "rvec.json").is_file() and (folder / "config.json").is_file():
        return folder  # apply writes the folder whole or not at all, so a present one is complete
    apply_mergekit(job, folder, overwrite=True)  # only ever a folder rvec wrote for this recipe
    return folder
