"""Level, band, centroid features and envelope followers on synthetic signals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controllers.envelope import EnvelopeBank, EnvelopeConfig, EnvelopeFollower, smoothing_coefficient
from controllers.features import (AnalyzerConfig, FeatureConfig, analyze_array, band_bins, band_energy_fractions,
                                  rms, to_db)

RATE = 48000


def sine(freq_hz: float, seconds: float, amplitude: float = 0.5, rate: int = RATE) -> np.ndarray:
    """A sine wave."""
    return amplitude * np.sin(2 * np.pi * freq_hz * np.arange(int(seconds * rate)) / rate)


def last_values(signal: np.ndarray, config: AnalyzerConfig | None = None) -> dict[str, float]:
    """The analyzer's final feature values for a signal."""
    _, analyzer = analyze_array(signal, RATE, config)
    return analyzer.latest()


@pytest.mark.parametrize("rate", [44100, 48000])
def test_60hz_sine_is_bass_and_5khz_sine_is_high(rate: int) -> None:
    bass = band_energy_fractions(sine(60.0, 1.0, rate=rate), rate)
    high = band_energy_fractions(sine(5000.0, 1.0, rate=rate), rate)
    assert bass["bass"] >= 0.9, bass
    assert high["high"] >= 0.9, high


def test_band_features_through_the_analyzer_put_a_60hz_sine_in_bass() -> None:
    values = last_values(sine(60.0, 2.0))
    bands = {name: values[name] ** 2 for name in ("bass", "low_mid", "mid", "high")}  # amplitudes -> energy
    assert bands["bass"] / sum(bands.values()) >= 0.9
    values = last_values(sine(5000.0, 2.0))
    bands = {name: values[name] ** 2 for name in ("bass", "low_mid", "mid", "high")}
    assert bands["high"] / sum(bands.values()) >= 0.9


def test_levels_of_a_half_scale_sine() -> None:
    values = last_values(sine(1000.0, 1.0, amplitude=0.5))
    assert values["rms"] == pytest.approx(0.5 / math.sqrt(2), rel=0.01)
    assert values["rms_db"] == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.1)
    assert values["peak"] == pytest.approx(0.5, rel=0.01)
    assert values["mid"] == pytest.approx(0.5 / math.sqrt(2), rel=0.03)  # a band reads the RMS of its content
    assert values["centroid_hz"] == pytest.approx(1000.0, rel=0.05)
    assert 0.0 < values["centroid"] < 1.0


def test_custom_band_edges_and_names() -> None:
    config = AnalyzerConfig(features=FeatureConfig(band_names=("sub", "rest"), band_edges_hz=(20.0, 80.0, 20000.0)))
    values = last_values(sine(50.0, 1.0), config)
    assert values["sub"] > 10 * values["rest"]
    assert "bass" not in values


def test_normalised_bands_read_one_for_a_steady_level_and_follow_a_jump() -> None:
    steady = sine(100.0, 6.0, amplitude=0.2)
    assert last_values(steady)["bass_norm"] == pytest.approx(1.0, abs=0.05)
    louder = np.concatenate([steady, sine(100.0, 0.3, amplitude=0.4)])
    assert last_values(louder)["bass_norm"] == pytest.approx(2.0, rel=0.1)


def test_auto_gain_maps_any_input_level_to_the_same_range() -> None:
    quiet = last_values(sine(300.0, 2.0, amplitude=0.01))
    loud = last_values(sine(300.0, 2.0, amplitude=0.8))
    assert quiet["low_mid_auto"] == pytest.approx(1.0, abs=0.05) and loud["low_mid_auto"] == pytest.approx(1.0, abs=0.05)
    assert quiet["level"] == pytest.approx(loud["level"], abs=0.05)
    drop = last_values(np.concatenate([sine(300.0, 2.0, amplitude=0.8), sine(300.0, 0.5, amplitude=0.4)]))
    assert 0.4 < drop["low_mid_auto"] < 0.6  # half the level right after a loud passage


def test_silence_reads_floor_and_zero() -> None:
    values = last_values(np.zeros(RATE))
    assert values["rms_db"] == pytest.approx(FeatureConfig().floor_db)
    assert values["level"] == 0.0 and values["bass_norm"] == 0.0 and values["centroid_hz"] == 0.0


def test_white_noise_centroid_sits_mid_spectrum() -> None:
    noise = 0.1 * np.random.default_rng(0).standard_normal(RATE)
    assert 9000.0 < last_values(noise)["centroid_hz"] < 15000.0


def test_every_event_is_named_audio_and_carries_finite_floats() -> None:
    events, _ = analyze_array(sine(440.0, 0.5), RATE, start_time_s=50.0)
    assert events and all(e.source.startswith("audio/") for e in events)
    assert all(isinstance(e.value, float) and math.isfinite(e.value) for e in events)
    assert events[-1].time_s == pytest.approx(50.0 + (RATE // 2 // 512) * 512 / RATE)


def test_rms_and_db_helpers() -> None:
    assert rms(np.ones(10)) == 1.0
    assert to_db(1.0) == 0.0 and to_db(0.0) == -120.0 and to_db(0.1) == pytest.approx(-20.0)


def test_envelope_attack_and_release_times() -> None:
    rate = 100.0
    follower = EnvelopeFollower(attack_s=0.1, release_s=0.5, rate_hz=rate)
    follower.process(0.0)
    rise = [follower.process(1.0) for _ in range(10)]  # 0.1 s of a step up
    assert rise[-1] == pytest.approx(1 - math.exp(-1), abs=0.01)
    follower.value = 1.0
    fall = [follower.process(0.0) for _ in range(50)]  # 0.5 s of a step down
    assert fall[-1] == pytest.approx(math.exp(-1), abs=0.01)
    assert smoothing_coefficient(0.0, rate) == 1.0


def test_envelope_bank_follows_each_feature_with_its_own_times() -> None:
    config = EnvelopeConfig(attack_s=0.0, release_s=0.5, per_feature={"fast": (0.0, 0.0)})
    bank = EnvelopeBank.for_names(["slow", "fast"], config, rate_hz=100.0)
    bank.process(np.array([1.0, 1.0]))
    out = bank.process(np.array([0.0, 0.0]))
    assert out[1] == 0.0 and 0.9 < out[0] < 1.0


def test_analyzer_envelopes_hold_levels_after_a_hit() -> None:
    signal = np.concatenate([sine(200.0, 0.5), np.zeros(2400)])  # 50 ms of silence after the tone
    smoothed = last_values(signal)
    raw = last_values(signal, AnalyzerConfig(envelope=EnvelopeConfig(release_s=0.0)))
    assert raw["rms"] == 0.0 and smoothed["rms"] > 0.1


@pytest.mark.parametrize("kwargs, message", [
    ({"band_edges_hz": (20.0, 250.0)}, "needs len"),
    ({"band_edges_hz": (20.0, 500.0, 250.0, 2000.0, 20000.0)}, "strictly increasing"),
    ({"fft_size": 1000}, "power of two"),
])
def test_feature_config_errors_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureConfig(**kwargs)


def test_band_without_bins_is_reported() -> None:
    with pytest.raises(ValueError, match="hold no FFT bin"):
        band_bins((20.0, 21.0, 20000.0), RATE, 2048)


def test_envelope_config_rejects_negative_times() -> None:
    with pytest.raises(ValueError, match=">= 0 seconds"):
        EnvelopeConfig(per_feature={"bass": (-1.0, 0.1)})
