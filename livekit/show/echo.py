"""MIDI echo: which CC shows which target, so LED rings and motor faders follow values set elsewhere (OSC, scenes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from livekit.sketch.sources import KeyInput


@dataclass(frozen=True)
class EchoRoute:
    """One target shown on one MIDI control: value lo..hi is sent as 0..1."""

    key: str  # MIDI source key, e.g. "midi/cc/0/1"
    target: str  # target or Param name
    lo: float
    hi: float

    def knob(self, value: float) -> float:
        """The 0..1 knob position that shows `value`."""
        return min(1.0, max(0.0, (value - self.lo) / (self.hi - self.lo))) if self.hi != self.lo else 0.0


def echo_routes(spec: Any, learned: Mapping[str, str] | None = None) -> list[EchoRoute]:
    """Routes for every level target driven by a MIDI CC (declared in the sketch, or learned: target -> key)."""
    routes = []
    for target in spec.mapping.targets.values():
        source = target.source
        if source is None or target.trigger or not isinstance(source.origin, KeyInput):
            continue
        key = source.origin.key
        if not key.startswith(("midi/cc/", "midi/cc14/")):
            continue
        lo, hi = source.out_range if source.explicit_range else (target.span or source.out_range)
        routes.append(EchoRoute(key, target.name, float(lo), float(hi)))
    for name, key in (learned or {}).items():
        target = spec.mapping.targets.get(name)
        span = target.span if target is not None and target.span else (0.0, 1.0)
        routes.append(EchoRoute(key, name, float(span[0]), float(span[1])))
    return routes
