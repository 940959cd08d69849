"""rvec: reasoning vectors — extract θ_RL − θ_SFT, apply α·v to other models, measure the transfer.

The library verbs, importable from here (each loads its module on first use, so ``import rvec``
stays light and imports neither numpy nor torch):

* vectors: :func:`read_vector`, :func:`write_vector`, :func:`extract`, :func:`apply`,
  :func:`merge`, :func:`anatomy`, :func:`compress`, :func:`check_compatibility`;
* models: :func:`open_model_state` (a loaded model whose α you set and restore in memory),
  :func:`evaluate_model` (``rvec eval``), :func:`evaluate` (the protocol on any language model);
* experiments: :func:`load_study`, :func:`run_study`; :func:`make_pair` (``rvec pair``).

docs/library.md shows each in use; docs/architecture.md maps the packages.

Example:
    >>> import rvec
    >>> v = rvec.extract("org/m-sft", "org/m-grpo", "vec/")                       # doctest: +SKIP
    >>> rvec.apply(["vec/"], "org/m-instruct", "out/", alphas=[1.0])             # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name → module that defines it: the public face, loaded lazily (PEP 562).
_EXPORTS = {
    "read_vector": "rvec.vector.artifact",
    "write_vector": "rvec.vector.writing",
    "extract": "rvec.vector.extract",
    "apply": "rvec.vector.apply",
    "compress": "rvec.vector.compress",
    "anatomy": "rvec.vector.anatomy",
    "merge": "rvec.vector.merge",
    "check_compatibility": "rvec.vector.apply_plan",
    "open_model_state": "rvec.model.registry",
    "evaluate_model": "rvec.model.evaluate",
    "evaluate": "rvec.eval.runner",
    "load_study": "rvec.study.config",
    "run_study": "rvec.study.runner",
    "make_pair": "rvec.pair.workflow",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rvec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
