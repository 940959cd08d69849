"""A mergekit YAML read into an rvec job: which donor pairs, which merge, which α, which dtype.

rvec writes ``θ_target + Σ αᵢ·vᵢ`` with vectors computed on the fly from donor pairs (as
``rvec apply --sft A --rl B`` does), so a mergekit config maps onto it as follows:

* ``linear`` (``Σᵢ wᵢ·θᵢ``, ÷ ``Σwᵢ`` when ``normalize``, mergekit's default): with ``T`` the
  ``base_model`` (else the first model) and ``R`` the other model of most negative weight, and
  weights ``w'ᵢ`` summing to 1, ``Σ w'ᵢθᵢ = θ_T + s·(θ_R − θ_T) + Σ_{i≠T,R} w'ᵢ·(θᵢ − θ_R)`` with
  ``s = 1 − w'_T`` — exact in real arithmetic; the terms with α = 0 are dropped. The paper's config
  (+1·Instruct, +1·GRPO, −1·SFT) becomes ``Instruct + 1·(GRPO − SFT)``: one donor pair.
* ``task_arithmetic``, ``ties``, ``dare_linear``, ``dare_ties``, ``breadcrumbs``,
  ``breadcrumbs_ties``, ``ram``: ``base_model`` is required; each other model ``Mᵢ`` gives the
  donor pair ``Mᵢ − base``; their merge (:mod:`rvec.vector.merge`) is applied to the base at α = 1,
  which is mergekit's ``base + merged delta``.

Config and tokenizer come from ``T`` / the base (``tokenizer_source``: absent, ``base`` or that
model; ``union`` or another model is refused). ``out_dtype`` (else ``dtype``, else the base's) is
the output dtype; arithmetic is float32 whatever ``dtype`` says (mergekit computes in ``dtype``).
Everything else — ``slices``, ``modules``, ``tokenizer``, ``chat_template``, LoRA model references,
per-tensor parameter lists (``filter``, gradients), unknown keys or methods — is refused with one
line naming it. DARE's seed is the job's ``seed`` (mergekit has none: its masks are unseeded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rvec.checkpoint.dtypes import parse_output_dtype
from rvec.checkpoint.source import Checkpoint, resolve
from rvec.checkpoint.writer import DEFAULT_MAX_SHARD_BYTES
from rvec.defaults import DEFAULT_SEED
from rvec.errors import ConfigError, InvalidArgumentError
from rvec.progress import ProgressCallback
from rvec.vector.apply import ApplyResult, apply
from rvec.vector.artifact import DeltaSource, DonorPair
from rvec.vector.merge import MergedDelta, MergeSpec, merge_spec
from rvec.vector.methods.registry import METHODS

SUPPORTED_KEYS = (
    "merge_method",
    "base_model",
    "models",
    "parameters",
    "dtype",
    "out_dtype",
    "tokenizer_source",
)
REFUSED_KEYS = {
    "slices": "layer slices (frankenmerges) are not vector arithmetic",
    "modules": "per-module definitions are not supported",
    "tokenizer": "rvec copies the base's tokenizer and builds none",
    "chat_template": "rvec copies the base's chat template",
}
LINEAR = "linear"
_FLOAT_DTYPES = ("float32", "bfloat16", "float16", "fp32", "bf16", "fp16")


class ModelEntry(BaseModel):
    """One ``models[]`` entry: a model reference (folder or hub id) and scalar parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str
    parameters: dict[str, float | bool] | None = None


class MergekitConfig(BaseModel):
    """The subset of mergekit's ``MergeConfiguration`` that rvec runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    merge_method: str
    models: tuple[ModelEntry, ...] = Field(min_length=1)
    base_model: str | None = None
    parameters: dict[str, float | bool] | None = None
    dtype: str | None = None
    out_dtype: str | None = None
    tokenizer_source: str | None = None


@dataclass(frozen=True)
class MergekitJob:
    """What rvec runs: ``target + Σ alphas[i]·(pairs[i].rl − pairs[i].sft)``, or with ``spec`` the merge
    of the pairs applied at α = 1."""

    method: str
    target: str
    pairs: tuple[tuple[str, str], ...]  # (sft, rl) donor references
    alphas: tuple[float, ...]
    spec: MergeSpec | None
    out_dtype: str | None
    compute_dtype_note: str | None  # what mergekit's ``dtype`` would have done differently

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "target": self.target,
            "pairs": [{"sft": s, "rl": r, "alpha": a} for (s, r), a in zip(self.pairs, self.alphas)],
            **({"merge": self.spec.describe()} if self.spec else {}),
            "out_dtype": self.out_dtype,
            "note": self.compute_dtype_note,
        }


def load_mergekit(path: str | Path, *, seed: int = DEFAULT_SEED) -> MergekitJob:
    """Read a mergekit YAML file into a :class:`MergekitJob`.

    Raises:
        ConfigError: unreadable YAML, an unknown or refused key, a bad value (one line each).
        InvalidArgumentError, UnknownNameError: a parameter or method rvec does not implement.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError([f"cannot read it as YAML ({err.__class__.__name__})"], source=str(path)) from err
    return job_from_config(data, source=str(path), seed=seed)


def job_from_config(data: Any, *, source: str = "mergekit config", seed: int = DEFAULT_SEED) -> MergekitJob:
    """A :class:`MergekitJob` from a parsed mergekit config (see :func:`load_mergekit`)."""
    config = parse_config(data, source=source)
    if config.merge_method == LINEAR:
        return _linear_job(config, source)
    if config.merge_method not in METHODS:
        raise ConfigError(
            [f"merge_method {config.merge_method!r} is not implemented by rvec; use one of "
             f"{', '.join([LINEAR, *sorted(METHODS)])}"],
            source=source,
        )  # fmt: skip
    return _merge_job(config, source, seed)


def parse_config(data: Any, *, source: str) -> MergekitConfig:
    """Validate the keys and value shapes of a mergekit config into a frozen :class:`MergekitConfig`."""
    if not isinstance(data, dict):
        raise ConfigError(["not a mapping of mergekit keys"], source=source)
    problems = [f"{k}: {REFUSED_KEYS[k]}; rvec cannot run it" for k in data if k in REFUSED_KEYS]
    problems += [
        f"unknown key {k!r}; rvec reads {', '.join(SUPPORTED_KEYS)}"
        for k in data
        if k not in REFUSED_KEYS and k not in SUPPORTED_KEYS
    ]
    for where, params in _parameter_blocks(data):
        problems += [
            f"{where}.{name}: per-tensor lists (filter/gradient) are not supported; give one number"
            for name, value in params.items()
            if isinstance(value, (list, dict))
        ]
    if problems:
        raise ConfigError(problems, source=source)
    try:
        config = MergekitConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(
            [f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in err.errors()],
            source=source,
        ) from err
    for ref in [config.base_model, *(m.model for m in config.models)]:
        if ref is not None and "+" in ref:
            raise ConfigError(
                [f"model {ref!r}: LoRA references (model+lora) are not supported"], source=source
            )
    for key in ("dtype", "out_dtype"):
        value = getattr(config, key)
        if value is not None and value not in _FLOAT_DTYPES:
            raise ConfigError([f"{key}: {value!r} is not one of {', '.join(_FLOAT_DTYPES)}"], source=source)
    if config.tokenizer_source not in (None, "base", config.base_model or _first(config)):
        raise ConfigError(
            [f"tokenizer_source: {config.tokenizer_source!r}: rvec takes config and tokenizer from the base "
             "model; set tokenizer_source: base or remove it"],
            source=source,
        )  # fmt: skip
    return config


def _parameter_blocks(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(data.get("parameters"), dict):
        found.append(("parameters", data["parameters"]))
    for i, entry in enumerate(data.get("models") or []):
        if isinstance(entry, dict) and isinstance(entry.get("parameters"), dict):
            found.append((f"models.{i}.parameters", entry["parameters"]))
    return found


def _first(config: MergekitConfig) -> str:
    return config.models[0].model


def _out_dtype(config: MergekitConfig) -> tuple[str | None, str | None]:
    """(output dtype, a note on what mergekit's compute ``dtype`` would change)."""
    note = None
    if config.dtype not in (None, "float32", "fp32"):
        note = f"mergekit computes in {config.dtype}; rvec computes in float32 and casts once"
    return config.out_dtype or config.dtype, note


def _linear_job(config: MergekitConfig, source: str) -> MergekitJob:
    shared = dict(config.parameters or {})
    normalize = shared.pop("normalize", True)
    extra = [k for k in shared if k != "weight"] + [
        f"{m.model}.{k}" for m in config.models for k in (m.parameters or {}) if k != "weight"
    ]
    if extra or not isinstance(normalize, bool):
        raise ConfigError(
            [
                f"linear takes weight and normalize only; found {', '.join(extra) or f'normalize: {normalize!r}'}"
            ],
            source=source,
        )
    models = [m.model for m in config.models]
    weights = [(m.parameters or {}).get("weight", shared.get("weight")) for m in config.models]
    if config.base_model is not None and config.base_model not in models:
        models.append(config.base_model)  # mergekit adds the base with the global weight
        weights.append(shared.get("weight"))
    missing = [m for m, w in zip(models, weights) if w is None]
    if missing:
        raise ConfigError(
            [f"linear: {missing[0]} has no weight; add parameters: {{weight: …}}"], source=source
        )
    total = math.fsum(float(w) for w in weights)
    if normalize and abs(total) < 1e-12:
        raise ConfigError(["linear: the weights sum to 0 and normalize divides by that sum"], source=source)
    if not normalize and abs(total - 1) > 1e-9:
        raise ConfigError(
            [f"linear with normalize: false and weights summing to {total:g} scales the whole model; rvec "
             "writes target + Σα·(θ_a − θ_b) only: set normalize: true or weights summing to 1"],
            source=source,
        )  # fmt: skip
    share = [float(w) / (total if normalize else 1.0) for w in weights]
    target = config.base_model or models[0]
    t = models.index(target)
    others = [i for i in range(len(models)) if i != t]
    if not others:
        raise ConfigError(["linear of one model: nothing to merge"], source=source)
    r = min(others, key=lambda i: share[i])  # the most negative weight: the paper's SFT
    pairs, alphas = [], []
    s = 1.0 - share[t]
    if s != 0:
        pairs.append((target, models[r]))
        alphas.append(s)
    for i in others:
        if i != r and share[i] != 0:
            pairs.append((models[r], models[i]))
            alphas.append(share[i])
    if not pairs:
        raise ConfigError(["linear: every other model has weight 0; nothing to merge"], source=source)
    out_dtype, note = _out_dtype(config)
    return MergekitJob(LINEAR, target, tuple(pairs), tuple(alphas), None, out_dtype, note)


def _merge_job(config: MergekitConfig, source: str, seed: int) -> MergekitJob:
    base = config.base_model
    if base is None:
        raise ConfigError(
            [f"{config.merge_method} needs base_model (the model the deltas are taken from)"], source=source
        )
    entries = [m for m in config.models if m.model != base]
    with_params = [m.model for m in config.models if m.model == base and m.parameters]
    if with_params:
        raise ConfigError(
            [f"base_model {base} has parameters, which mergekit ignores; remove them"], source=source
        )
    if not entries:
        raise ConfigError(
            [f"{config.merge_method}: no model besides the base; nothing to merge"], source=source
        )
    try:
        spec = merge_spec(
            config.merge_method,
            len(entries),
            params=dict(config.parameters or {}),
            per_vector=[dict(m.parameters or {}) for m in entries],
            seed=seed,
            mergekit_required=True,
        )
    except InvalidArgumentError as err:
        raise ConfigError([str(err)], source=source) from err
    out_dtype, note = _out_dtype(config)
    pairs = tuple((base, m.model) for m in entries)
    return MergekitJob(config.merge_method, base, pairs, (1.0,), spec, out_dtype, note)


def apply_mergekit(
    job: MergekitJob,
    out: str | Path,
    *,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
    lineage: bool = True,
    allow_pickle: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    workers: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> ApplyResult:
    """Run a :class:`MergekitJob`: stream the model it describes to ``out`` (no vector written).

    Each model reference is resolved once; every donor pair is checked (architecture, shapes,
    lineage) before anything is written, as ``rvec apply --sft --rl`` does.

    Args:
        job: from :func:`load_mergekit`.
        out: the model folder to create (atomically).
        overwrite, overwrite_foreign, lineage, allow_pickle, max_shard_bytes, workers,
            on_progress: as for :func:`rvec.vector.apply.apply`.

    Returns:
        The :class:`~rvec.vector.apply.ApplyResult`; its provenance lists the donor pairs (and the
        merge, with every parameter and the seed) with their α.

    Raises:
        the errors of :func:`rvec.vector.apply.apply`, and SourceNotFoundError for a model that
        cannot be resolved.
    """
    checkpoints: dict[str, Checkpoint] = {}

    def get(ref: str) -> Checkpoint:
        if ref not in checkpoints:
            checkpoints[ref] = resolve(ref, allow_pickle=allow_pickle)
        return checkpoints[ref]

    target = get(job.target)
    pairs = [DonorPair(sft=get(sft), rl=get(rl)) for sft, rl in job.pairs]
    sources: list[DeltaSource] = [MergedDelta(pairs, job.spec)] if job.spec else list(pairs)
    alphas = [1.0] if job.spec else list(job.alphas)
    return apply(
        sources,
        target,
        out,
        alphas=alphas,
        dtype=parse_output_dtype(job.out_dtype),
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        lineage=lineage,
        allow_pickle=allow_pickle,
        max_shard_bytes=max_shard_bytes,
        workers=workers,
        on_progress=on_progress,
    )
