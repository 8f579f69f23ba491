"""Beat tracking from the onset strength: BPM, beat phase and the predicted time of the next beat.

Tempo: the autocorrelation of the onset strength over the last few seconds, scored as a comb over the first few
multiples of each candidate period (the period whose multiples all line up with onsets wins; the biased
autocorrelation makes a period twice too long lose, and the empty half-beats make one half too short lose).
Phase and fine tempo: the comb is slid over the recent onset strength to find where beats fall, the onset peak nearest
each comb tooth is located to a fraction of a frame, and a weighted straight-line fit through those peak times gives
the beat period and the time of the latest beat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controllers.base import TempoState


@dataclass(frozen=True)
class BeatConfig:
    """Beat tracker settings."""

    bpm_min: float = 60.0  # slowest tempo reported
    bpm_max: float = 200.0  # fastest tempo reported
    window_s: float = 8.0  # onset-strength history the tempo is estimated from
    min_history_s: float = 1.5  # no tempo before this much audio
    update_s: float = 0.1  # tempo and phase are re-estimated this often
    harmonics: int = 4  # the comb scores lags k * period for k = 1..harmonics
    fit_beats: int = 8  # latest beats whose onset times fix the phase and fine tempo
    switch_s: float = 1.0  # a clearly different tempo must win this long before the tracker jumps to it
    lost_s: float = 4.0  # without onsets for this long the tracker reports running=False (and keeps its tempo)
    min_confidence: float = 0.15  # comb score (0..1) below which the tempo counts as not found
    prior_min_bpm: float = 70.0  # the tempo is read at the metrical level inside prior_min_bpm..prior_max_bpm...
    prior_max_bpm: float = 180.0  # ...and, where two octaves fit, at the faster one if the music supports it
    octave_support: float = 0.5  # the faster octave needs this share of the best in-range comb score...
    octave_lag_support: float = 0.3  # ...and this autocorrelation at its own beat (clicks on 90 do not read 180)
    octave_switch_s: float = 8.0  # a locked tempo moves to another metrical level only after losing this long
    confident: float = 0.5  # beat_confidence (0..1) from which beats count as real (triggers fire, the clock uses it)
    confidence_s: float = 1.0  # time constant of the beat confidence
    silence_strength: float = 0.02  # onset strength below this counts as no onset

    def __post_init__(self) -> None:
        if not 0 < self.bpm_min < self.bpm_max:
            raise ValueError(f"need 0 < bpm_min < bpm_max, got {self.bpm_min}, {self.bpm_max}")
        if self.window_s < 2 * 60.0 / self.bpm_min:
            raise ValueError(f"window_s ({self.window_s}) must hold at least two beats at bpm_min ({self.bpm_min})")
        if not 0 < self.min_history_s <= self.window_s:
            raise ValueError(f"min_history_s must be in (0, window_s], got {self.min_history_s}")
        if self.update_s <= 0 or self.switch_s < 0 or self.lost_s <= 0:
            raise ValueError("update_s and lost_s must be > 0 and switch_s >= 0 seconds")
        if not 0 < self.prior_min_bpm < self.prior_max_bpm:
            raise ValueError(f"need 0 < prior_min_bpm < prior_max_bpm, got {self.prior_min_bpm}, {self.prior_max_bpm}")
        if not 0 <= self.confident <= 1 or self.confidence_s <= 0 or self.octave_switch_s < 0:
            raise ValueError("confident must be in 0..1, confidence_s > 0 and octave_switch_s >= 0")
        if self.harmonics < 1 or self.fit_beats < 2:
            raise ValueError(f"harmonics must be >= 1 and fit_beats >= 2, got {self.harmonics}, {self.fit_beats}")


def _interp(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of values at fractional positions (clipped to the array)."""
    positions = np.clip(positions, 0.0, len(values) - 1.000001)
    base = positions.astype(np.int64)
    frac = positions - base
    return values[base] * (1.0 - frac) + values[base + 1] * frac


def comb_scores(strength: np.ndarray, periods: np.ndarray, harmonics: int) -> np.ndarray:
    """Tempo score per candidate period (frames): mean normalised autocorrelation at its first multiples."""
    x = strength - strength.mean()
    size = 1 << int(2 * len(x) - 1).bit_length()
    spectrum = np.fft.rfft(x, size)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), size)[: len(x)]
    if acf[0] <= 1e-12:
        return np.zeros(len(periods))
    acf /= acf[0]
    lags = periods[:, None] * np.arange(1, harmonics + 1)[None, :]  # (candidates, harmonics)
    scores = np.where(lags < len(x) - 1, _interp(acf, lags.ravel()).reshape(lags.shape), 0.0)
    return scores.mean(axis=1)


def fit_beats(strength: np.ndarray, period: float, beats: int, floor: float) -> tuple[float, float] | None:
    """(time of the latest beat, period), both in frames of `strength`, fitted through the onset peaks of the comb."""
    n = len(strength)
    count = max(2, min(beats, int((n - 2) / period)))
    offsets = np.arange(count) * period  # comb teeth counted back from the latest beat
    phases = np.arange(0.0, period, 0.5)
    weights = 0.85 ** np.arange(count)
    teeth = (n - 1) - phases[:, None] - offsets[None, :]
    fit = (_interp(strength, teeth.ravel()).reshape(teeth.shape) * weights).sum(axis=1)
    latest = (n - 1) - phases[int(np.argmax(fit))]
    reach = max(2, int(round(period * 0.15)))
    ks, times, ws = [], [], []
    for k in range(count):
        centre = int(round(latest - k * period))
        lo, hi = max(centre - reach, 1), min(centre + reach + 1, n - 1)
        if hi <= lo:
            continue
        i = lo + int(np.argmax(strength[lo:hi]))
        peak, left, right = strength[i], strength[i - 1], strength[i + 1]
        if peak < floor or left > peak or right > peak:  # no onset, or a peak cut off by the search window
            continue
        curve = left - 2.0 * peak + right
        shift = 0.5 * (left - right) / curve if curve < 0 else 0.0
        ks.append(k)
        times.append(i + shift)
        ws.append(peak * weights[k])
    if len(ks) < 3:
        return None
    k_arr, t_arr, w_arr = np.array(ks, float), np.array(times), np.array(ws)
    w_sum = w_arr.sum()
    k_mean, t_mean = (w_arr * k_arr).sum() / w_sum, (w_arr * t_arr).sum() / w_sum
    var = (w_arr * (k_arr - k_mean) ** 2).sum()
    slope = (w_arr * (k_arr - k_mean) * (t_arr - t_mean)).sum() / var  # frames per beat, negative (k counts back)
    fitted_period = -slope
    if abs(fitted_period / period - 1.0) > 0.04:
        return None
    return t_mean - slope * k_mean, fitted_period


class BeatTracker:
    """Online beat tracker: feed one onset-strength frame at a time; ask for the beat at any time."""

    def __init__(self, config: BeatConfig, frame_rate_hz: float) -> None:
        if frame_rate_hz <= 0:
            raise ValueError(f"frame_rate_hz must be > 0, got {frame_rate_hz}")
        self.config = config
        self.frame_rate_hz = frame_rate_hz
        self._history = np.zeros(max(8, int(math.ceil(config.window_s * frame_rate_hz))))
        self._count = 0
        self._update_every = max(1, round(config.update_s * frame_rate_hz))
        bpms = np.exp(np.arange(math.log(config.bpm_min), math.log(config.bpm_max), 0.002))
        self._candidate_bpms = bpms
        self._candidate_periods = 60.0 * frame_rate_hz / bpms  # frames per beat
        self._score = 0.0  # comb score of the tracked tempo, smoothed into `confidence`
        self._last_strong_s = -math.inf
        self._latest_s = 0.0
        self._period: float | None = None  # frames per beat currently tracked
        self._challenger_since_s: float | None = None
        self.confidence = 0.0  # beat confidence 0..1: how clearly the music has a beat at the tracked tempo
        self._model: tuple[float, float, float] | None = None  # (beat number, its time_s, seconds per beat)

    def update(self, strength: float, time_s: float) -> None:
        """Feed the onset strength belonging to time_s (already corrected for the detection delay)."""
        h = self._history
        h[:-1] = h[1:]
        h[-1] = strength
        self._count += 1
        self._latest_s = time_s
        if strength >= self.config.silence_strength:
            self._last_strong_s = time_s
        if self._count >= self.config.min_history_s * self.frame_rate_hz and self._count % self._update_every == 0:
            self._estimate()

    def _estimate(self) -> None:
        cfg = self.config
        strength = self._history[-min(self._count, len(self._history)) :]
        if self._latest_s - self._last_strong_s > cfg.lost_s:
            self._score, self.confidence = 0.0, 0.0
            return
        scores = comb_scores(strength, self._candidate_periods, cfg.harmonics)
        best = self._metrical_level(scores, strength)
        period = float(self._candidate_periods[best])
        near = None if self._period is None else np.abs(self._candidate_periods / self._period - 1.0) <= 0.04
        if self._period is not None and abs(period / self._period - 1.0) > 0.04 and near is not None and near.any():
            current = int(np.argmax(np.where(near, scores, -np.inf)))
            ratio = self._period / period
            octave = min(abs(ratio - r) for r in (0.5, 2.0, 1.5, 2 / 3, 3.0, 1 / 3)) < 0.06
            hold_s = cfg.octave_switch_s if octave else cfg.switch_s
            challenger_wins = scores[current] < (0.6 if octave else 0.8) * scores[best]
            if self._challenger_since_s is None:
                self._challenger_since_s = self._latest_s
            if not challenger_wins or self._latest_s - self._challenger_since_s < hold_s:
                best, period = current, float(self._candidate_periods[current])
            else:
                self._challenger_since_s = None
        else:
            self._challenger_since_s = None
        self._set_confidence(float(max(scores[best], 0.0)))
        if self._score < cfg.min_confidence:
            return
        fitted = fit_beats(strength, period, cfg.fit_beats, cfg.silence_strength)
        if fitted is None:
            return
        latest_frame, period = float(fitted[0]), float(fitted[1])
        self._period = period
        beat_s = self._latest_s - (len(strength) - 1 - latest_frame) / self.frame_rate_hz
        seconds_per_beat = period / self.frame_rate_hz
        number = 0.0 if self._model is None else float(round(self._beat_of(self._model, beat_s)))
        self._model = (number, beat_s, seconds_per_beat)

    def _metrical_level(self, scores: np.ndarray, strength: np.ndarray) -> int:
        """Index of the tempo to track: the best comb score, moved by octaves into the prior range, and there the
        fastest octave the music supports (174 stays 174 instead of 87; 97 stays 97 instead of 194)."""
        cfg = self.config
        best = int(np.argmax(scores))
        levels = []
        for factor in (0.25, 0.5, 1.0, 2.0, 4.0):
            bpm = float(self._candidate_bpms[best]) * factor
            if cfg.prior_min_bpm <= bpm <= cfg.prior_max_bpm:
                window = np.abs(self._candidate_bpms / bpm - 1.0) <= 0.02
                if window.any():
                    i = int(np.argmax(np.where(window, scores, -np.inf)))
                    levels.append((bpm, i, float(scores[i])))
        top = max((score for _, _, score in levels), default=0.0)
        if top <= 0:
            return best
        levels.sort(key=lambda lv: -lv[0])  # fastest first
        for bpm, i, score in levels:
            if score < cfg.octave_support * top:
                continue
            if score == top:
                return i
            # a faster octave must have onsets of its own: the onset strength repeats after one of its beats
            if comb_scores(strength, self._candidate_periods[i : i + 1], 1)[0] >= cfg.octave_lag_support:
                return i
        return best

    def _set_confidence(self, score: float) -> None:
        """Smooth the comb score and map it to 0..1 (0.15 and below: no beat, 0.45 and above: a clear one)."""
        keep = math.exp(-self.config.update_s / self.config.confidence_s)
        self._score = keep * self._score + (1.0 - keep) * score if self._score > 0 else score
        self.confidence = float(min(max((self._score - 0.15) / 0.3, 0.0), 1.0))

    @property
    def confident(self) -> bool:
        """True while the beat confidence is at least config.confident (beats are real, triggers may fire)."""
        return self.confidence >= self.config.confident and self.running

    @staticmethod
    def _beat_of(model: tuple[float, float, float], time_s: float) -> float:
        number, ref_s, spb = model
        return number + (time_s - ref_s) / spb

    @property
    def bpm(self) -> float | None:
        """Current tempo, or None before the tracker has found one."""
        return None if self._model is None else 60.0 / self._model[2]

    @property
    def running(self) -> bool:
        """True while onsets keep arriving and the tempo is found."""
        return self._model is not None and self._latest_s - self._last_strong_s <= self.config.lost_s

    def beat_at(self, time_s: float) -> float | None:
        """Continuous beat count at time_s (the phase is its fractional part), or None without a tempo."""
        model = self._model
        return None if model is None else self._beat_of(model, time_s)

    def next_beat_time(self, time_s: float) -> float | None:
        """Predicted time of the first beat after time_s, or None without a tempo."""
        model = self._model
        if model is None:
            return None
        number, ref_s, spb = model
        return ref_s + (math.floor(self._beat_of(model, time_s)) + 1 - number) * spb

    def time_of_beat(self, number: float) -> float | None:
        """Time of a beat number on the current grid, or None without a tempo."""
        model = self._model
        return None if model is None else model[1] + (number - model[0]) * model[2]

    def tempo(self) -> TempoState | None:
        """The tracker's view at the latest analysed frame, as every tempo source reports it."""
        model = self._model
        if model is None:
            return None
        return TempoState(bpm=60.0 / model[2], beat=self._beat_of(model, self._latest_s), time_s=self._latest_s,
                          running=self.confident)
