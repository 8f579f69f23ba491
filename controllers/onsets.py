"""Onsets: log-compressed spectral flux (onset strength), online peak picking with an adaptive threshold.

Peak picking follows the online scheme evaluated by Boeck, Krebs and Schedl (ISMIR 2012): a frame is an onset when
it is the local maximum over a short past window (and `post_max_frames` of lookahead), it exceeds the recent mean by a
margin, and the previous onset is at least `min_gap_s` back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OnsetConfig:
    """Onset strength and peak picking settings."""

    compression: float = 3.0  # gamma in log(1 + gamma * |X| / level): soft hits count, not just loud ones
    level_release_s: float = 10.0  # `level` is the recent peak of the mean band magnitude (automatic gain)...
    level_floor: float = 1e-3  # ...but never below this (music at about -30 dBFS), so hiss is not amplified
    min_freq_hz: float = 30.0  # flux ignores bins below this...
    max_freq_hz: float = 16000.0  # ...and above this
    bands_per_octave: int = 12  # log-frequency bands the flux is summed over
    pre_max_s: float = 0.03  # an onset is the largest strength over this past window...
    post_max_frames: int = 1  # ...and over this many future frames (the detection delay: one hop, 10.7 ms at 48 kHz)
    pre_avg_s: float = 0.1  # the adaptive threshold averages the strength over this past window
    threshold_ratio: float = 2.0  # strength must exceed threshold_ratio * that average...
    threshold_rel: float = 0.04  # ...plus this share of the recent peak strength (keeps it level-independent)
    threshold_abs: float = 0.01  # ...plus this absolute floor (silence and hiss give no onsets)
    min_gap_s: float = 0.05  # at most one onset per this interval
    peak_release_s: float = 6.0  # how fast the recent-peak reference forgets a loud passage
    delay_windows: float = 0.34  # the flux peak lags the onset by this share of the FFT window; onset times subtract it

    def __post_init__(self) -> None:
        if self.compression <= 0:
            raise ValueError(f"compression must be > 0, got {self.compression}")
        if self.level_release_s <= 0 or self.level_floor <= 0:
            raise ValueError(f"level_release_s and level_floor must be > 0, got {self.level_release_s}, {self.level_floor}")
        if not 0 < self.min_freq_hz < self.max_freq_hz:
            raise ValueError(f"need 0 < min_freq_hz < max_freq_hz, got {self.min_freq_hz}, {self.max_freq_hz}")
        if self.bands_per_octave < 1:
            raise ValueError(f"bands_per_octave must be >= 1, got {self.bands_per_octave}")
        if self.post_max_frames < 0:
            raise ValueError(f"post_max_frames must be >= 0, got {self.post_max_frames}")
        for name in ("pre_max_s", "pre_avg_s", "min_gap_s", "threshold_ratio", "threshold_rel", "threshold_abs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.peak_release_s <= 0:
            raise ValueError(f"peak_release_s must be > 0 seconds, got {self.peak_release_s}")


class OnsetStrength:
    """Spectral flux of log-compressed, log-frequency-filtered magnitudes: the summed rise of every band.

    Bins are averaged into `bands_per_octave` bands, so a kick (a few low bins) and a hi-hat (thousands of high bins)
    weigh alike; without this the hats own the onset strength and the beat tracker follows them.
    """

    def __init__(self, config: OnsetConfig, sample_rate: int, fft_size: int, hop: int) -> None:
        freqs = np.fft.rfftfreq(fft_size, 1.0 / sample_rate)
        top = min(config.max_freq_hz, sample_rate / 2.0)
        octaves = math.log2(top / config.min_freq_hz)
        edges_hz = config.min_freq_hz * 2.0 ** (np.arange(int(octaves * config.bands_per_octave) + 1) / config.bands_per_octave)
        edges = np.unique(np.searchsorted(freqs, edges_hz))  # bands narrower than a bin merge
        if len(edges) < 2:
            raise ValueError(f"min_freq_hz..max_freq_hz ({config.min_freq_hz}..{top}) holds no band at fft_size {fft_size}")
        self._starts = edges[:-1]
        self._stop = int(edges[-1])
        self._inverse_width = 1.0 / np.diff(edges)
        self._gamma = config.compression
        self._level = config.level_floor
        self._level_floor = config.level_floor
        self._level_keep = math.exp(-hop / sample_rate / config.level_release_s)
        self._previous = np.zeros(len(self._starts))
        self._log = np.zeros(len(self._starts))
        self._warmup = -(-fft_size // hop)  # frames until the window holds only real audio: no flux before

    def update(self, magnitude: np.ndarray) -> float:
        """Onset strength for one frame's magnitude spectrum (mean rise per band, >= 0)."""
        bands = np.add.reduceat(magnitude[: self._stop], self._starts) * self._inverse_width
        self._level = max(float(bands.mean()), self._level * self._level_keep, self._level_floor)
        np.log1p(bands * (self._gamma / self._level), out=self._log)
        rise = self._log - self._previous
        self._previous, self._log = self._log, self._previous
        if self._warmup > 0:
            self._warmup -= 1
            return 0.0
        return float(np.maximum(rise, 0.0, out=rise).sum()) / len(rise)


class OnsetDetector:
    """Online peak picker over the onset strength; `update` returns the onset's time when one is confirmed."""

    def __init__(self, config: OnsetConfig, frame_rate_hz: float, window_s: float) -> None:
        if frame_rate_hz <= 0 or window_s <= 0:
            raise ValueError(f"frame_rate_hz and window_s must be > 0, got {frame_rate_hz}, {window_s}")
        self.config = config
        self._delay_s = config.delay_windows * window_s
        self._frame_s = 1.0 / frame_rate_hz
        self._pre_max = max(1, round(config.pre_max_s * frame_rate_hz))
        self._pre_avg = max(1, round(config.pre_avg_s * frame_rate_hz))
        self._post = config.post_max_frames
        self._history = np.zeros(max(self._pre_max, self._pre_avg) + self._post + 1)  # newest last
        self._seen = 0
        self._peak = 0.0
        self._peak_keep = math.exp(-self._frame_s / config.peak_release_s)
        self._last_onset_s = -math.inf
        self.last_strength = 0.0  # strength of the latest onset relative to the recent peak, 0..1

    @property
    def peak_strength(self) -> float:
        """The recent-peak reference that strengths are measured against (for 0..1 normalisation)."""
        return self._peak

    def update(self, strength: float, frame_time_s: float) -> float | None:
        """Feed the strength of the frame ending at frame_time_s; returns an onset time (seconds) or None."""
        h = self._history
        h[:-1] = h[1:]
        h[-1] = strength
        self._seen += 1
        self._peak = max(strength, self._peak * self._peak_keep)
        c = len(h) - 1 - self._post  # the candidate frame, `post` frames back
        if self._seen < len(h):  # the threshold needs a full history
            return None
        value = h[c]
        past_max = h[c - self._pre_max : c].max()
        future_max = h[c + 1 :].max() if self._post else -math.inf
        if value <= past_max or value < future_max:
            return None
        cfg = self.config
        threshold = cfg.threshold_ratio * float(h[c - self._pre_avg : c].mean())
        threshold += cfg.threshold_rel * self._peak + cfg.threshold_abs
        if value <= threshold:
            return None
        shift = 0.0
        if self._post:  # parabolic peak interpolation: sub-frame timing from the neighbours
            left, right = h[c - 1], h[c + 1]
            curve = left - 2.0 * value + right
            shift = 0.5 * (left - right) / curve if curve < 0 else 0.0
        onset_s = frame_time_s - (self._post - shift) * self._frame_s - self._delay_s
        if onset_s - self._last_onset_s < cfg.min_gap_s:
            return None
        self._last_onset_s = onset_s
        self.last_strength = min(value / self._peak, 1.0) if self._peak > 0 else 0.0
        return onset_s


def match_onsets(detected: list[float], reference: list[float], tolerance_s: float) -> tuple[float, float, float]:
    """(precision, recall, F1) of detected onset times against reference times, one-to-one within tolerance_s."""
    detected, reference = sorted(detected), sorted(reference)
    i = j = hits = 0
    while i < len(detected) and j < len(reference):
        gap = detected[i] - reference[j]
        if abs(gap) <= tolerance_s:
            hits, i, j = hits + 1, i + 1, j + 1
        elif gap < 0:
            i += 1
        else:
            j += 1
    precision = hits / len(detected) if detected else 0.0
    recall = hits / len(reference) if reference else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
