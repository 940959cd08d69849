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

A reasoning study samples and thinks like ``rvec eval``'s flags (each key changes the cell keys)::

    preset: reasoning
    max_new_tokens: 4096
    samples: 8
    temperature: 0.6
    top_p: 0.95
    think: true
    chat_template_args: {enable_thinking: true}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    FiniteFloat,
    PositiveInt,
    Tag,
    ValidationError,
)

from rvec.defaults import DEFAULT_SEED
from rvec.errors import ConfigError
from rvec.eval.overrides import RunOverrides
from rvec.model.hf.settings import HFSettings
from rvec.model.registry import BACKENDS, BackendSettingsField, get_backend, setting_error_message
from rvec.study.combine_config import Combination, ExtraRow, combine_errors
from rvec.study.mergekit_models import MergekitModel, mergekit_errors
from rvec.study.specs import AtlasSpec, SearchSpec, SliceSpec
from rvec.study.validation import semantic_errors, study_path

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


def _recipe_kind(value: Any) -> str:
    """Which model recipe an entry of ``models:`` is: a mergekit YAML, or ``base`` + ``add``."""
    if isinstance(value, dict):
        return "mergekit" if "mergekit" in value else "made"
    return "mergekit" if isinstance(value, MergekitModel) else "made"


ModelRecipe = Annotated[
    Annotated[MadeModel, Tag("made")] | Annotated[MergekitModel, Tag("mergekit")],
    Discriminator(_recipe_kind),
]
"""An entry of ``models:``: ``{base, add, alphas}`` or ``{mergekit: FILE.yml, seed}``."""
_RECIPE_TAGS = ("made", "mergekit")


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
    models: dict[str, ModelRecipe] = Field(default_factory=dict)
    """Models made in the run folder before anything is evaluated (``base`` + ``add``, or a mergekit
    YAML); their names can be used as ``targets``, ``donors``, ``rows`` and as another model's ``base``."""
    donors: Donors | None = None
    vector: str | None = None
    """An existing vector folder: v itself. With ``donors`` too, v is read from here (not extracted)
    and the donors are evaluated as rows only."""
    random_in_place_of_v: FiniteFloat | None = Field(None, gt=0)
    """No real donor pair: use a random control with this per-tensor relative norm as "v" (labelled)."""
    vectors: dict[str, str] = Field(default_factory=dict)
    """Named vector folders besides v (:mod:`rvec.study.combine_config`): each is evaluated as
    ``target + 1·name`` and can be combined."""
    combine: dict[str, Combination] = Field(default_factory=dict)
    """Merges of named vectors computed in memory, each evaluated as ``target + METHOD(v, v1)``."""
    rows: dict[str, ExtraRow] = Field(default_factory=dict)
    """Other models evaluated as rows (e.g. the SFT donor + v1), each compared with its ``vs`` row."""
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
    samples: int = 1
    """Responses drawn per item (``avg@n``, ``pass@k``; the statistics pair per-item means)."""
    temperature: FiniteFloat = 0.0
    """Sampling temperature; 0 is greedy (then ``samples`` must be 1)."""
    top_p: FiniteFloat = 1.0
    """Nucleus mass in (0, 1]."""
    think: bool = False
    """Thinking model: score the answer after the closing think tag (``think_end_tag``)."""
    think_end_tag: str | None = None
    """The closing tag with ``think`` (default ``</think>``)."""
    chat_template_args: dict[str, str | bool | int | float | None] = Field(default_factory=dict)
    """Passed to the chat template of every chat request, e.g. ``{enable_thinking: true}``."""
    limit: int | None = Field(None, ge=1)
    """Items per task (the first N; BBH: per subtask)."""
    task_limits: dict[str, PositiveInt] = Field(default_factory=dict)
    """Items for named tasks instead of ``limit``, e.g. ``{arith: 200}``; a family name (``bbh``)
    covers its subtasks."""
    seed: int = DEFAULT_SEED
    bootstrap_resamples: int = Field(10_000, ge=1000)
    allow_code_execution: bool = False
    data_dir: str | None = None
    backend: BackendSettingsField = Field(default_factory=HFSettings)
    """Engine and its options: ``name`` (a registered backend, default ``hf``) and that backend's
    settings (:mod:`rvec.model.settings`), the same ones ``rvec eval`` takes as flags."""
    output: str | None = None
    slices: list[SliceSpec] = Field(default_factory=list)
    """Named parts of v, each evaluated as a variant in memory (kind ``slice``, or ``profile`` for a
    per-depth α schedule): layer ranges, module classes, patterns, ``invert`` (docs/atlas.md)."""
    atlas: AtlasSpec | None = None
    """Depth blocks × module groups of v, each part alone and v without it (docs/atlas.md)."""
    search: SearchSpec | None = None
    """α search (a global α or a per-block profile) on a dev split, checked once on a disjoint test
    split (``rvec tune`` runs it alone; docs/atlas.md)."""
    kl: bool | None = None
    """KL(p_target ‖ p_variant) of the next token at the end of each prompt, per cell; default: on
    where the backend gives whole distributions (hf), off on vllm."""

    def overrides(self) -> RunOverrides:
        """The study's changes to its preset, as ``rvec eval``'s flags give them."""
        return RunOverrides(
            max_new_tokens=self.max_new_tokens,
            samples=self.samples,
            temperature=self.temperature,
            top_p=self.top_p,
            think=self.think,
            think_end_tag=self.think_end_tag,
            chat_template_args=dict(self.chat_template_args),
        )

    def limit_for(self, task: str) -> int | None:
        """Items of ``task``: its ``task_limits`` entry (or its family's: ``bbh``), else ``limit``."""
        return self.task_limits.get(task, self.task_limits.get(task.split(":")[0], self.limit))


def _pydantic_errors(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        if loc[:1] == ["models"] and len(loc) > 2 and loc[2] in _RECIPE_TAGS:
            del loc[2]  # pydantic names the recipe kind it tried; the user wrote models.<name>.<key>
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
    except RecursionError:  # PyYAML recurses per nesting level: a file nested thousands deep
        raise ConfigError(["invalid YAML: nested too deeply"], source=str(path)) from None
    except UnicodeDecodeError as err:
        raise ConfigError([f"not UTF-8 text (byte {err.start})"], source=str(path)) from None
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
    errors += [e for e in semantic_errors(raw, base) if e not in errors]
    models = raw.get("models") if isinstance(raw.get("models"), dict) else {}
    errors += [e for e in [*combine_errors(raw, base), *mergekit_errors(models, base)] if e not in errors]
    if errors or config is None:
        raise ConfigError(errors, source=source)
    # Opened where they were validated, whatever the working folder.
    if config.vector is not None:
        config = config.model_copy(update={"vector": str(study_path(config.vector, base).resolve())})
    if config.models:
        made = {name: _with_paths_resolved(m, base) for name, m in config.models.items()}
        config = config.model_copy(update={"models": made})
    if config.vectors:
        named = {name: str(study_path(p, base).resolve()) for name, p in config.vectors.items()}
        config = config.model_copy(update={"vectors": named})
    return config


def _with_paths_resolved(model: MadeModel | MergekitModel, base: Path) -> MadeModel | MergekitModel:
    if isinstance(model, MergekitModel):
        return model.model_copy(update={"mergekit": str(study_path(model.mergekit, base).resolve())})
    return model.model_copy(update={"add": [str(study_path(a, base).resolve()) for a in model.add]})
