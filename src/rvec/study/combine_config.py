"""The study file's ``vectors:``, ``combine:`` and ``rows:`` sections, and their checks.

- ``vectors: {v1: path, …}`` names vector folders besides the study's ``v``; each is evaluated as
  ``target + 1·v1`` and can be an input of a combination.
- ``combine: {name: {method, vectors, …}}`` merges named vectors (``v`` included) with a merge
  method under mergekit's parameter names (``weight``/``weights``, ``density``/``densities``,
  ``lambda``, ``normalize``, ``rescale``, ``gamma``, ``epsilon``) and an optional ``seed`` (DARE's
  masks; default the study's). Each is computed in memory and evaluated as ``target + TIES(v, v1)``.
- ``rows: {name: {model, vs}}`` evaluates other models as rows of the report (kind ``other``), each
  compared with the row ``vs`` names, e.g. the SFT donor + v1 against the SFT donor.

:func:`combine_errors` checks all three whole, one line per problem, before anything loads: names,
folders, methods, every parameter against the method's list, list lengths, references.

Example::

    vector: ../pairs/a/vector
    vectors: {v1: ../pairs/b/vector}
    combine:
      ta:   {method: task_arithmetic, vectors: [v, v1]}
      ties: {method: ties, vectors: [v, v1], densities: [0.5, 0.5]}
      dare: {method: dare_linear, vectors: [v, v1], density: 0.5, seed: 0}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

from rvec.errors import RvecError
from rvec.study.validation import study_path

__all__ = ["V_LABEL", "Combination", "ExtraRow", "combine_errors"]

V_LABEL = "v"
"""The study's own vector (``vector:``, the donors', or a random stand-in), by the name combinations use."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_LISTS = {"weights": "weight", "densities": "density"}  # plural list → mergekit's per-vector name


class Combination(BaseModel):
    """One combination: a merge method, the named vectors it merges (in order) and its parameters.

    Keys besides ``method``, ``vectors``, ``weights``, ``densities`` and ``seed`` are the method's
    parameters by mergekit's names (``density: 0.5`` applies to every vector).
    """

    model_config = ConfigDict(frozen=True, extra="allow")
    method: str
    vectors: list[str] = Field(min_length=1)
    weights: list[FiniteFloat] | None = None
    """One weight per vector, in ``vectors`` order."""
    densities: list[FiniteFloat] | None = None
    """One density per vector, in ``vectors`` order."""
    seed: int | None = None
    """DARE's mask seed (default: the study's ``seed``); part of the combination's identity."""

    @property
    def parameters(self) -> dict[str, Any]:
        """The method's other parameters, as written."""
        return dict(self.model_extra or {})


class ExtraRow(BaseModel):
    """A model evaluated as a row of its own (a source, or a name under ``models:``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str
    vs: str | None = None
    """The row it is compared with in the report's combinations table (a variant or row name)."""


def combine_errors(raw: dict[str, Any], base: Path) -> list[str]:
    """Every problem of ``vectors:``, ``combine:`` and ``rows:`` (fields of the wrong type are
    pydantic's to report and skipped here)."""
    vectors = raw.get("vectors") if isinstance(raw.get("vectors"), dict) else {}
    combine = raw.get("combine") if isinstance(raw.get("combine"), dict) else {}
    rows = raw.get("rows") if isinstance(raw.get("rows"), dict) else {}
    models = raw.get("models") if isinstance(raw.get("models"), dict) else {}
    errors = _vector_errors(vectors, base)
    known = list(dict.fromkeys([V_LABEL, *(str(n) for n in vectors)]))
    for name, combo in combine.items():
        if not _NAME.match(str(name)):
            errors.append(f"combine.{name}: name it with a letter, then letters, digits, '.', '_' or '-'")
        if isinstance(combo, dict):
            errors += [f"combine.{name}{e}" for e in _combination_errors(combo, known)]
    for name, row in rows.items():
        if isinstance(row, dict):
            errors += [f"rows.{name}{e}" for e in _row_errors(str(name), row, models)]
    return errors


def _vector_errors(vectors: dict[str, Any], base: Path) -> list[str]:
    errors = []
    for name, folder in vectors.items():
        where = f"vectors.{name}"
        if name == V_LABEL or str(name).startswith("random") or not _NAME.match(str(name)):
            errors.append(
                f"{where}: name it with a letter, then letters, digits, '.', '_' or '-' "
                f"(not '{V_LABEL}' or random…, the study's own vectors)"
            )
        if isinstance(folder, str) and not (study_path(folder, base) / "rvec.json").is_file():
            errors.append(
                f"{where}: {folder} is not a vector folder (no rvec.json); give a folder rvec wrote"
            )
    return errors


def _combination_errors(combo: dict[str, Any], known: list[str]) -> list[str]:
    """Problems of one combination, each as ``.field: message`` (prefixed by the caller)."""
    from rvec.vector.merge import merge_spec
    from rvec.vector.methods.registry import get_method

    errors = []
    names = combo.get("vectors") if isinstance(combo.get("vectors"), list) else []
    for vector in names:
        if vector not in known:
            errors.append(f".vectors: {vector!r} is not a vector of the study; known: {', '.join(known)}")
    if len(set(map(str, names))) != len(names):
        errors.append(".vectors: a vector is listed twice; list each once (give it a weight instead)")
    method = combo.get("method")
    if not isinstance(method, str):
        return errors  # pydantic reports a missing or non-string method
    try:
        get_method(method)
    except RvecError as err:
        return [*errors, f".method: {err}"]
    n = max(1, len(names))
    checks: list[tuple[str, dict[str, Any]]] = [
        (key, {plural: value}) for key, plural in (("weights", "weights"), ("densities", "densities"))
        if isinstance(value := combo.get(key), list)
    ]  # fmt: skip
    fixed = {"method", "vectors", "seed", *_LISTS}
    checks += [(key, {"params": {key: value}}) for key, value in combo.items() if key not in fixed]
    for key, kwargs in checks:
        try:
            merge_spec(method, n, **kwargs)
        except RvecError as err:
            errors.append(f".{key}: {err}")
    for plural, single in _LISTS.items():
        if plural in combo and single in combo:
            errors.append(f".{plural}: give {plural} (one per vector) or {single} (one for all), not both")
    return errors


def _row_errors(name: str, row: dict[str, Any], models: dict[str, Any]) -> list[str]:
    from rvec.checkpoint.locate import local_path
    from rvec.study.validation import _looks_local

    errors = []
    model = row.get("model")
    if isinstance(model, str) and model not in models and _looks_local(model):
        try:
            exists = local_path(model).exists()
        except RvecError as err:
            errors.append(f".model: {err}")
        else:
            if not exists:
                errors.append(f".model: {model} does not exist")
    if row.get("vs") == name:
        errors.append(".vs: a row is not compared with itself; name another row")
    return errors
