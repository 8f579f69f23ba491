"""Per-hop audio features: RMS/dBFS/peak, band energies (raw, normalised, auto-gain), spectral centroid, and the
AudioAnalyzer that adds onsets, beat and envelopes and names everything ``audio/<feature>``.

Everything here is plain numpy on mono hops; no I/O (controllers.audio feeds it from a device or a file).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from controllers.base import ControlEvent, TempoState
from controllers.beat import BeatConfig, BeatTracker
from controllers.envelope import EnvelopeBank, EnvelopeConfig
from controllers.onsets import OnsetConfig, OnsetDetector, OnsetStrength


@dataclass(frozen=True)
class FeatureConfig:
    """How the level and spectral features are computed."""

    fft_size: int = 2048  # analysis window in samples (Hann): 23 Hz bins at 48 kHz, 43 ms
    band_names: tuple[str, ...] = ("bass", "low_mid", "mid", "high")  # feature keys audio/<name>
    band_edges_hz: tuple[float, ...] = (20.0, 250.0, 500.0, 2000.0, 20000.0)  # len(band_names) + 1, increasing
    long_term_s: float = 10.0  # time constant of the running average behind audio/<band>_norm
    auto_gain_release_s: float = 8.0  # how fast the auto-gain peak tracker forgets a loud passage
    gate_db: float = -70.0  # quieter than this (dBFS) counts as silence: _norm, _auto and level read 0
    floor_db: float = -120.0  # audio/rms_db never reads lower than this

    def __post_init__(self) -> None:
        if self.fft_size < 256 or self.fft_size & (self.fft_size - 1):
            raise ValueError(f"fft_size must be a power of two >= 256, got {self.fft_size}")
        if len(self.band_edges_hz) != len(self.band_names) + 1:
            raise ValueError(
                f"band_edges_hz needs len(band_names) + 1 = {len(self.band_names) + 1} edges, got {len(self.band_edges_hz)}"
            )
        if any(b <= a for a, b in zip(self.band_edges_hz, self.band_edges_hz[1:])) or self.band_edges_hz[0] < 0:
            raise ValueError(f"band_edges_hz must be >= 0 and strictly increasing, got {self.band_edges_hz}")
        if len(set(self.band_names)) != len(self.band_names):
            raise ValueError(f"band_names must be unique, got {self.band_names}")
        if self.long_term_s <= 0 or self.auto_gain_release_s <= 0:
            raise ValueError("long_term_s and auto_gain_release_s must be > 0 seconds")
        if self.floor_db >= self.gate_db:
            raise ValueError(f"floor_db ({self.floor_db}) must be below gate_db ({self.gate_db})")


def rms(x: np.ndarray) -> float:
    """Root mean square of a block."""
    return math.sqrt(float(np.dot(x, x)) / max(len(x), 1))


def to_db(amplitude: float, floor_db: float = -120.0) -> float:
    """Linear amplitude (1.0 = full scale) to dBFS, never below floor_db."""
    return max(20.0 * math.log10(amplitude), floor_db) if amplitude > 0 else floor_db


class Spectrum:
    """Sliding Hann-window magnitude spectrum: push one hop, get the spectrum of the window ending with it."""

    def __init__(self, fft_size: int, hop: int) -> None:
        if hop <= 0 or hop > fft_size:
            raise ValueError(f"hop must be in 1..fft_size ({fft_size}), got {hop}")
        self.fft_size = fft_size
        self.hop = hop
        self.window = np.hanning(fft_size + 1)[:-1].astype(np.float64)  # periodic Hann
        self._buffer = np.zeros(fft_size, dtype=np.float64)
        self._windowed = np.zeros(fft_size, dtype=np.float64)
        self._magnitude = np.zeros(fft_size // 2 + 1, dtype=np.float64)
        self._scale = 2.0 / float(self.window.sum())  # a full-scale sine reads magnitude 1.0 at its peak bin
        # sum over one-sided bins of |X|^2 * power_scale = mean power of the signal (Parseval with the window)
        self.power_scale = 2.0 / float(np.dot(self.window, self.window)) / fft_size / self._scale**2

    def push(self, hop: np.ndarray) -> np.ndarray:
        """Append a mono hop (len == hop) and return the scaled magnitude spectrum (fft_size // 2 + 1 bins)."""
        n = self.hop
        self._buffer[:-n] = self._buffer[n:]
        self._buffer[-n:] = hop
        np.multiply(self._buffer, self.window, out=self._windowed)
        magnitude = np.abs(np.fft.rfft(self._windowed), out=self._magnitude)
        magnitude *= self._scale
        return magnitude  # reused by the next push: copy it to keep it


def band_bins(edges_hz: tuple[float, ...], sample_rate: int, fft_size: int) -> list[slice]:
    """The rfft bin ranges [lo, hi) whose centre frequencies fall in each band; edges above Nyquist are clipped."""
    nyquist_bin = fft_size // 2
    bins = [min(int(math.ceil(e * fft_size / sample_rate)), nyquist_bin + 1) for e in edges_hz]
    slices = [slice(lo, hi) for lo, hi in zip(bins, bins[1:])]
    empty = [i for i, s in enumerate(slices) if s.stop <= s.start]
    if empty:
        raise ValueError(
            f"bands {empty} of edges {edges_hz} hold no FFT bin at {sample_rate} Hz with fft_size {fft_size}: "
            "widen them or raise fft_size"
        )
    return slices


def band_powers(magnitude: np.ndarray, bins: list[slice], power_scale: float) -> np.ndarray:
    """Mean signal power in each band (a full-scale sine inside a band gives 0.5 there); bands are contiguous."""
    first = bins[0].start
    part = magnitude[first : bins[-1].stop]
    return np.add.reduceat(part * part, [s.start - first for s in bins]) * power_scale


def spectral_centroid(magnitude: np.ndarray, freqs_hz: np.ndarray) -> float:
    """Magnitude-weighted mean frequency in Hz (0 for a silent spectrum)."""
    total = float(magnitude.sum())
    return float(np.dot(magnitude, freqs_hz)) / total if total > 1e-12 else 0.0


class FeatureExtractor:
    """Turns (hop, spectrum) into the level and spectral feature vector named by `names`."""

    def __init__(self, config: FeatureConfig, sample_rate: int, hop: int) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0 Hz, got {sample_rate}")
        self.config = config
        self.sample_rate = sample_rate
        self.bins = band_bins(config.band_edges_hz, sample_rate, config.fft_size)
        self.freqs_hz = np.fft.rfftfreq(config.fft_size, 1.0 / sample_rate)
        self._power_scale = Spectrum(config.fft_size, hop).power_scale
        hop_s = hop / sample_rate
        self._avg_keep = math.exp(-hop_s / config.long_term_s)
        self._peak_keep = math.exp(-hop_s / config.auto_gain_release_s)
        self._gate = 10.0 ** (config.gate_db / 20.0)
        k = len(config.band_names)
        self._avg = np.zeros(k + 1)  # running mean amplitude: bands, then overall rms
        self._avg_weight = 0.0  # bias correction so the average is meaningful from the first hop
        self._peak = np.full(k + 1, self._gate)  # auto-gain peak trackers
        self._log_span = math.log(max(sample_rate / 2.0, 40.0) / 20.0)
        names = ["rms", "rms_db", "peak", "level", "centroid", "centroid_hz"]
        for band in config.band_names:
            names += [band, f"{band}_norm", f"{band}_auto"]
        self.names: tuple[str, ...] = tuple(names)
        self._amps = np.zeros(k + 1)
        self._out = np.zeros(len(names))

    def update(self, hop: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
        """Features for one hop, in the order of `names` (band values are RMS amplitudes, like audio/rms); the array
        is reused by the next update."""
        level, gate = rms(hop), self._gate
        amps = self._amps
        np.sqrt(band_powers(magnitude, self.bins, self._power_scale), out=amps[:-1])
        amps[-1] = level
        if level > gate:  # silence does not drag the long-term average down
            self._avg *= self._avg_keep
            self._avg += amps * (1.0 - self._avg_keep)
            self._avg_weight = self._avg_weight * self._avg_keep + (1.0 - self._avg_keep)
        mean = self._avg / self._avg_weight if self._avg_weight > 0 else amps
        silent = amps <= gate
        norm = amps / np.maximum(mean, gate)
        norm[silent | (mean <= gate)] = 0.0
        np.maximum(self._peak * self._peak_keep, amps, out=self._peak)
        np.maximum(self._peak, gate, out=self._peak)
        auto = np.minimum(amps / self._peak, 1.0)
        auto[silent] = 0.0
        centroid_hz = spectral_centroid(magnitude, self.freqs_hz) if level > gate else 0.0
        centroid = math.log(centroid_hz / 20.0) / self._log_span if centroid_hz > 20.0 else 0.0
        out = self._out
        out[0:6] = (level, to_db(level, self.config.floor_db), max(hop.max(), -hop.min()), auto[-1], centroid, centroid_hz)
        out[6::3] = amps[:-1]
        out[7::3] = norm[:-1]
        out[8::3] = auto[:-1]
        return out


def band_energy_fractions(signal: np.ndarray, sample_rate: int, config: FeatureConfig | None = None) -> dict[str, float]:
    """Share of the total band energy that each band holds, averaged over a whole mono signal."""
    config = config or FeatureConfig()
    hop = config.fft_size // 4
    spectrum = Spectrum(config.fft_size, hop)
    bins = band_bins(config.band_edges_hz, sample_rate, config.fft_size)
    total = np.zeros(len(bins))
    for start in range(0, len(signal) - hop + 1, hop):
        total += band_powers(spectrum.push(signal[start : start + hop]), bins, spectrum.power_scale)
    share = total / max(float(total.sum()), 1e-30)
    return dict(zip(config.band_names, (float(s) for s in share)))


@dataclass(frozen=True)
class AnalyzerConfig:
    """Everything the hop-by-hop analysis needs besides the sample rate."""

    hop: int = 512  # samples per analysis step: 10.7 ms at 48 kHz
    features: FeatureConfig = field(default_factory=FeatureConfig)  # levels, bands, centroid
    onsets: OnsetConfig = field(default_factory=OnsetConfig)  # onset strength and peak picking
    beat: BeatConfig = field(default_factory=BeatConfig)  # tempo and phase tracking
    envelope: EnvelopeConfig = field(default_factory=EnvelopeConfig)  # attack/release of every continuous feature

    def __post_init__(self) -> None:
        if not 32 <= self.hop <= self.features.fft_size:
            raise ValueError(f"hop must be in 32..fft_size ({self.features.fft_size}) samples, got {self.hop}")


class AudioAnalyzer:
    """Turns mono hops into audio/<feature> events; no I/O, so it runs on live input, a file or an array alike.

    Every hop (time_s = capture time of its last sample), smoothed by the envelope config: rms, rms_db, peak,
    level (auto-gained rms, 0..1), centroid (0..1, log frequency 20 Hz..Nyquist), centroid_hz, flux (onset strength
    0..1), and per band <band> (RMS amplitude), <band>_norm (vs its long-term average, ~1.0), <band>_auto (0..1).
    Every hop: beat_confidence (0..1, low for silence and music without a beat; see `beat_confident`). Once a tempo
    is found, also every hop: beat_phase (0..1), bpm, next_beat_s (predicted time).
    Events: onset (relative strength 0..1, time_s = the onset's time) and beat (1.0, time_s = the beat's time; only
    while the beat is confident, so beat-driven triggers stay quiet on pads and silence).
    """

    def __init__(self, config: AnalyzerConfig, sample_rate: int) -> None:
        hop, fft = config.hop, config.features.fft_size
        frame_rate = sample_rate / hop
        self.config = config
        self.sample_rate = sample_rate
        self._spectrum = Spectrum(fft, hop)
        self._features = FeatureExtractor(config.features, sample_rate, hop)
        self._strength = OnsetStrength(config.onsets, sample_rate, fft, hop)
        self._onsets = OnsetDetector(config.onsets, frame_rate, fft / sample_rate)
        self._delay_s = config.onsets.delay_windows * fft / sample_rate
        self.tracker = BeatTracker(config.beat, frame_rate)
        self.names: tuple[str, ...] = self._features.names + ("flux",)  # continuous features, smoothed
        self._keys = tuple(f"audio/{name}" for name in self.names)
        self._envelopes = EnvelopeBank.for_names(self.names, config.envelope, frame_rate)
        self._values = np.zeros(len(self.names))
        self._last_beat: int | None = None
        self._latest: dict[str, float] = {}

    def process(self, hop: np.ndarray, time_s: float) -> list[ControlEvent]:
        """Analyse one mono hop whose last sample was captured at time_s; returns this hop's events."""
        magnitude = self._spectrum.push(hop)
        strength = self._strength.update(magnitude)
        onset_s = self._onsets.update(strength, time_s)
        self.tracker.update(strength, time_s - self._delay_s)
        values = self._values
        values[:-1] = self._features.update(hop, magnitude)
        peak = self._onsets.peak_strength
        values[-1] = min(strength / peak, 1.0) if peak > 0 else 0.0
        smoothed = self._envelopes.process(values).tolist()
        smoothed[1] = to_db(smoothed[0], self.config.features.floor_db)  # rms_db follows the smoothed rms
        latest = dict(zip(self.names, smoothed))
        events = [ControlEvent(key, value, time_s) for key, value in zip(self._keys, smoothed)]
        if onset_s is not None:
            events.append(ControlEvent("audio/onset", self._onsets.last_strength, onset_s))
        tracker = self.tracker
        beat, bpm, next_beat_s = tracker.beat_at(time_s), tracker.bpm, tracker.next_beat_time(time_s)
        if beat is not None and bpm is not None and next_beat_s is not None:
            number = math.floor(beat)
            if self._last_beat is not None and number > self._last_beat and tracker.confident:  # no beats from pads
                events.append(ControlEvent("audio/beat", 1.0, next_beat_s - 60.0 / bpm))  # when beat `number` fell
            self._last_beat = number if self._last_beat is None else max(number, self._last_beat)
            latest.update(beat_phase=beat - number, bpm=bpm, next_beat_s=next_beat_s)
            events += [ControlEvent(f"audio/{k}", latest[k], time_s) for k in _BEAT_KEYS]
        latest["beat_confidence"] = tracker.confidence  # always there: 0 for silence and music without a beat
        events.append(ControlEvent("audio/beat_confidence", tracker.confidence, time_s))
        self._latest = latest
        return events

    def analyze(self, samples: np.ndarray, start_time_s: float = 0.0) -> list[ControlEvent]:
        """Run a whole (frames,) or (frames, channels) array through process() as fast as the CPU allows."""
        mono = samples.mean(axis=1) if samples.ndim == 2 else samples
        mono = np.ascontiguousarray(mono, dtype=np.float64)
        hop = self.config.hop
        events: list[ControlEvent] = []
        for end in range(hop, len(mono) + 1, hop):
            events += self.process(mono[end - hop : end], start_time_s + end / self.sample_rate)
        return events

    def latest(self) -> dict[str, float]:
        """The newest value of every continuous feature (plus beat_phase, bpm, next_beat_s once a tempo is found)."""
        return dict(self._latest)

    @property
    def beat_confidence(self) -> float:
        """How clearly the music has a beat, 0..1 (the tracker's confidence)."""
        return self.tracker.confidence

    @property
    def beat_confident(self) -> bool:
        """True while beats are trusted: audio/beat events fire and tempo().running is True."""
        return self.tracker.confident

    def tempo(self) -> TempoState | None:
        """The beat tracker's tempo state (None before it found a tempo; running=False while not confident)."""
        return self.tracker.tempo()


_BEAT_KEYS = ("beat_phase", "bpm", "next_beat_s")


def analyze_array(samples: np.ndarray, sample_rate: int, config: AnalyzerConfig | None = None,
                  start_time_s: float = 0.0) -> tuple[list[ControlEvent], AudioAnalyzer]:
    """Analyse an array faster than real time: (events, the analyzer, for its tempo() and latest())."""
    analyzer = AudioAnalyzer(config or AnalyzerConfig(), sample_rate)
    return analyzer.analyze(samples, start_time_s), analyzer


def analysis_cost(seconds: float = 30.0, sample_rate: int = 48000, config: AnalyzerConfig | None = None) -> float:
    """CPU seconds the whole analysis (events included) spends per second of audio: 0.05 = 5% of one core."""
    rng = np.random.default_rng(0)
    n = int(seconds * sample_rate)
    signal = 0.05 * rng.standard_normal(n) + 0.2 * np.sin(2 * np.pi * 110.0 * np.arange(n) / sample_rate)
    beat = int(sample_rate * 60.0 / 124.0)
    for start in range(0, n - 480, beat):  # a 124 BPM click so onsets and beat tracking do their full work
        signal[start : start + 480] += 0.8 * np.exp(-np.arange(480) / 100.0)
    analyzer = AudioAnalyzer(config or AnalyzerConfig(), sample_rate)
    began = time.process_time()
    analyzer.analyze(signal)
    return (time.process_time() - began) / seconds
