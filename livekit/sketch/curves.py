"""The shapes a source can take: response curves on 0..1 and LFO waveforms. Pure math, no state."""

from __future__ import annotations

import math
import random

_CURVE_K = 4.0  # steepness of the "exp" and "log" curves


def apply_curve(u: float, shape: str | float) -> float:
    """A response curve on u in 0..1 (clamped) -> 0..1."""
    u = min(max(u, 0.0), 1.0)
    if not isinstance(shape, str):
        return u**shape
    if shape == "smoothstep":
        return u * u * (3.0 - 2.0 * u)
    if shape == "exp":
        return math.expm1(_CURVE_K * u) / math.expm1(_CURVE_K)
    if shape == "log":
        return math.log1p(math.expm1(_CURVE_K) * u) / _CURVE_K
    return u


def _noise(index: int, seed: int) -> float:
    return random.Random(index * 1_000_003 + seed).random()


def lfo_value(shape: str, cycles: float, seed: int = 0) -> float:
    """The 0..1 value of an LFO waveform `cycles` cycles after its start (sine and triangle start at 0)."""
    f = cycles % 1.0
    if shape == "sine":
        return 0.5 - 0.5 * math.cos(2.0 * math.pi * f)
    if shape == "triangle":
        return 1.0 - abs(2.0 * f - 1.0)
    if shape == "saw":
        return f
    if shape == "square":
        return 1.0 if f < 0.5 else 0.0
    i = math.floor(cycles)
    if shape == "random":
        return _noise(i, seed)
    a, b = _noise(i, seed), _noise(i + 1, seed)  # smooth_random: eased glide between held random values
    return a + (b - a) * f * f * (3.0 - 2.0 * f)
