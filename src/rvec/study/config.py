"""``study.yaml``: one typed, frozen configuration for a whole study, validated before any work.

Every problem — unknown keys, wrong types, unknown task names, conditions the preset does not
define, contradictory vector sources — is collected and raised at once in one :class:`ConfigError`.

Example ``study.yaml``::

    name: qwen2.5-math-1.5b
    donors: {sft: michaelbzhu/Qwen2.5-Math-1.5B-GSM8K-SFT, rl: michaelbzhu/Qwen2.5-Math-1.5B-GSM8K-GRPO}
    targets: [Qwen/Qwen2.5-Math-1.5B-Instruct]
    alphas: [1.0]
    controls: {subtraction: true, random_seeds: [0], alpha_sweep: [0.5, 1.5]}
    conditions: [plain, think]
    tasks: [gsm8k, humaneval, sciq, bbh]
    adversarial: [gsm-plus, gsm-symbolic]
    perturbations: [distractor, typo:0.05]
    preset: paper
    limit: 200
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, PositiveInt, ValidationError

from rvec.errors import ConfigError, RvecError
from rvec.model.registry import BACKENDS, BackendSettingsField, get_backend, setting_error_message
from rvec.model.settings import HFSettings

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Donors(BaseModel):
    """The two checkpoints ``v = θ_RL − θ_SFT`` is extracted from."""

    model_config = _FROZEN
    sft: str
    rl: str


class MadeModel(BaseModel):
    """A model made inside the run: ``base`` plus each vector of ``add`` times its α (``rvec apply``).

    Lets a study start from shipped vectors instead of full checkpoints, e.g. the SFT donor as
    ``{base: INIT, add: [pair/sft-delta]}`` and the RL donor as ``{base: sft, add: [pair/vector]}``.
    """

    model_config = _FROZEN
    base: str
    """A model source, or the name of a model defined earlier under ``models``."""
    add: list[str] = Field(min_length=1)
    """Vector folders (relative paths are read from the study file's folder first)."""
    alphas: list[FiniteFloat] | None = None
    """One α per vector of ``add`` (default: 1 each)."""

    @property
    def alphas_or_ones(self) -> list[float]:
        """The α of each vector of ``add``: as given, else 1 each."""
        return list(self.alphas) if self.alphas else [1.0] * len(self.add)


class Controls(BaseModel):
    """Controls evaluated beside ``target + α·v``."""

    model_config = _FROZEN
    subtraction: bool = True
    """``target − α·v`` for the first α (the paper's ablation)."""
    random_seeds: list[int] = Field(default_factory=lambda: [0])
    """One norm-matched random vector per seed, applied at the first α."""
    alpha_sweep: list[FiniteFloat] = Field(default_factory=list)
    """Extra α values of v (the curve in the report also includes 0 and ``alphas``)."""
    rl_donor_think: bool | None = None
    """Evaluate the RL donor under ``think`` (the paper's "G+T" row); default: yes when ``donors`` are given."""
    donor_rows: bool = False
    """Also evaluate the SFT donor and the RL donor under every condition (rows "SFT donor", "RL
    donor"); the report then compares RL with SFT: is the pair a reasoning pair on these tasks?"""


class StudyConfig(BaseModel):
    """A whole study. See the module docstring for an example."""

    model_config = _FROZEN
    name: str
    title: str | None = None
    description: str | None = None
    models: dict[str, MadeModel] = Field(default_factory=dict)
    """Models made in the run folder before anything is evaluated; their names can be used as
    ``targets``, ``donors`` and as another model's ``base``."""
    donors: Donors | None = None
    vector: str | None = None
    """An existing vector folder: v itself. With ``donors`` too, v is read from here (not extracted)
    and the donors are evaluated as rows only."""
    random_in_place_of_v: FiniteFloat | None = Field(None, gt=0)
    """No real donor pair: use a random control with this per-tensor relative norm as "v" (labelled)."""
    targets: list[str] = Field(min_length=1)
    alphas: list[FiniteFloat] = Field(default_factory=lambda: [1.0], min_length=1)
    controls: Controls = Field(default_factory=Controls)
    conditions: list[str] = Field(default_factory=lambda: ["plain", "think"], min_length=1)
    tasks: list[str] = Field(min_length=1)
    adversarial: list[str] = Field(default_factory=list)
    """Adversarial task names (``gsm-plus``, ``gsm-plus:<type>``, ``gsm-symbolic``); each is reported beside its clean items."""
    perturbations: list[str] = Field(default_factory=list)
    """Programmatic perturbations applied to every task in ``tasks`` (``distractor``, ``hint``, ``shuffle``, ``typo:0.05``…)."""
    preset: str = "paper"
    max_new_tokens: int | None = Field(None, ge=1)
    """Override the preset's token budget for every task (recorded; changes the cache key)."""
    limit: int | None = Field(None, ge=1)
    """Items per task (the first N; BBH: per subtask)."""
    task_limits: dict[str, PositiveInt] = Field(default_factory=dict)
    """Items for named tasks instead of ``limit``, e.g. ``{arith: 200}``; a family name (``bbh``)
    covers its subtasks."""
    seed: int = 1234
    bootstrap_resamples: int = Field(10_000, ge=1000)
    allow_code_execution: bool = False
    data_dir: str | None = None
    backend: BackendSettingsField = Field(default_factory=HFSettings)
    """Engine and its options: ``name`` (a registered backend, default ``hf``) and that backend's
    settings (:mod:`rvec.model.settings`), the same ones ``rvec eval`` takes as flags."""
    output: str | None = None

    def limit_for(self, task: str) -> int | None:
        """Items of ``task``: its ``task_limits`` entry (or its family's: ``bbh``), else ``limit``."""
        return self.task_limits.get(task, self.task_limits.get(task.split(":")[0], self.limit))


def _pydantic_errors(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        if loc[:1] == ["backend"] and e["type"] == "unknown_backend":
            name = e["input"].get("name") if isinstance(e["input"], dict) else e["input"]
            out.append(f"backend.name: unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
            continue
        if loc[:1] == ["backend"] and len(loc) > 2 and loc[1] in BACKENDS:
            # pydantic names the union member it tried; the user wrote backend.<key>
            out.append(f"{'.'.join([loc[0], *loc[2:]])}: {_backend_message(e, loc[1])}")
            continue
        where = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            out.append(f"{where}: unknown key")
        elif e["type"] == "missing":
            out.append(f"{where}: required")
        else:
            out.append(f"{where}: {e['msg']}")
    return out


def _backend_message(error: Any, backend: str) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"  # the same words as every other unknown key of a study
    return setting_error_message(error, get_backend(backend))


def _strings(raw: dict[str, Any], key: str, default: list[str] | None = None) -> list[str]:
    """The string items of list field ``key`` (pydantic reports a field of the wrong type)."""
    value = raw.get(key, default)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _local_path(text: str, base: Path) -> Path:
    """A study's relative path, read from the study file's folder first, then the working folder."""
    path = Path(text).expanduser()
    if path.is_absolute():
        return path
    return base / path if (base / path).exists() else path


def _looks_local(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~", "pkg:")) or source.endswith(".gguf")


def _semantic_errors(raw: dict[str, Any], base: Path) -> list[str]:
    """Checks pydantic cannot express: names against registries, exclusive choices, files.

    They read the raw mapping, not the validated model, so they run even when some fields failed
    type validation: one run reports every problem of the file. A field of the wrong type is
    skipped here (pydantic has reported it).
    """
    from rvec.checkpoint.source import package_path
    from rvec.eval.perturb import parse_perturbations
    from rvec.eval.plan import check_code_execution
    from rvec.eval.presets import get_preset
    from rvec.eval.tasks.registry import expand_task_names

    errors: list[str] = []
    has = {k: raw.get(k) is not None for k in ("donors", "vector", "random_in_place_of_v")}
    if has["random_in_place_of_v"] and (has["donors"] or has["vector"]):
        errors.append("random_in_place_of_v: a stand-in for v goes without donors and vector; drop one")
    elif not any(has.values()):
        errors.append("donors / vector / random_in_place_of_v: give a source of v")
    vector = raw.get("vector")
    if isinstance(vector, str) and not _local_path(vector, base).is_dir():
        errors.append(f"vector: {vector} is not a folder")
    models = raw.get("models") if isinstance(raw.get("models"), dict) else {}
    errors += _made_model_errors(models, base)
    donors = raw.get("donors") if isinstance(raw.get("donors"), dict) else {}
    for key, source in [*(("targets", t) for t in _strings(raw, "targets")), *donors.items()]:
        if not isinstance(source, str) or source in models or not _looks_local(source):
            continue
        where = key if key == "targets" else f"donors.{key}"
        try:
            path = package_path(source) if source.startswith("pkg:") else Path(source).expanduser()
        except RvecError as err:
            errors.append(f"{where}: {err}")
            continue
        if not path.exists():
            errors.append(f"{where}: {source} does not exist")
    controls = raw.get("controls") if isinstance(raw.get("controls"), dict) else {}
    if controls.get("rl_donor_think") and raw.get("donors") is None:
        errors.append("controls.rl_donor_think: needs donors (the RL donor is the model evaluated)")
    if controls.get("donor_rows") and raw.get("donors") is None:
        errors.append("controls.donor_rows: needs donors (the donors are the models evaluated)")
    preset = None
    if isinstance(raw.get("preset", "paper"), str):
        try:
            preset = get_preset(raw.get("preset", "paper"))
        except RvecError as err:
            errors.append(f"preset: {err}")
    if preset is not None:
        for cond in _strings(raw, "conditions", ["plain", "think"]):
            if cond not in preset.conditions:
                errors.append(
                    f"conditions: '{cond}' is not a condition of preset '{preset.name}' ({', '.join(preset.conditions)})"
                )
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
    alphas = raw.get("alphas")
    numbers = [a for a in alphas if isinstance(a, (int, float))] if isinstance(alphas, list) else []
    if len(set(numbers)) != len(numbers):
        errors.append("alphas: values repeat")
    return errors


_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _made_model_errors(models: dict[str, Any], base: Path) -> list[str]:
    """Names usable as a folder and unlike a path; bases that exist or name an earlier model; vector
    folders that exist; one α per vector."""
    from rvec.checkpoint.source import package_path

    errors: list[str] = []
    earlier: list[str] = []
    for name, made in models.items():
        where = f"models.{name}"
        if not _MODEL_NAME.match(str(name)) or str(name).endswith(".gguf"):
            errors.append(
                f"{where}: name it with letters, digits, '.', '_' or '-' (it becomes a folder name)"
            )
        if not isinstance(made, dict):
            continue  # pydantic reports the type
        source = made.get("base")
        if isinstance(source, str) and source not in earlier and _looks_local(source):
            try:
                path = package_path(source) if source.startswith("pkg:") else Path(source).expanduser()
            except RvecError as err:
                errors.append(f"{where}.base: {err}")
            else:
                if not path.exists():
                    errors.append(f"{where}.base: {source} does not exist")
        elif source in models and source not in earlier:
            errors.append(f"{where}.base: {source} is defined later or is {name} itself; define it first")
        add = made.get("add") if isinstance(made.get("add"), list) else []
        for folder in add:
            if isinstance(folder, str) and not _local_path(folder, base).is_dir():
                errors.append(f"{where}.add: {folder} is not a folder")
        alphas = made.get("alphas")
        if isinstance(alphas, list) and len(alphas) != len(add):
            errors.append(
                f"{where}.alphas: {len(alphas)} values for {len(add)} vectors; give one α per vector"
            )
        earlier.append(str(name))
    return errors


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate ``study.yaml``; raise one :class:`ConfigError` listing every problem.

    Raises:
        ConfigError: unreadable YAML, unknown keys, wrong types, or invalid names (all listed).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(
            ["no such file; check the path (shipped studies are in studies/)"], source=str(path)
        ) from err
    except yaml.YAMLError as err:
        raise ConfigError([f"invalid YAML: {err}".replace("\n", " ")], source=str(path)) from err
    return parse_study(raw, source=str(path), base=path.parent)


def parse_study(raw: Any, *, source: str = "study", base: Path = Path(".")) -> StudyConfig:
    """Validate a study given as a dict (see :func:`load_study`); ``base`` is the study file's
    folder, against which a relative ``vector:`` path is read (then the working folder)."""
    if not isinstance(raw, dict):
        raise ConfigError(["expected a mapping of keys at the top level"], source=source)
    errors: list[str] = []
    config: StudyConfig | None = None
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as err:
        errors += _pydantic_errors(err)
    errors += [e for e in _semantic_errors(raw, base) if e not in errors]
    if errors or config is None:
        raise ConfigError(errors, source=source)
    # Opened where they were validated, whatever the working folder.
    if config.vector is not None:
        config = config.model_copy(update={"vector": str(_local_path(config.vector, base).resolve())})
    if config.models:
        made = {
            name: m.model_copy(update={"add": [str(_local_path(a, base).resolve()) for a in m.add]})
            for name, m in config.models.items()
        }
        config = config.model_copy(update={"models": made})
    return config
