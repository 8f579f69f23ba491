"""Synthesized test music for the beat tracker: drum patterns in several styles, beatless pads and silence (numpy)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 44100


def _kick(sr: int) -> np.ndarray:
    t = np.arange(int(0.25 * sr)) / sr
    freq = 50.0 + 100.0 * np.exp(-t / 0.03)
    return 0.9 * np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.12)


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.18 * sr)) / sr
    return (0.5 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * 190.0 * t)) * np.exp(-t / 0.06)


def _hat(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.05 * sr)) / sr
    return 0.25 * np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t / 0.015)


@dataclass(frozen=True)
class Style:
    """A synthesized track: its name, the tempo a listener taps (None: no beat), and how to render it."""

    name: str
    bpm: float | None  # the expected tempo at the end of the track; None for beatless music
    render: Callable[[float, int], tuple[np.ndarray, np.ndarray]]  # (seconds, seed) -> (mono signal, beat times)


def _pattern(bpm_at: Callable[[float], float], seconds: float, seed: int, hits: dict[str, tuple[float, ...]],
             bar_beats: int = 4, swing: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Place drums at beat positions within each bar (positions in beats; 8th offbeats moved to `swing`)."""
    sr, rng = SAMPLE_RATE, np.random.default_rng(seed)
    out = np.zeros(int(seconds * sr) + sr)
    sounds = {"kick": _kick(sr), "snare": _snare(sr, rng), "hat": _hat(sr, rng)}
    beat_times, t, beat = [], 0.25, 0
    while t < seconds:
        spb = 60.0 / bpm_at(t)
        beat_times.append(t)
        for name, positions in hits.items():
            for pos in positions:
                if int(pos) == beat % bar_beats:
                    frac = pos - int(pos)
                    frac = swing if abs(frac - 0.5) < 1e-9 else frac
                    start = int((t + frac * spb) * sr)
                    sound = sounds[name] * (0.8 + 0.2 * rng.random())
                    out[start : start + len(sound)] += sound[: len(out) - start]
        t += spb
        beat += 1
    out += 0.003 * rng.standard_normal(len(out))
    return out[: int(seconds * sr)], np.array(beat_times)


_EIGHTHS = tuple(i / 2 for i in range(8))


def four_on_the_floor(bpm: float) -> Style:
    """House / techno: kick on every beat, clap on 2 and 4, open hat on the offbeats."""
    hits = {"kick": (0, 1, 2, 3), "snare": (1, 3), "hat": (0.5, 1.5, 2.5, 3.5)}
    return Style(f"four-floor {bpm:g}", bpm, lambda s, seed: _pattern(lambda t: bpm, s, seed, hits))


def breakbeat(bpm: float) -> Style:
    """Drum and bass two-step: kick on 1 and the and-of-3, snare on 2 and 4, eighth hats."""
    hits = {"kick": (0, 2.5), "snare": (1, 3), "hat": _EIGHTHS}
    return Style(f"breakbeat {bpm:g}", bpm, lambda s, seed: _pattern(lambda t: bpm, s, seed, hits))


def halftime(bpm: float) -> Style:
    """Halftime: kick on 1, snare on 3, eighth hats: the tempo is the hats' quarter notes."""
    hits = {"kick": (0,), "snare": (2,), "hat": _EIGHTHS}
    return Style(f"halftime {bpm:g}", bpm, lambda s, seed: _pattern(lambda t: bpm, s, seed, hits))


def swing(bpm: float) -> Style:
    """Swung hip-hop: kick on 1 and 3, snare on 2 and 4, hats on triplet-swung eighths."""
    hits = {"kick": (0, 2), "snare": (1, 3), "hat": _EIGHTHS}
    return Style(f"swing {bpm:g}", bpm, lambda s, seed: _pattern(lambda t: bpm, s, seed, hits, swing=2 / 3))


def ramp(start_bpm: float, end_bpm: float, ramp_s: float = 8.0, at_s: float = 6.0) -> Style:
    """Four-on-the-floor whose tempo glides linearly from start_bpm to end_bpm between at_s and at_s + ramp_s."""
    hits = {"kick": (0, 1, 2, 3), "snare": (1, 3), "hat": (0.5, 1.5, 2.5, 3.5)}

    def bpm_at(t: float) -> float:
        return start_bpm + (end_bpm - start_bpm) * min(max((t - at_s) / ramp_s, 0.0), 1.0)

    return Style(f"ramp {start_bpm:g}->{end_bpm:g}", end_bpm, lambda s, seed: _pattern(bpm_at, s, seed, hits))


def _pads(seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    sr, rng = SAMPLE_RATE, np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    out = np.zeros(len(t))
    for root in (110.0, 138.6, 164.8, 220.0, 277.2):
        detune = root * (1 + 0.003 * rng.standard_normal(3))
        swell = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.05, 0.15) * t + rng.uniform(0, 6.28))
        out += swell * sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) for f in detune) * 0.04
    return out + 0.003 * rng.standard_normal(len(t)), np.array([])


PADS = Style("beatless pads", None, _pads)
SILENCE = Style("silence", None, lambda s, seed: (np.zeros(int(s * SAMPLE_RATE)), np.array([])))


def all_styles() -> list[Style]:
    """Every style the tests and the beat report run."""
    return [four_on_the_floor(97.0), four_on_the_floor(124.0), breakbeat(174.0), breakbeat(165.0), halftime(140.0),
            swing(92.0), ramp(120.0, 128.0), PADS, SILENCE]
