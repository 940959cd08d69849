"""Every merge method by name: a plain dict built from a list of instances (a duplicate name is an error)."""

from __future__ import annotations

from collections.abc import Sequence

from rvec.errors import UnknownNameError
from rvec.vector.methods.base import MergeMethod
from rvec.vector.methods.breadcrumbs import BREADCRUMBS
from rvec.vector.methods.breadcrumbs_ties import BREADCRUMBS_TIES
from rvec.vector.methods.dare_linear import DARE_LINEAR
from rvec.vector.methods.dare_ties import DARE_TIES
from rvec.vector.methods.ram import RAM
from rvec.vector.methods.task_arithmetic import TASK_ARITHMETIC
from rvec.vector.methods.ties import TIES


def build_registry(methods: Sequence[MergeMethod]) -> dict[str, MergeMethod]:
    """``{name: method}``.

    Raises:
        ValueError: two methods share a name (a programming error, caught at import).
    """
    registry: dict[str, MergeMethod] = {}
    for method in methods:
        if method.name in registry:
            raise ValueError(f"merge method {method.name!r} registered twice")
        registry[method.name] = method
    return registry


METHODS: dict[str, MergeMethod] = build_registry(
    [TASK_ARITHMETIC, TIES, DARE_LINEAR, DARE_TIES, BREADCRUMBS, BREADCRUMBS_TIES, RAM]
)


def get_method(name: str) -> MergeMethod:
    """The method called ``name``.

    Raises:
        UnknownNameError: no such method; the message lists the valid names.
    """
    method = METHODS.get(name)
    if method is None:
        valid = sorted(METHODS)
        raise UnknownNameError(
            f"unknown merge method {name!r}; valid: {', '.join(valid)}", name=name, valid=valid
        )
    return method
