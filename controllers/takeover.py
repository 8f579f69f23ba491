"""Soft takeover (pick-up): after a value jumps elsewhere, a knob takes over only when it reaches the current value.

Pure logic in the knob's own 0..1 space; the caller converts a parameter's value into that space before `jump`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TakeoverConfig:
    """When a knob counts as having reached the value."""

    threshold: float = 0.03  # |knob - value| at or below this picks the value up (about 4 steps of a 7-bit CC)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in range 0..1, got {self.threshold}")


class SoftTakeover:
    """One mapping's pick-up state: `move` passes knob values through once the knob has caught the current value."""

    def __init__(self, value: float | None = None, config: TakeoverConfig | None = None) -> None:
        self.config = config or TakeoverConfig()
        self._value = value  # the mapping's current value in knob space; None = unknown, the knob rules at once
        self._knob: float | None = None  # last knob position seen
        self._engaged = value is None

    @property
    def value(self) -> float | None:
        """The current value in knob space (None before anything set it)."""
        return self._value

    @property
    def engaged(self) -> bool:
        """True while knob moves pass through."""
        return self._engaged

    def jump(self, value: float) -> None:
        """The value was set elsewhere (OSC, a scene, learn): the knob must catch it again."""
        self._value = value
        knob = self._knob
        self._engaged = knob is not None and abs(knob - value) <= self.config.threshold

    def move(self, knob: float) -> float | None:
        """The knob moved to `knob`: the value to apply, or None while the knob has not caught the value yet."""
        previous, self._knob = self._knob, knob
        if not self._engaged:
            target = self._value  # not None: only a jump disengages, and a jump sets it
            crossed = previous is not None and target is not None and (previous - target) * (knob - target) <= 0
            if not crossed and target is not None and abs(knob - target) > self.config.threshold:
                return None
            self._engaged = True
        self._value = knob
        return knob


class TakeoverBank:
    """Soft takeover for many mappings, keyed by name (e.g. the target parameter)."""

    def __init__(self, config: TakeoverConfig | None = None) -> None:
        self.config = config or TakeoverConfig()
        self._mappings: dict[str, SoftTakeover] = {}

    def _get(self, name: str) -> SoftTakeover:
        takeover = self._mappings.get(name)
        if takeover is None:
            takeover = self._mappings[name] = SoftTakeover(config=self.config)
        return takeover

    def move(self, name: str, knob: float) -> float | None:
        """A knob mapped to `name` moved: the value to apply, or None while it has not caught up."""
        return self._get(name).move(knob)

    def jump(self, name: str, value: float) -> None:
        """`name` was set elsewhere to `value` (knob space)."""
        self._get(name).jump(value)

    def engaged(self, name: str) -> bool:
        """True if the knob on `name` currently passes through (HUD: show 'pick up' otherwise)."""
        takeover = self._mappings.get(name)
        return takeover is None or takeover.engaged
