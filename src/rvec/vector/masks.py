"""Which tensors a vector touches and with what weight: include/exclude regexes, layer ranges and
per-depth α schedules, combined into one :class:`Selection` that maps a tensor name to a factor."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rvec.errors import InvalidArgumentError
from rvec.vector.family import layer_of


def parse_layers(text: str | None) -> frozenset[int] | None:
    """``"0-13,20"`` → {0..13, 20}; ``None`` → all layers."""
    if text is None:
        return None
    layers: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise InvalidArgumentError(f"--layers {text}: '{part}' is not a layer or range like 0-13")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise InvalidArgumentError(f"--layers {text}: range '{part}' is reversed; write {hi}-{lo}")
        layers.update(range(lo, hi + 1))
    return frozenset(layers)


@dataclass(frozen=True)
class Schedule:
    """Per-depth α factor. ``linear:a:b`` ramps from ``a`` at layer 0 to ``b`` at the last layer;
    ``constant:c`` is ``c`` everywhere. Tensors outside the blocks (embeddings, final norm) get ``outside``."""

    kind: str = "constant"
    start: float = 1.0
    end: float = 1.0
    outside: float = 1.0

    def factor(self, layer: int | None, num_layers: int) -> float:
        if layer is None:
            return self.outside
        if self.kind == "constant" or num_layers <= 1:
            return self.start
        return self.start + (self.end - self.start) * layer / (num_layers - 1)

    def describe(self) -> str:
        return (
            f"constant:{self.start:g}" if self.kind == "constant" else f"linear:{self.start:g}:{self.end:g}"
        )


def parse_schedule(text: str | None) -> Schedule:
    """``"linear:0:1"``, ``"linear:0.5:1.5:outside=0"`` or ``"constant:0.5"``."""
    if not text:
        return Schedule()
    parts = text.split(":")
    outside = 1.0
    if parts[-1].startswith("outside="):
        outside = _float(text, parts.pop()[len("outside=") :])
    if parts[0] == "linear" and len(parts) == 3:
        return Schedule("linear", _float(text, parts[1]), _float(text, parts[2]), outside)
    if parts[0] == "constant" and len(parts) == 2:
        value = _float(text, parts[1])
        return Schedule("constant", value, value, outside)
    raise InvalidArgumentError(
        f"--schedule {text}: expected linear:START:END or constant:C (optionally :outside=X)"
    )


def _float(text: str, value: str) -> float:
    try:
        return float(value)
    except ValueError as err:
        raise InvalidArgumentError(f"--schedule {text}: '{value}' is not a number") from err


def _compile(patterns: tuple[str, ...], flag: str) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p))
        except re.error as err:
            raise InvalidArgumentError(f"{flag} {p}: invalid regular expression ({err})") from err
    return tuple(compiled)


@dataclass(frozen=True)
class Selection:
    """A tensor is selected iff it matches some ``include`` (when any is given), matches no
    ``exclude``, and — when ``layers`` is given — lies in one of those blocks (tensors outside any
    block are then not selected). Its α is multiplied by the schedule's factor for its depth."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    layers: frozenset[int] | None = None
    schedule: Schedule = field(default_factory=Schedule)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inc", _compile(self.include, "--include"))
        object.__setattr__(self, "_exc", _compile(self.exclude, "--exclude"))

    def factor(self, name: str, num_layers: int) -> float:
        """0.0 for unselected tensors, else the schedule factor."""
        if self._inc and not any(p.search(name) for p in self._inc):  # type: ignore[attr-defined]
            return 0.0
        if any(p.search(name) for p in self._exc):  # type: ignore[attr-defined]
            return 0.0
        layer = layer_of(name)
        if self.layers is not None and (layer is None or layer not in self.layers):
            return 0.0
        return self.schedule.factor(layer, num_layers)

    def describe(self) -> dict[str, object]:
        return {
            "include": list(self.include),
            "exclude": list(self.exclude),
            "layers": sorted(self.layers) if self.layers is not None else None,
            "schedule": self.schedule.describe(),
        }


def parse_selection(
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    layers: str | None = None,
    schedule: str | None = None,
) -> Selection:
    """A :class:`Selection` from ``--include``/``--exclude`` patterns and ``--layers``/``--schedule`` text.

    Raises:
        InvalidArgumentError: a pattern, layer range or schedule that does not parse.
    """
    return Selection(
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
        layers=parse_layers(layers),
        schedule=parse_schedule(schedule),
    )
