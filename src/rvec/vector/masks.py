"""Which tensors a vector touches and with what weight: include/exclude regexes, layer ranges,
module classes and per-depth α schedules (a ramp, a constant, or a profile over depth blocks),
combined into one :class:`Selection` that maps a tensor name to a factor. ``invert`` selects the
complement, so "only part P of v" and "all of v but P" add up to v exactly."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rvec.errors import InvalidArgumentError
from rvec.vector.family import CLASS_ORDER, layer_of, module_class


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
    ``constant:c`` is ``c`` everywhere; ``profile:a,b,c…`` cuts the layers into as many equal depth
    blocks and gives block ``i`` the factor ``values[i]`` (layer ``l`` of ``L`` is in block
    ``⌊l·N/L⌋``). Tensors outside the blocks (embeddings, final norm) get ``outside``."""

    kind: str = "constant"
    start: float = 1.0
    end: float = 1.0
    outside: float = 1.0
    values: tuple[float, ...] = ()

    def factor(self, layer: int | None, num_layers: int) -> float:
        if layer is None:
            return self.outside
        if self.kind == "profile":
            return self.values[min(len(self.values) - 1, layer * len(self.values) // max(1, num_layers))]
        if self.kind == "constant" or num_layers <= 1:
            return self.start
        return self.start + (self.end - self.start) * layer / (num_layers - 1)

    @property
    def is_identity(self) -> bool:
        """Factor 1 everywhere."""
        return self.kind == "constant" and self.start == 1.0 and self.outside == 1.0

    def describe(self) -> str:
        if self.kind == "profile":
            text = "profile:" + ",".join(f"{v:g}" for v in self.values)
        elif self.kind == "constant":
            text = f"constant:{self.start:g}"
        else:
            text = f"linear:{self.start:g}:{self.end:g}"
        return text if self.outside == 1.0 else f"{text}:outside={self.outside:g}"


def parse_schedule(text: str | None) -> Schedule:
    """``"linear:0:1"``, ``"linear:0.5:1.5:outside=0"``, ``"constant:0.5"`` or ``"profile:0.5,1,2"``."""
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
    if parts[0] == "profile" and len(parts) == 2 and parts[1]:
        return Schedule(
            "profile", outside=outside, values=tuple(_float(text, v) for v in parts[1].split(","))
        )
    raise InvalidArgumentError(
        f"--schedule {text}: expected linear:START:END, constant:C or profile:A,B,… (optionally :outside=X)"
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
    """A tensor is in the part iff it matches some ``include`` (when any is given), matches no
    ``exclude``, lies in one of ``layers`` when given (tensors outside any block are then out) and is
    of one of ``classes`` when given (:func:`rvec.vector.family.module_class`: ``attn.q``, ``mlp.down``,
    ``norm``, ``embed``…). With ``invert`` the selection is the complement of that part. A selected
    tensor's α is multiplied by the schedule's factor for its depth."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    layers: frozenset[int] | None = None
    schedule: Schedule = field(default_factory=Schedule)
    classes: frozenset[str] | None = None
    invert: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inc", _compile(self.include, "--include"))
        object.__setattr__(self, "_exc", _compile(self.exclude, "--exclude"))
        unknown = sorted(set(self.classes or ()) - set(CLASS_ORDER))
        if unknown:
            raise InvalidArgumentError(f"module class {unknown[0]!r} is not one of: {', '.join(CLASS_ORDER)}")

    def selects(self, name: str) -> bool:
        """Whether ``name`` is in the selection (before the schedule)."""
        inside = True
        if (
            (self._inc and not any(p.search(name) for p in self._inc))
            or any(p.search(name) for p in self._exc)
            or (self.layers is not None and layer_of(name) not in self.layers)
            or (self.classes is not None and module_class(name) not in self.classes)
        ):  # type: ignore[attr-defined]
            inside = False
        return inside != self.invert

    def factor(self, name: str, num_layers: int) -> float:
        """0.0 for unselected tensors, else the schedule factor."""
        return self.schedule.factor(layer_of(name), num_layers) if self.selects(name) else 0.0

    @property
    def is_everything(self) -> bool:
        """Every tensor, factor 1: the selection that changes nothing."""
        return self == Selection()

    def describe(self) -> dict[str, object]:
        """JSON-able; keys beyond the four of the first release only when set, so records (and
        fingerprints) of selections without them are unchanged."""
        out: dict[str, object] = {
            "include": list(self.include),
            "exclude": list(self.exclude),
            "layers": sorted(self.layers) if self.layers is not None else None,
            "schedule": self.schedule.describe(),
        }
        if self.classes is not None:
            out["classes"] = sorted(self.classes)
        if self.invert:
            out["invert"] = True
        return out


def parse_selection(
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    layers: str | None = None,
    schedule: str | None = None,
    classes: Sequence[str] | None = None,
    invert: bool = False,
) -> Selection:
    """A :class:`Selection` from ``--include``/``--exclude`` patterns, ``--layers``/``--schedule``
    text and module class names.

    Raises:
        InvalidArgumentError: a pattern, layer range, schedule or class that does not parse.
    """
    return Selection(
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
        layers=parse_layers(layers),
        schedule=parse_schedule(schedule),
        classes=frozenset(classes) if classes is not None else None,
        invert=invert,
    )


def selection_from_record(record: dict[str, object]) -> Selection:
    """The :class:`Selection` that :meth:`Selection.describe` recorded (a study cell's, a run's)."""
    layers = record.get("layers")
    classes = record.get("classes")
    return Selection(
        include=tuple(record.get("include") or ()),  # type: ignore[arg-type]
        exclude=tuple(record.get("exclude") or ()),  # type: ignore[arg-type]
        layers=frozenset(layers) if layers is not None else None,  # type: ignore[arg-type]
        schedule=parse_schedule(str(record.get("schedule") or "constant:1")),
        classes=frozenset(classes) if classes is not None else None,  # type: ignore[arg-type]
        invert=bool(record.get("invert", False)),
    )
