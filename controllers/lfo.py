"""LFOs: free-running in Hz or synced in beats; sine, triangle, saw, square, sample-and-hold and smooth random.

An LFO is a pure function of its position (in cycles), so it is deterministic: the same seed, time and beat give the
same value on every run, and the random shapes need no state (each cycle's value is a hash of seed and cycle index).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from controllers.base import ControlEvent, TempoState
from controllers.tempo import TempoSource, beat_at

SHAPES = ("sine", "triangle", "saw", "square", "sample_hold", "smooth_random")
_MASK = (1 << 64) - 1


def _unit_hash(seed: int, index: int) -> float:
    """A uniform number in [0, 1) from (seed, index): SplitMix64's finaliser over a combined key."""
    z = (seed * 0x9E3779B97F4A7C15 + index * 0xD1B54A32D192ED03 + 0x632BE59BD9B4E019) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return ((z ^ (z >> 31)) >> 11) / float(1 << 53)


@dataclass(frozen=True)
class LFO:
    """One low-frequency oscillator; give rate_hz (free-running) or period_beats (synced to a clock), not both."""

    shape: str = "sine"  # one of SHAPES
    rate_hz: float | None = None  # cycles per second when free-running
    period_beats: float | None = None  # beats per cycle when synced (1 = every beat, 4 = every bar in 4/4)
    phase: float = 0.0  # offset in cycles (0.25 = a quarter cycle ahead)
    low: float = 0.0  # value at the bottom of the cycle
    high: float = 1.0  # value at the top
    pulse_width: float = 0.5  # share of the cycle a square spends high
    seed: int = 0  # for sample_hold and smooth_random

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")
        if (self.rate_hz is None) == (self.period_beats is None):
            raise ValueError("give exactly one of rate_hz (free-running) or period_beats (beat-synced)")
        if self.rate_hz is not None and not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")
        if self.period_beats is not None and not (math.isfinite(self.period_beats) and self.period_beats > 0):
            raise ValueError(f"period_beats must be > 0, got {self.period_beats}")
        if not 0.0 < self.pulse_width < 1.0:
            raise ValueError(f"pulse_width must be between 0 and 1 (exclusive), got {self.pulse_width}")

    @property
    def synced(self) -> bool:
        """True when the LFO follows beats rather than seconds."""
        return self.period_beats is not None

    def unit(self, cycles: float) -> float:
        """The shape's value 0..1 at a position in cycles (sine and triangle start mid-way, rising)."""
        cycles += self.phase
        p = cycles % 1.0
        shape = self.shape
        if shape == "sine":
            return 0.5 + 0.5 * math.sin(2.0 * math.pi * p)
        if shape == "triangle":
            return 1.0 - abs(2.0 * ((p + 0.25) % 1.0) - 1.0)
        if shape == "saw":
            return p
        if shape == "square":
            return 1.0 if p < self.pulse_width else 0.0
        index = math.floor(cycles)
        if shape == "sample_hold":
            return _unit_hash(self.seed, index)
        a, b = _unit_hash(self.seed, index), _unit_hash(self.seed, index + 1)
        return a + (b - a) * (1.0 - math.cos(math.pi * p)) * 0.5  # smooth_random: cosine glide

    def value(self, cycles: float) -> float:
        """The output (low..high) at a position in cycles."""
        return self.low + (self.high - self.low) * self.unit(cycles)

    def at(self, elapsed_s: float, beat: float) -> float:
        """The output at elapsed_s since the LFO started (free-running) or at a beat count (synced)."""
        if self.period_beats is not None:
            return self.value(beat / self.period_beats)
        return self.value(elapsed_s * self.rate_hz)  # type: ignore[operator]


class LFOBank:
    """Named LFOs read together; synced ones follow a clock (or fallback_bpm without one). Emits lfo/<name>."""

    def __init__(self, lfos: Mapping[str, LFO], clock: TempoSource | None = None, start_s: float | None = None,
                 fallback_bpm: float = 120.0) -> None:
        if fallback_bpm <= 0:
            raise ValueError(f"fallback_bpm must be > 0, got {fallback_bpm}")
        bad = [name for name in lfos if not name or "/" in name]
        if bad:
            raise ValueError(f"LFO names must be non-empty and contain no '/', got {bad}")
        self.lfos = dict(lfos)
        self.clock = clock
        self.start_s = time.monotonic() if start_s is None else start_s
        self.fallback_bpm = fallback_bpm

    def _beat(self, now: float, tempo: TempoState | None) -> float:
        state = tempo if tempo is not None else (self.clock.tempo() if self.clock is not None else None)
        if state is None:
            return (now - self.start_s) * self.fallback_bpm / 60.0
        return beat_at(state, now)

    def values(self, now_s: float | None = None, tempo: TempoState | None = None) -> dict[str, float]:
        """Every LFO's output at now_s (default now); synced LFOs use `tempo` if given, else the clock's."""
        now = time.monotonic() if now_s is None else now_s
        beat = self._beat(now, tempo) if any(lfo.synced for lfo in self.lfos.values()) else 0.0
        return {name: lfo.at(now - self.start_s, beat) for name, lfo in self.lfos.items()}

    def events(self, now_s: float | None = None, tempo: TempoState | None = None) -> list[ControlEvent]:
        """lfo/<name> events at now_s, for the runtime to poll once per tick (tempo as in values())."""
        now = time.monotonic() if now_s is None else now_s
        return [ControlEvent(f"lfo/{name}", value, now) for name, value in self.values(now, tempo).items()]
