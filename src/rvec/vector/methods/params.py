"""Resolve a merge's parameters as mergekit does: a vector's own value, else the global one, else the default.

Every name is checked against the method's :class:`~.base.ParamDef` list first: a parameter the
method does not have is an error naming it (mergekit ignores unknown ones; a user's number would
then silently mean nothing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rvec.errors import InvalidArgumentError
from rvec.vector.methods.base import MergeMethod, ParamDef, Params, Value


def resolve_params(
    method: MergeMethod,
    n_vectors: int,
    *,
    shared: Mapping[str, Value] | None = None,
    per_vector: Sequence[Mapping[str, Value]] | None = None,
    mergekit_required: bool = False,
) -> Params:
    """Every parameter of ``method`` for ``n_vectors`` vectors, checked.

    Args:
        method: the merge method.
        n_vectors: how many vectors are merged.
        shared: global values; a per-vector parameter given here applies to every vector.
        per_vector: one mapping per vector (mergekit's ``models[].parameters``), overriding ``shared``.
        mergekit_required: a parameter mergekit requires (``weight``) must be given, as in mergekit;
            otherwise rvec's default (1) applies.

    Raises:
        InvalidArgumentError: an unknown parameter, a missing required one, a per-vector count that
            is not ``n_vectors``, a value of the wrong type or out of range.
    """
    shared = dict(shared or {})
    rows = [dict(p) for p in (per_vector or [{} for _ in range(n_vectors)])]
    if len(rows) != n_vectors:
        raise InvalidArgumentError(
            f"{len(rows)} per-vector parameter sets for {n_vectors} vectors; give one per vector"
        )
    defs = {p.name: p for p in method.params}
    for name in [*shared, *(k for row in rows for k in row)]:
        if name not in defs:
            raise InvalidArgumentError(
                f"{method.name} has no parameter {name!r}; its parameters: {', '.join(sorted(defs))}"
            )
        if name in (k for row in rows for k in row) and not defs[name].per_vector:
            raise InvalidArgumentError(
                f"{method.name}: {name!r} is one value for the whole merge, not per vector; give it once"
            )
    resolved_shared = {
        p.name: _check(p, shared.get(p.name, p.rvec_default)) for p in defs.values() if not p.per_vector
    }
    resolved_rows = []
    for i, row in enumerate(rows):
        values = {}
        for p in (d for d in defs.values() if d.per_vector):
            value = row.get(p.name, shared.get(p.name))
            if value is None:
                if mergekit_required and p.default is None:
                    raise InvalidArgumentError(
                        f"{method.name}: vector {i + 1} has no {p.name!r}, which mergekit requires; add it to its parameters"
                    )
                value = p.rvec_default
            values[p.name] = _check(p, value, vector=i)
        resolved_rows.append(values)
    return Params(shared=resolved_shared, per_vector=tuple(resolved_rows))


def _check(p: ParamDef, value: object, *, vector: int | None = None) -> Value:
    where = f"{p.name}" + (f" of vector {vector + 1}" if vector is not None else "")
    if p.kind is bool:
        if not isinstance(value, bool):
            raise InvalidArgumentError(f"{where}: {value!r} is not true or false; {p.name} is a flag")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise InvalidArgumentError(f"{where}: {value!r} is not a finite number; pass e.g. {p.rvec_default}")
    number = float(value)
    if (p.low is not None and number < p.low) or (p.high is not None and number > p.high):
        raise InvalidArgumentError(
            f"{where}: {number:g} is outside [{p.low if p.low is not None else '-inf'}, "
            f"{p.high if p.high is not None else 'inf'}]; {p.doc}"
        )
    return number
