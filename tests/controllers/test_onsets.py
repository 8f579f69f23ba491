"""Onset detection on a synthetic drum pattern: F1, timing, threshold and minimum gap."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.features import AnalyzerConfig, Spectrum, analyze_array
from controllers.onsets import OnsetConfig, OnsetDetector, OnsetStrength, match_onsets
from tests.controllers.test_beat import RATE, click_sound, hat_sound, kick_sound, place, snare_sound


def drum_pattern(bpm: float, bars: int, seed: int) -> tuple[np.ndarray, list[float]]:
    """Two-bar 16th-note pattern: kicks (with a syncopated one), snares on 2 and 4, accented 8th hats, a ghost snare,
    at varied levels over a quiet noise floor: (signal, the true onset times)."""
    rng = np.random.default_rng(seed)
    step = 60.0 / bpm / 4
    out = np.zeros(int((bars * 16 * step + 1.0) * RATE))
    onsets: set[float] = set()
    for bar in range(bars):
        for s in range(16):
            t = 0.2 + (bar * 16 + s) * step
            hits = []
            if s in (0, 8, 10):
                hits.append((kick_sound(), 0.9))
            if s in (4, 12):
                hits.append((snare_sound(rng), 0.7))
            if s % 2 == 0:
                hits.append((hat_sound(rng), 0.4 if s % 4 == 0 else 0.25))
            if s == 15 and bar % 2 == 1:
                hits.append((snare_sound(rng), 0.3))
            for sound, amplitude in hits:
                place(out, [t], sound, amplitude)
            if hits:
                onsets.add(round(t, 6))
    out += 0.001 * rng.standard_normal(len(out))
    return out, sorted(onsets)


def detect(signal: np.ndarray, config: OnsetConfig | None = None, hop: int = 512) -> list[float]:
    """Onset times through the same analysis the live input uses."""
    analysis = AnalyzerConfig(hop=hop, onsets=config or OnsetConfig())
    events, _ = analyze_array(signal, RATE, analysis)
    return [e.time_s for e in events if e.source == "audio/onset"]


@pytest.mark.parametrize("bpm, seed", [(100.0, 0), (120.0, 1), (140.0, 2)])
def test_drum_pattern_onsets_f1_at_30ms(bpm: float, seed: int) -> None:
    signal, truth = drum_pattern(bpm, bars=4, seed=seed)
    precision, recall, f1 = match_onsets(detect(signal), truth, tolerance_s=0.030)
    assert f1 >= 0.95, (precision, recall, f1)


def test_onset_times_are_accurate_to_a_few_milliseconds() -> None:
    signal, truth = drum_pattern(120.0, bars=2, seed=3)
    detected = np.array(detect(signal))
    errors = np.abs(detected[:, None] - np.array(truth)[None, :]).min(axis=1)
    assert np.median(errors) <= 0.005 and errors.max() <= 0.015, errors


def test_quiet_playing_is_detected_too() -> None:
    signal, truth = drum_pattern(120.0, bars=2, seed=4)
    _, _, f1 = match_onsets(detect(signal * 0.03), truth, tolerance_s=0.030)  # about -30 dB
    assert f1 >= 0.95


def test_silence_and_steady_tone_give_no_onsets() -> None:
    t = np.arange(4 * RATE) / RATE
    assert detect(np.zeros(4 * RATE)) == []
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.001 * np.random.default_rng(0).standard_normal(len(t))
    tone[: RATE // 100] *= np.linspace(0, 1, RATE // 100)
    assert len(detect(tone)) <= 1  # at most the tone's own start


def test_min_gap_merges_hits_closer_than_the_gap() -> None:
    signal = np.zeros(3 * RATE)
    roll = 0.2 + np.arange(40) * 0.04  # a 40 ms roll
    place(signal, roll, click_sound(), 0.8)
    every = detect(signal, OnsetConfig(min_gap_s=0.02))
    sparse = detect(signal, OnsetConfig(min_gap_s=0.1))
    assert len(every) >= 38
    assert np.diff(sparse).min() >= 0.1 - 1e-9 and len(sparse) < len(every) / 2


def test_onset_event_values_are_relative_strengths() -> None:
    signal = np.zeros(3 * RATE)
    place(signal, [0.5, 1.5], kick_sound(), 0.9)
    place(signal, [1.0, 2.0], kick_sound(), 0.1)
    events, _ = analyze_array(signal, RATE)
    values = [e.value for e in events if e.source == "audio/onset"]
    assert len(values) == 4 and all(0.0 < v <= 1.0 for v in values)
    assert values[0] > values[1] and values[2] > values[3]


def test_detector_works_on_its_own_frames() -> None:
    fft, hop = 2048, 441
    spectrum, strength = Spectrum(fft, hop), OnsetStrength(OnsetConfig(), 44100, fft, hop)
    detector = OnsetDetector(OnsetConfig(), 44100 / hop, fft / 44100)
    signal = np.zeros(2 * 44100)
    for t in (0.3, 0.9, 1.5):
        i = int(t * 44100)
        signal[i : i + 441] += np.exp(-np.arange(441) / 100.0) * np.sin(np.arange(441) * 0.3)
    found = []
    for end in range(hop, len(signal) + 1, hop):
        onset = detector.update(strength.update(spectrum.push(signal[end - hop : end])), end / 44100)
        if onset is not None:
            found.append(onset)
    assert match_onsets(found, [0.3, 0.9, 1.5], 0.015)[2] == 1.0


def test_match_onsets_counts_one_to_one() -> None:
    assert match_onsets([1.0, 1.01, 2.0], [1.0, 2.02], 0.03) == pytest.approx((2 / 3, 1.0, 0.8))
    assert match_onsets([], [1.0], 0.03) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"min_freq_hz": 5000.0, "max_freq_hz": 100.0}, "min_freq_hz < max_freq_hz"),
    ({"min_gap_s": -1.0}, "min_gap_s"),
    ({"compression": 0.0}, "compression"),
])
def test_config_errors_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OnsetConfig(**kwargs)
