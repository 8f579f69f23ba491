"""Attack/release envelope followers: a one-pole smoother that rises and falls at different speeds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class EnvelopeConfig:
    """Attack and release times for the smoothed audio features (0 = follow the raw value)."""

    attack_s: float = 0.0  # time constant when a value rises; 0 passes rises through, so hits stay sharp
    release_s: float = 0.1  # time constant when a value falls; 0.1 s keeps visuals from flickering
    per_feature: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # name -> (attack_s, release_s)

    def __post_init__(self) -> None:
        _check_times(self.attack_s, self.release_s, "EnvelopeConfig")
        for name, times in self.per_feature.items():
            if len(times) != 2:
                raise ValueError(f"per_feature[{name!r}] must be (attack_s, release_s), got {times!r}")
            _check_times(times[0], times[1], f"per_feature[{name!r}]")

    def times_for(self, name: str) -> tuple[float, float]:
        """(attack_s, release_s) for one feature name, e.g. 'bass' or 'rms_db'."""
        return tuple(self.per_feature.get(name, (self.attack_s, self.release_s)))  # type: ignore[return-value]


def _check_times(attack_s: float, release_s: float, where: str) -> None:
    if attack_s < 0 or release_s < 0 or not (math.isfinite(attack_s) and math.isfinite(release_s)):
        raise ValueError(f"{where}: attack_s and release_s must be finite and >= 0 seconds, got {attack_s}, {release_s}")


def smoothing_coefficient(time_s: float, rate_hz: float) -> float:
    """Share of the gap to the target closed per update: 1 - exp(-1 / (time_s * rate_hz)); 1.0 when time_s is 0."""
    if rate_hz <= 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
    return 1.0 if time_s <= 0 else 1.0 - math.exp(-1.0 / (time_s * rate_hz))


class EnvelopeFollower:
    """Follows one value: moves toward a rising input with the attack time, a falling one with the release time."""

    def __init__(self, attack_s: float, release_s: float, rate_hz: float) -> None:
        _check_times(attack_s, release_s, "EnvelopeFollower")
        self._attack = smoothing_coefficient(attack_s, rate_hz)
        self._release = smoothing_coefficient(release_s, rate_hz)
        self.value: float | None = None  # None until the first input

    def process(self, x: float) -> float:
        """Feed one input sample and return the envelope."""
        if self.value is None:
            self.value = x
        else:
            self.value += (self._attack if x > self.value else self._release) * (x - self.value)
        return self.value


class EnvelopeBank:
    """Many followers at once (one per entry of a feature vector), updated with one vectorised step."""

    def __init__(self, attack_s: Sequence[float], release_s: Sequence[float], rate_hz: float) -> None:
        if len(attack_s) != len(release_s):
            raise ValueError(f"attack_s and release_s differ in length: {len(attack_s)} vs {len(release_s)}")
        for a, r in zip(attack_s, release_s):
            _check_times(a, r, "EnvelopeBank")
        self._attack = np.array([smoothing_coefficient(a, rate_hz) for a in attack_s])
        self._release = np.array([smoothing_coefficient(r, rate_hz) for r in release_s])
        self._value: np.ndarray | None = None

    @classmethod
    def for_names(cls, names: Sequence[str], config: EnvelopeConfig, rate_hz: float) -> EnvelopeBank:
        """A bank with the attack/release of each named feature taken from config."""
        times = [config.times_for(n) for n in names]
        return cls([t[0] for t in times], [t[1] for t in times], rate_hz)

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed one vector and return the envelopes (a view of the internal state: copy it to keep it)."""
        if self._value is None:
            self._value = np.array(x, dtype=np.float64)
        else:
            gap = x - self._value
            self._value += np.where(gap > 0, self._attack, self._release) * gap
        return self._value
