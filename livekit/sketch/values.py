"""TickValues: what update(p, t) sees each tick; read and written by attribute or item."""

from __future__ import annotations

import math
from collections.abc import Iterator

from livekit.sketch.suggest import did_you_mean


class TickValues:
    """This tick's values for update(): read and write by attribute or item (p.glow, p["guidance"] = 1.5)."""

    __slots__ = ("_values", "_names")

    def __init__(self, values: dict[str, float], names: frozenset[str]) -> None:
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_names", names)

    def _unknown(self, name: str) -> str:
        return f"unknown parameter {name!r}{did_you_mean(name, self._names)}"

    def __getitem__(self, name: str) -> float | None:
        if name in self._values:
            return self._values[name]
        if name in self._names:
            return None  # a target that is inactive this tick (e.g. morph when nothing maps it)
        raise KeyError(self._unknown(name))

    def __getattr__(self, name: str) -> float | None:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(self._unknown(name)) from None

    def __setitem__(self, name: str, value: float) -> None:
        if name not in self._names:
            raise KeyError(self._unknown(name))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"p.{name} must be a finite number, got {value!r}")
        self._values[name] = float(value)

    def __setattr__(self, name: str, value: float) -> None:
        try:
            self[name] = value
        except KeyError:
            raise AttributeError(self._unknown(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, name: str, default: float | None = None) -> float | None:
        """The value of name, or default when it is inactive."""
        value = self[name]
        return default if value is None else value


