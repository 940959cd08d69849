"""Every backend by name: ``rvec eval --backend NAME`` and a study's ``backend.name`` select from here.

A registry entry is a :class:`~rvec.model.state.BackendSpec` instance; its settings type joins the
tagged union :data:`BackendSettingsField` that study configs validate ``backend:`` with, so a
backend's options are checked (and every problem listed) before any work. Entries import their
engine only in ``load``, so this module stays light and an optional engine (vLLM) is imported only
when it is chosen.

Example:
    >>> settings = parse_backend_settings({"name": "hf", "dtype": "float32"})
    >>> with open_model_state("model/", settings) as state:  # doctest: +SKIP
    ...     lm = state.language_model()
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Discriminator, Tag, ValidationError

from rvec.errors import ConfigError, InvalidArgumentError, UnknownNameError
from rvec.model.hf.spec import HFSpec
from rvec.model.settings import BackendSettings
from rvec.model.state import BackendSpec, ModelState
from rvec.model.vllm.spec import VLLMSpec

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "BackendSettingsField",
    "build_registry",
    "get_backend",
    "open_model_state",
    "parse_backend_flags",
    "parse_backend_settings",
    "setting_error_message",
]

DEFAULT_BACKEND = "hf"
"""The backend used when ``--backend`` or ``backend.name`` is not given."""


def build_registry(specs: list[BackendSpec]) -> dict[str, BackendSpec]:
    """``{name: spec}`` in the given order.

    Raises:
        ConfigError: two specs share a name (every duplicate listed).
    """
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError([f"duplicate backend name {n!r}" for n in duplicates], source="backends")
    return {s.name: s for s in specs}


BACKENDS: dict[str, BackendSpec] = build_registry([HFSpec(), VLLMSpec()])
"""Every backend by name."""


def get_backend(name: str) -> BackendSpec:
    """The backend registered as ``name``.

    Raises:
        UnknownNameError: no such backend; the message lists the valid names.
    """
    if name not in BACKENDS:
        raise UnknownNameError(
            f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}", name=name, valid=list(BACKENDS)
        )
    return BACKENDS[name]


def _backend_name(value: Any) -> Any:
    # Pydantic's discriminator: the tag of raw input or of an already-built settings object.
    if isinstance(value, Mapping):
        return value.get("name", DEFAULT_BACKEND)
    return getattr(value, "name", None)


BackendSettingsField = Annotated[
    Union[tuple(Annotated[s.settings_type, Tag(n)] for n, s in BACKENDS.items())],  # noqa: UP007
    Discriminator(
        _backend_name,
        custom_error_type="unknown_backend",
        custom_error_message=f"unknown backend; valid: {', '.join(BACKENDS)}",
    ),
]
"""A pydantic field type: any backend's settings, chosen by ``name`` (default ``hf``)."""


def parse_backend_settings(raw: Mapping[str, Any] | BackendSettings) -> BackendSettings:
    """Validate backend settings given as a mapping (CLI flags, a notebook) into the backend's type.

    Args:
        raw (Mapping | BackendSettings): ``{"name": "hf", "device": …, "dtype": …, "batch_size": …}``
            (``name`` defaults to ``hf``); a settings object is returned as it is.

    Returns:
        BackendSettings: The chosen backend's settings (e.g. :class:`~rvec.model.settings.HFSettings`).

    Raises:
        UnknownNameError: an unknown backend name (the valid ones are listed).
        InvalidArgumentError: a bad or unknown setting (every problem in the one line).

    Example:
        >>> parse_backend_settings({"batch_size": 8}).batch_size
        8
    """
    if isinstance(raw, BackendSettings):
        return raw
    name = raw.get("name", DEFAULT_BACKEND)
    spec = get_backend(name)
    try:
        return spec.settings_type.model_validate({**raw, "name": name})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {setting_error_message(e, spec)}" for e in err.errors()
        )
        raise InvalidArgumentError(f"backend {name}: {problems}") from None


def parse_backend_flags(name: str | None, **flags: Any) -> BackendSettings:
    """Backend settings from command-line flags: only the flags given (not ``None``) are passed, so a
    backend refuses a flag that is not its own (``--tensor-parallel`` with ``--backend hf``) while
    every default stays the backend's.

    Raises:
        UnknownNameError, InvalidArgumentError: as :func:`parse_backend_settings`.
    """
    given = {k: v for k, v in flags.items() if v is not None}
    return parse_backend_settings({"name": name or DEFAULT_BACKEND, **given})


def setting_error_message(error: Mapping[str, Any], spec: BackendSpec) -> str:
    """One pydantic error on a backend's settings, as the user reads it."""
    if error["type"] == "extra_forbidden":
        settings = ", ".join(f for f in spec.settings_type.model_fields if f != "name")
        return f"not a setting of the {spec.name} backend (its settings: {settings})"
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    return str(error["msg"])


@contextmanager
def open_model_state(source: str | Path, settings: BackendSettings) -> Iterator[ModelState]:
    """Load ``source`` on the backend ``settings`` names; restore and release it on exit.

    Raises:
        UnknownNameError: ``settings.name`` is not a registered backend.
        and every error of the backend's ``load``.
    """
    state = get_backend(settings.name).load(source, settings)
    try:
        yield state
    finally:
        state.close()
