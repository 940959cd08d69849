"""The checks of a study file that pydantic cannot express: names against the registries (tasks,
presets, perturbations), exclusive choices (the source of v), files that must exist, made models
defined before use. Each returns every problem it finds, as ``field: what is wrong and the fix``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rvec.errors import RvecError

__all__ = ["inside_working_folder", "plain_folder_name", "semantic_errors", "study_path"]


# A name that becomes a folder: no separator, not hidden, not "." or ".." (fullmatch: "$" would let a
# trailing newline through).
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _strings(raw: dict[str, Any], key: str, default: list[str] | None = None) -> list[str]:
    """The string items of list field ``key`` (pydantic reports a field of the wrong type)."""
    value = raw.get(key, default)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def study_path(text: str, base: Path) -> Path:
    """A study's relative path, read from the study file's folder first, then the working folder."""
    path = Path(text).expanduser()
    if path.is_absolute():
        return path
    return base / path if (base / path).exists() else path


def _looks_local(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~", "pkg:")) or source.endswith(".gguf")


def semantic_errors(raw: dict[str, Any], base: Path) -> list[str]:
    """Checks pydantic cannot express: names against registries, exclusive choices, files.

    They read the raw mapping, not the validated model, so they run even when some fields failed
    type validation: one run reports every problem of the file. A field of the wrong type is
    skipped here (pydantic has reported it).
    """
    models = raw.get("models") if isinstance(raw.get("models"), dict) else {}
    return [
        *_placement_errors(raw),
        *_vector_source_errors(raw, base),
        *_made_model_errors(models, base),
        *_model_source_errors(raw, models),
        *_control_errors(raw),
        *_preset_errors(raw),
        *_task_errors(raw),
        *_alpha_errors(raw),
    ]


def _placement_errors(raw: dict[str, Any]) -> list[str]:
    """Where the run folder goes: ``runs/<name>`` or ``output:``, both inside the working folder.

    A study file may come from anyone; its ``name`` and ``output:`` must not place the run folder
    (cells, study.yaml, vectors) elsewhere on the machine. Only ``-o`` on the command line, which
    the user typed, may; it is not part of the file and not checked here.
    """
    errors = []
    name = raw.get("name")
    if isinstance(name, str) and not plain_folder_name(name):
        errors.append(
            f"name: {name[:60]!r} is not a plain folder name (letters, digits, '.', '_', '-'; it names "
            "runs/<name>); rename it, or pass -o"
        )
    output = raw.get("output")
    if isinstance(output, str) and not inside_working_folder(output):
        errors.append(
            f"output: {output[:80]!r} leaves the working folder (absolute, '~' or '..'); give a relative "
            "path inside it, or pass -o to place the run elsewhere"
        )
    return errors


def plain_folder_name(name: str) -> bool:
    """Whether ``name`` is one folder name rvec may create: letters, digits, ``.``, ``_``, ``-``,
    starting with a letter or digit (so never ``.``, ``..``, hidden, or a path), at most 100 characters."""
    return len(name) <= 100 and _MODEL_NAME.fullmatch(name) is not None


def inside_working_folder(text: str) -> bool:
    """Whether the relative path ``text`` stays inside the working folder, read as written: not
    absolute, not ``~``, no ``..`` part, no control character, and not the working folder itself."""
    path = Path(text)
    return (
        bool(text.strip())
        and not path.is_absolute()
        and not text.startswith("~")
        and ".." not in path.parts
        and path.parts not in ((), (".",))
        and not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text)
    )


def _vector_source_errors(raw: dict[str, Any], base: Path) -> list[str]:
    """Exactly one source of v (donors and/or a vector folder, or a random stand-in)."""
    errors = []
    has = {k: raw.get(k) is not None for k in ("donors", "vector", "random_in_place_of_v")}
    if has["random_in_place_of_v"] and (has["donors"] or has["vector"]):
        errors.append("random_in_place_of_v: a stand-in for v goes without donors and vector; drop one")
    elif not any(has.values()):
        errors.append("donors / vector / random_in_place_of_v: give a source of v")
    vector = raw.get("vector")
    if isinstance(vector, str) and not study_path(vector, base).is_dir():
        errors.append(f"vector: {vector} is not a folder")
    return errors


def _model_source_errors(raw: dict[str, Any], models: dict[str, Any]) -> list[str]:
    """Targets and donors given as local paths must exist (hub ids are resolved at run time)."""
    from rvec.checkpoint.locate import local_path

    errors = []
    donors = raw.get("donors") if isinstance(raw.get("donors"), dict) else {}
    for key, source in [*(("targets", t) for t in _strings(raw, "targets")), *donors.items()]:
        if not isinstance(source, str) or source in models or not _looks_local(source):
            continue
        where = key if key == "targets" else f"donors.{key}"
        try:
            path = local_path(source)
        except RvecError as err:
            errors.append(f"{where}: {err}")
            continue
        if not path.exists():
            errors.append(f"{where}: {source} does not exist")
    return errors


def _control_errors(raw: dict[str, Any]) -> list[str]:
    controls = raw.get("controls") if isinstance(raw.get("controls"), dict) else {}
    errors = []
    if controls.get("rl_donor_think") and raw.get("donors") is None:
        errors.append("controls.rl_donor_think: needs donors (the RL donor is the model evaluated)")
    if controls.get("donor_rows") and raw.get("donors") is None:
        errors.append("controls.donor_rows: needs donors (the donors are the models evaluated)")
    return errors


def _preset_errors(raw: dict[str, Any]) -> list[str]:
    """A known preset, and conditions it defines."""
    from rvec.eval.presets import get_preset

    if not isinstance(raw.get("preset", "paper"), str):
        return []
    try:
        preset = get_preset(raw.get("preset", "paper"))
    except RvecError as err:
        return [f"preset: {err}"]
    return [
        f"conditions: '{cond}' is not a condition of preset '{preset.name}' ({', '.join(preset.conditions)})"
        for cond in _strings(raw, "conditions", ["plain", "think"])
        if cond not in preset.conditions
    ]


def _task_errors(raw: dict[str, Any]) -> list[str]:
    """Known tasks, code execution allowed where HumanEval runs, perturbations and limits that parse."""
    from rvec.eval.perturb import parse_perturbations
    from rvec.eval.plan import check_code_execution
    from rvec.eval.tasks.registry import expand_task_names

    errors: list[str] = []
    known: list[str] = []
    for key in ("tasks", "adversarial"):
        for name in _strings(raw, key):
            try:
                expand_task_names(name)
                known.append(name)
            except RvecError as err:
                errors.append(f"{key}: {err}")
    try:
        check_code_execution(known, allowed=raw.get("allow_code_execution") is True)
    except RvecError as err:
        errors.append(
            f"tasks: {str(err).replace('pass --allow-code-execution', 'set allow_code_execution: true')}"
        )
    for spec in _strings(raw, "perturbations"):
        try:
            parse_perturbations(spec)
        except RvecError as err:
            errors.append(f"perturbations: {err}")
    limits = raw.get("task_limits") if isinstance(raw.get("task_limits"), dict) else {}
    for name in limits:
        try:
            expand_task_names(str(name))
        except RvecError as err:
            errors.append(f"task_limits: {err}")
    return errors


def _alpha_errors(raw: dict[str, Any]) -> list[str]:
    alphas = raw.get("alphas")
    numbers = [a for a in alphas if isinstance(a, (int, float))] if isinstance(alphas, list) else []
    return ["alphas: values repeat"] if len(set(numbers)) != len(numbers) else []


def _made_model_errors(models: dict[str, Any], base: Path) -> list[str]:
    """Names usable as a folder and unlike a path; bases that exist or name an earlier model; vector
    folders that exist; one α per vector."""
    from rvec.checkpoint.locate import local_path

    errors: list[str] = []
    earlier: list[str] = []
    for name, made in models.items():
        where = f"models.{name}"
        if not _MODEL_NAME.fullmatch(str(name)) or str(name).endswith(".gguf"):
            errors.append(
                f"{where}: name it with letters, digits, '.', '_' or '-' (it becomes a folder name)"
            )
        if not isinstance(made, dict):
            continue  # pydantic reports the type
        source = made.get("base")
        if isinstance(source, str) and source not in earlier and _looks_local(source):
            try:
                path = local_path(source)
            except RvecError as err:
                errors.append(f"{where}.base: {err}")
            else:
                if not path.exists():
                    errors.append(f"{where}.base: {source} does not exist")
        elif source in models and source not in earlier:
            errors.append(f"{where}.base: {source} is defined later or is {name} itself; define it first")
        add = made.get("add") if isinstance(made.get("add"), list) else []
        for folder in add:
            if isinstance(folder, str) and not study_path(folder, base).is_dir():
                errors.append(f"{where}.add: {folder} is not a folder")
        alphas = made.get("alphas")
        if isinstance(alphas, list) and len(alphas) != len(add):
            errors.append(
                f"{where}.alphas: {len(alphas)} values for {len(add)} vectors; give one α per vector"
            )
        earlier.append(str(name))
    return errors
