"""Models a study makes before it evaluates anything: ``base + Σ αᵢ·vᵢ`` (the study's ``models:``),
written once per recipe into ``RUN/models/`` by :func:`rvec.vector.apply.apply`.

This is how a study starts from shipped vectors instead of full checkpoints: a pair made by
``rvec pair`` ships its SFT delta and v (megabytes), and the study rebuilds the SFT donor as
``init + sft-delta`` and the RL donor as ``sft + v`` on the user's machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from pathlib import Path

from rvec.checkpoint.hashing import sha256_text
from rvec.checkpoint.source import resolve
from rvec.study.config import MadeModel
from rvec.study.mergekit_models import MergekitModel, mergekit_model_folder
from rvec.vector.artifact import read_vector

__all__ = ["made_model_folder", "made_model_key"]


def made_model_key(made: MadeModel, base_folder: str) -> str:
    """A content identity of the recipe: the base's weights, each vector's content and its α.

    A changed vector or base gives another key, hence another folder: a resumed run never reuses a
    model made from different inputs.
    """
    parts = {
        "base": resolve(base_folder).fingerprint(),
        "add": [
            [read_vector(folder).content_hash, float(a)] for folder, a in zip(made.add, made.alphas_or_ones)
        ],
    }
    return sha256_text(json.dumps(parts, sort_keys=True))[:12]


def made_model_folder(
    name: str,
    made: MadeModel | MergekitModel,
    models_dir: Path,
    *,
    local: Callable[[str], str],
    study_models: Collection[str] = (),
) -> Path:
    """The folder of model ``name``, made now unless a complete one of the same recipe exists.

    Args:
        name: the model's name under ``models:``.
        made: its recipe (a mergekit YAML is run by :mod:`rvec.study.mergekit_models`).
        models_dir: ``RUN/models``.
        local: maps a source (or an earlier model's name) to a local folder the engine can read.
        study_models: the names under ``models:`` (a mergekit YAML may name them).

    Raises:
        IncompatibleError, NonFiniteError, IntegrityError: as :func:`rvec.vector.apply.apply`.
    """
    from rvec.vector.apply import apply

    if isinstance(made, MergekitModel):
        return mergekit_model_folder(name, made, models_dir, local=local, study_models=study_models)

    base = local(made.base)
    folder = models_dir / f"{name}-{made_model_key(made, base)}"
    if (folder / "rvec.json").is_file() and (folder / "config.json").is_file():
        return folder  # apply writes the folder whole or not at all, so a present one is complete
    apply(
        list(made.add),
        base,
        folder,
        alphas=made.alphas_or_ones,
        overwrite=True,  # only ever a folder rvec wrote for an older run of this recipe
    )
    return folder
