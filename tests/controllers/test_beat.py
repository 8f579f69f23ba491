"""Beat tracking on synthetic click, kick and drum tracks, analysed faster than real time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controllers.beat import BeatConfig, BeatTracker, comb_scores
from controllers.features import AnalyzerConfig, analyze_array

RATE = 48000
START_S = 1000.0  # analysis clock at the first sample: like time.monotonic(), far from zero


def place(out: np.ndarray, times_s: np.ndarray | list[float], sound: np.ndarray, amplitude: float) -> None:
    """Mix a sound into out at each time (with a 10 ms fade at its end so the cut makes no click)."""
    sound = sound.copy()
    fade = min(len(sound) // 4, RATE // 100)
    sound[-fade:] *= np.linspace(1.0, 0.0, fade)
    for t in times_s:
        i = int(round(t * RATE))
        part = sound[: max(0, min(len(sound), len(out) - i))]
        out[i : i + len(part)] += amplitude * part


def click_sound() -> np.ndarray:
    """A 10 ms metronome click: a 2 kHz tone with a 3 ms decay."""
    t = np.arange(int(0.01 * RATE)) / RATE
    return np.sin(2 * np.pi * 2000.0 * t) * np.exp(-t / 0.003)


def kick_sound() -> np.ndarray:
    """A kick drum: a sine sweeping 150 -> 50 Hz with a 120 ms decay."""
    t = np.arange(int(0.3 * RATE)) / RATE
    freq = 50.0 + 100.0 * np.exp(-t / 0.03)
    return np.sin(2 * np.pi * np.cumsum(freq) / RATE) * np.exp(-t / 0.12)


def hat_sound(rng: np.random.Generator) -> np.ndarray:
    """A closed hi-hat: differentiated noise with a 15 ms decay."""
    t = np.arange(int(0.06 * RATE)) / RATE
    return np.diff(rng.standard_normal(len(t) + 1)) * 0.5 * np.exp(-t / 0.015)


def snare_sound(rng: np.random.Generator) -> np.ndarray:
    """A snare: a noise burst plus a 190 Hz body."""
    t = np.arange(int(0.18 * RATE)) / RATE
    return 0.6 * rng.standard_normal(len(t)) * np.exp(-t / 0.05) + 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.08)


def beat_track(bpm: float, seconds: float, sound: str = "click", first_s: float = 0.1013) -> tuple[np.ndarray, np.ndarray]:
    """(signal, beat times in seconds from its start): one click or kick on every beat."""
    beats = np.arange(first_s, seconds - 0.05, 60.0 / bpm)
    out = np.zeros(int(seconds * RATE))
    place(out, beats, click_sound() if sound == "click" else kick_sound(), 0.8)
    return out, beats


def drum_groove(bpm: float, seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Kick on every beat, snare on 2 and 4, hats on the off-beats, a little noise: (signal, beat times)."""
    rng = np.random.default_rng(seed)
    period = 60.0 / bpm
    beats = np.arange(0.1013, seconds - 0.05, period)
    out = np.zeros(int(seconds * RATE))
    place(out, beats, kick_sound(), 0.9)
    place(out, beats[1::2], snare_sound(rng), 0.6)
    for t in beats + period / 2:
        place(out, [t], hat_sound(rng), 0.3)
    out += 0.005 * rng.standard_normal(len(out))
    return out, beats


def phase_error_s(times_s: np.ndarray, beats_s: np.ndarray) -> np.ndarray:
    """Distance of each time to the nearest true beat."""
    return np.abs(times_s[:, None] - beats_s[None, :]).min(axis=1)


@pytest.mark.parametrize("sound", ["click", "kick"])
@pytest.mark.parametrize("bpm", [90.0, 120.0, 128.0, 174.0])
def test_bpm_and_phase_locked_within_four_seconds(bpm: float, sound: str) -> None:
    signal, beats = beat_track(bpm, 8.0, sound)
    events, analyzer = analyze_array(signal, RATE, start_time_s=START_S)
    beats_s = beats + START_S

    bpm_after_4s = [e.value for e in events if e.source == "audio/bpm" and e.time_s >= START_S + 4.0]
    assert bpm_after_4s, "no tempo reported after 4 s"
    assert max(abs(b - bpm) for b in bpm_after_4s) <= 1.0, (min(bpm_after_4s), max(bpm_after_4s))

    beat_events = np.array([e.time_s for e in events if e.source == "audio/beat" and e.time_s >= START_S + 4.0])
    expected = int((8.0 - 4.0) * bpm / 60.0)
    assert len(beat_events) >= expected - 1, f"{len(beat_events)} beat events, expected about {expected}"
    assert phase_error_s(beat_events, beats_s).max() <= 0.030

    state = analyzer.tempo()
    assert state is not None and state.running
    phase_at_true_beats = [((analyzer.tracker.beat_at(t) + 0.5) % 1.0) - 0.5 for t in beats_s[beats_s > START_S + 4]]
    assert max(abs(p) for p in phase_at_true_beats) * 60.0 / bpm <= 0.030


@pytest.mark.parametrize("bpm", [120.0, 128.0])
def test_groove_with_snare_and_offbeat_hats_is_not_doubled_or_halved(bpm: float) -> None:
    signal, beats = drum_groove(bpm, 8.0)
    events, analyzer = analyze_array(signal, RATE, start_time_s=START_S)
    state = analyzer.tempo()
    assert state is not None and abs(state.bpm - bpm) <= 1.0, state
    beat_events = np.array([e.time_s for e in events if e.source == "audio/beat" and e.time_s >= START_S + 5.0])
    assert len(beat_events) >= 5 and phase_error_s(beat_events, beats + START_S).max() <= 0.030


def test_predicted_next_beat_lands_on_the_next_click() -> None:
    signal, beats = beat_track(128.0, 6.0)
    beats_s = beats + START_S
    events, analyzer = analyze_array(signal, RATE, start_time_s=START_S)
    predictions = [(e.time_s, e.value) for e in events if e.source == "audio/next_beat_s" and e.time_s >= START_S + 4.0]
    assert predictions
    period_s = 60.0 / 128.0
    grid_s = beats_s[0] + np.arange(len(beats_s) + 2) * period_s  # the true beats, continued past the end
    for now_s, predicted in predictions:
        assert 0.0 < predicted - now_s <= period_s + 0.001, (now_s, predicted)
        assert phase_error_s(np.array([predicted]), grid_s)[0] <= 0.030, (now_s, predicted)


def test_follows_a_tempo_change() -> None:
    first, _ = beat_track(120.0, 8.0, "kick")
    second, _ = beat_track(128.0, 10.0, "kick", first_s=0.0)
    events, analyzer = analyze_array(np.concatenate([first, second]), RATE)
    before = [e.value for e in events if e.source == "audio/bpm" and 6.0 <= e.time_s < 8.0]
    assert before and all(abs(b - 120.0) <= 1.0 for b in before)
    state = analyzer.tempo()
    assert state is not None and abs(state.bpm - 128.0) <= 1.0


def test_no_tempo_from_silence_and_tempo_kept_but_not_running_after_music_stops() -> None:
    events, analyzer = analyze_array(np.zeros(5 * RATE), RATE)
    assert analyzer.tempo() is None
    assert not [e for e in events if e.source in ("audio/beat", "audio/bpm")]

    music, _ = beat_track(120.0, 6.0)
    _, analyzer = analyze_array(np.concatenate([music, np.zeros(6 * RATE)]), RATE)
    state = analyzer.tempo()
    assert state is not None and abs(state.bpm - 120.0) <= 1.0
    assert not state.running


def test_beat_count_is_continuous_across_reestimates() -> None:
    signal, _ = beat_track(120.0, 8.0)
    events, analyzer = analyze_array(signal, RATE)
    numbers = [analyzer.tracker.beat_at(t) for t in (7.0, 7.5, 7.99)]
    assert numbers[1] - numbers[0] == pytest.approx(1.0, abs=0.02)
    beat_times = [e.time_s for e in events if e.source == "audio/beat"]
    assert all(b > a + 0.4 for a, b in zip(beat_times, beat_times[1:])), "a beat was emitted twice"


def test_comb_prefers_the_played_period_over_its_double_and_half() -> None:
    frame_rate = 100.0
    strength = np.zeros(600)
    strength[::50] = 1.0  # 120 BPM impulses at 100 frames per second
    scores = comb_scores(strength, np.array([100.0, 50.0, 25.0]), harmonics=4)
    assert scores[1] > scores[0] and scores[1] > scores[2]
    tracker = BeatTracker(BeatConfig(), frame_rate)
    for i, s in enumerate(strength):
        tracker.update(float(s), i / frame_rate)
    assert tracker.bpm == pytest.approx(120.0, abs=0.5)
    next_beat = tracker.next_beat_time(599 / frame_rate)
    assert next_beat is not None and next_beat == pytest.approx(6.0, abs=0.02)


@pytest.mark.parametrize("kwargs, message", [
    ({"bpm_min": 200.0, "bpm_max": 100.0}, "bpm_min < bpm_max"),
    ({"window_s": 1.0}, "two beats"),
    ({"harmonics": 0}, "harmonics"),
])
def test_config_errors_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BeatConfig(**kwargs)


def test_hop_must_fit_the_window() -> None:
    with pytest.raises(ValueError, match="hop must be"):
        AnalyzerConfig(hop=4096)
    assert math.isclose(AnalyzerConfig().hop / RATE, 0.01067, rel_tol=1e-3)
