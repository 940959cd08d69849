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

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rvec.errors import ConfigError, RvecError
from rvec.model.registry import BACKENDS, BackendSettingsField, get_backend, setting_error_message
from rvec.model.settings import HFSettings

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Donors(BaseModel):
    """The two checkpoints ``v = θ_RL − θ_SFT`` is extracted from."""

    model_config = _FROZEN
    sft: str
    rl: str


class Controls(BaseModel):
    """Controls evaluated beside ``target + α·v``."""

    model_config = _FROZEN
    subtraction: bool = True
    """``target − α·v`` for the first α (the paper's ablation)."""
    random_seeds: list[int] = Field(default_factory=lambda: [0])
    """One norm-matched random vector per seed, applied at the first α."""
    alpha_sweep: list[float] = Field(default_factory=list)
    """Extra α values of v (the curve in the report also includes 0 and ``alphas``)."""
    rl_donor_think: bool | None = None
    """Evaluate the RL donor under ``think`` (the paper's "G+T" row); default: yes when ``donors`` are given."""


class StudyConfig(BaseModel):
    """A whole study. See the module docstring for an example."""

    model_config = _FROZEN
    name: str
    title: str | None = None
    description: str | None = None
    donors: Donors | None = None
    vector: str | None = None
    """An existing vector folder instead of ``donors``."""
    random_in_place_of_v: float | None = None
    """No real donor pair: use a random control with this per-tensor relative norm as "v" (labelled)."""
    targets: list[str] = Field(min_length=1)
    alphas: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
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
    seed: int = 1234
    bootstrap_resamples: int = Field(10_000, ge=1000)
    allow_code_execution: bool = False
    data_dir: str | None = None
    backend: BackendSettingsField = Field(default_factory=HFSettings)
    """Engine and its options: ``name`` (a registered backend, default ``hf``) and that backend's
    settings (:mod:`rvec.model.settings`), the same ones ``rvec eval`` takes as flags."""
    output: str | None = None


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


def _semantic_errors(config: StudyConfig, base: Path) -> list[str]:
    """Checks pydantic cannot express: names against registries, exclusive choices, files."""
    from rvec.eval.perturb import parse_perturbations
    from rvec.eval.presets import get_preset
    from rvec.eval.tasks.registry import expand_task_names

    errors: list[str] = []
    sources = [config.donors is not None, config.vector is not None, config.random_in_place_of_v is not None]
    if sum(sources) != 1:
        errors.append("donors / vector / random_in_place_of_v: give exactly one source of v")
    if (
        config.vector is not None
        and not (base / config.vector).expanduser().is_dir()
        and not Path(config.vector).expanduser().is_dir()
    ):
        errors.append(f"vector: {config.vector} is not a folder")
    if config.controls.rl_donor_think and config.donors is None:
        errors.append("controls.rl_donor_think: needs donors (the RL donor is the model evaluated)")
    try:
        preset = get_preset(config.preset)
    except RvecError as err:
        errors.append(f"preset: {err}")
        preset = None
    if preset is not None:
        for cond in config.conditions:
            if cond not in preset.conditions:
                errors.append(
                    f"conditions: '{cond}' is not a condition of preset '{preset.name}' ({', '.join(preset.conditions)})"
                )
    for key, names in (("tasks", config.tasks), ("adversarial", config.adversarial)):
        for name in names:
            try:
                expand_task_names(name)
            except RvecError as err:
                errors.append(f"{key}: {err}")
    for spec in config.perturbations:
        try:
            parse_perturbations(spec)
        except RvecError as err:
            errors.append(f"perturbations: {err}")
    if len(set(config.alphas)) != len(config.alphas):
        errors.append("alphas: values repeat")
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
    """Validate a study given as a dict (see :func:`load_study`)."""
    if not isinstance(raw, dict):
        raise ConfigError(["expected a mapping of keys at the top level"], source=source)
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_pydantic_errors(err), source=source) from None
    errors = _semantic_errors(config, base)
    if errors:
        raise ConfigError(errors, source=source)
    return config
