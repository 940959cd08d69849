"""Named vectors and their combinations in a study: the variants they add, the in-memory vectors
behind them, and the record the report describes them from.

A combination is never written to disk: it is a :class:`~rvec.vector.merge_recipe.HashedMerge` of
the study's vector folders, attached to the loaded target like any vector and set at α = 1, so its
cells come from the same model load, the same bit-exact restore and the same items as every other
variant. Its content hash (method, every parameter, the seed, the inputs' hashes) enters the cell
key, so two combinations that differ in anything get different cells.

Labels in the study's vector table: a named vector is its name (``v1``); a combination is
``combine:<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rvec.errors import ConfigError
from rvec.study.combine_config import V_LABEL, Combination
from rvec.study.config import StudyConfig
from rvec.study.types import Variant
from rvec.vector.artifact import read_vector
from rvec.vector.merge import MergeSpec, merge_spec
from rvec.vector.merge_recipe import HashedMerge
from rvec.vector.methods.registry import get_method

__all__ = [
    "COMBINE_PREFIX",
    "check_row_references",
    "combination_spec",
    "combination_vectors",
    "combine_record",
    "extra_variants",
    "row_variants",
]

COMBINE_PREFIX = "combine:"


def combination_spec(combo: Combination, *, default_seed: int) -> MergeSpec:
    """The resolved merge of ``combo`` (its parameters were checked when the study was loaded)."""
    return merge_spec(
        combo.method,
        len(combo.vectors),
        weights=combo.weights,
        densities=combo.densities,
        params=combo.parameters,
        seed=combo.seed if combo.seed is not None else default_seed,
    )


def combination_names(config: StudyConfig) -> dict[str, str]:
    """Each combination's display name, ``TIES(v, v1)``; the key is added where two would read alike."""
    plain = {
        name: f"{get_method(c.method).pretty_name}({', '.join(c.vectors)})"
        for name, c in config.combine.items()
    }
    counts = {text: list(plain.values()).count(text) for text in plain.values()}
    return {name: text if counts[text] == 1 else f"{text} [{name}]" for name, text in plain.items()}


def extra_variants(config: StudyConfig, target: str, label: str) -> list[Variant]:
    """``target + 1·name`` for each named vector, then ``target + METHOD(…)`` for each combination."""
    out = [Variant(f"{label} + 1·{name}", "vector", target, name, 1.0) for name in config.vectors]
    for name, shown in combination_names(config).items():
        out.append(Variant(f"{label} + {shown}", "combination", target, f"{COMBINE_PREFIX}{name}", 1.0))
    return out


def row_variants(config: StudyConfig) -> list[Variant]:
    """The models of ``rows:``, each a variant of kind ``other`` evaluated as it is."""
    return [Variant(name, "other", row.model) for name, row in config.rows.items()]


def check_row_references(config: StudyConfig, names: list[str]) -> None:
    """Refuse a ``rows:`` entry whose ``vs`` names no row of the study (its comparison would be
    left out of the report without a word). ``names``: every planned variant's name.

    Raises:
        ConfigError: one problem per such row, listing the names ``vs`` may take.
    """
    known = list(dict.fromkeys(names))
    problems = [
        f"rows.{name}.vs: {row.vs!r} is not a row of this study; name one of: {', '.join(known)}"
        for name, row in config.rows.items()
        if row.vs is not None and row.vs not in known
    ]
    if problems:
        raise ConfigError(problems, source=config.name)


def combination_vectors(config: StudyConfig, vectors: Mapping[str, Any]) -> dict[str, Any]:
    """The named vectors (opened and verified) and the combinations (in memory), by label.

    Args:
        config: the study.
        vectors: the study's own vectors by label (``v`` at least), as prepared for the run.

    Raises:
        IncompatibleError: a combination's inputs differ in tensors, shapes or family.
        VectorIntegrityError: a named vector's shards do not match its manifest.
    """
    named: dict[str, Any] = {name: read_vector(folder) for name, folder in config.vectors.items()}
    pool = {V_LABEL: vectors[V_LABEL], **named}
    out = dict(named)
    for name, combo in config.combine.items():
        spec = combination_spec(combo, default_seed=config.seed)
        out[f"{COMBINE_PREFIX}{name}"] = HashedMerge([pool[v] for v in combo.vectors], spec)
    return out


def combine_record(config: StudyConfig) -> dict[str, Any]:
    """What ``study.json`` keeps for the report: each combination (method, inputs, every resolved
    parameter, seed) by its vector label, and each extra row's comparison row."""
    shown = combination_names(config)
    combinations = {}
    for name, combo in config.combine.items():
        spec = combination_spec(combo, default_seed=config.seed)
        combinations[f"{COMBINE_PREFIX}{name}"] = {
            "name": name,
            "shown": shown[name],
            "inputs": list(combo.vectors),
            **spec.describe(),
        }
    return {
        "vectors": dict(config.vectors),
        "combinations": combinations,
        "rows": {name: row.vs for name, row in config.rows.items()},
    }
