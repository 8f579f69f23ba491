"""MIDI clock (24 pulses per quarter note): smoothed BPM, beat and bar phase, start/stop/continue, song position.

Pure logic over arrival timestamps (time.monotonic(), taken by the port callback), so it is tested with plain numbers.
The BPM is the least-squares slope of the last `window_ticks` tick times against their tick count, which averages
out the jitter of the transport (a JACK period, a USB frame) instead of trusting any single tick interval. A tick
lost on the way (an overloaded JACK graph drops MIDI events) would make the tempo read 2% slow for a whole window,
so a gap of two intervals between regular ones counts the missing tick; ticks that arrive late in a burst do not.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import mido
import numpy as np

from controllers.base import TempoState

PPQN = 24  # MIDI clock pulses per quarter note (one beat)
TICKS_PER_SIXTEENTH = 6  # song position pointer unit ("MIDI beat") in clock ticks
CLOCK_MESSAGE_TYPES = frozenset({"clock", "start", "stop", "continue", "songpos"})
_REGULAR = 0.35  # a gap within 35% of a whole number of tick intervals counts as regular
_MEDIAN_GAPS = 15  # the typical interval is the median of this many recent gaps
_MIN_GAPS = 12  # lost ticks are only counted once the fit has this many gaps...
_MIN_SINGLE_SHARE = 0.7  # ...and this share of them is one interval (else jitter and loss look alike)
_LATE = 0.3  # in the tempo fit, ticks later than this many intervals behind the line are left out


@dataclass(frozen=True)
class MidiClockConfig:
    """How the clock is measured."""

    window_ticks: int = 48  # ticks in the BPM fit (2 beats): longer is smoother, shorter follows tempo changes faster
    timeout_s: float = 0.5  # no tick for this long: the clock is lost (TempoState.running = False)
    max_gap_factor: float = 8.0  # a gap this many tick intervals long restarts the fit (the sender paused)
    beats_per_bar: int = 4  # for bar phase

    def __post_init__(self) -> None:
        if self.window_ticks < 2:
            raise ValueError(f"window_ticks must be >= 2 to measure a tempo, got {self.window_ticks}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_gap_factor <= 1:
            raise ValueError(f"max_gap_factor must be > 1, got {self.max_gap_factor}")
        if self.beats_per_bar < 1:
            raise ValueError(f"beats_per_bar must be >= 1, got {self.beats_per_bar}")


class MidiClock:
    """Follows a MIDI clock: `feed` it messages with their arrival times, read `tempo()` from any thread."""

    def __init__(self, config: MidiClockConfig | None = None) -> None:
        self.config = config or MidiClockConfig()
        self._lock = threading.Lock()
        self._ticks: deque[tuple[int, float]] = deque(maxlen=self.config.window_ticks)  # (tick index, arrival time)
        self._single: deque[bool] = deque(maxlen=self.config.window_ticks)  # per gap: exactly one interval?
        self._single_count = 0  # how many True in _single
        self._previous_regular = False  # the previous gap was a whole number of intervals
        self._gaps: deque[float] = deque(maxlen=_MEDIAN_GAPS)  # recent gaps, for the typical interval
        self._pending_lost = 0  # ticks that look lost, confirmed when the next gap is regular
        self._last_tick_s: float | None = None
        self._position = 0  # tick index of the beat position shown (the last tick played, or where we were set)
        self._next = 0  # tick index the next clock pulse plays
        self._fresh = True  # no tick since start / continue / song position: do not extrapolate
        self._stopped = False  # after MIDI stop; a clock with no start at all counts as running
        self._bpm: float | None = None
        self._bpm_dirty = False

    def feed(self, msg: mido.Message, time_s: float) -> None:
        """Handle one clock, start, stop, continue or songpos message that arrived at time_s; others are ignored."""
        kind = msg.type
        if kind == "clock":
            self.tick(time_s)
        elif kind == "start":
            self.start()
        elif kind == "stop":
            self.stop()
        elif kind == "continue":
            self.resume()
        elif kind == "songpos":
            self.set_song_position(msg.pos)

    def tick(self, time_s: float) -> None:
        """One clock pulse arrived at time_s."""
        with self._lock:
            ticks = self._ticks
            lost = 0
            if ticks:
                gap = time_s - ticks[-1][1]
                span = ticks[-1][0] - ticks[0][0]
                interval = (ticks[-1][1] - ticks[0][1]) / span if span else 0.0  # window average: burst-proof
                if gap < 0 or gap > self.config.timeout_s or (interval > 0 and gap > self.config.max_gap_factor * interval):
                    self._restart_fit()  # the sender paused
                else:
                    lost = self._count_lost(gap)
                    if lost:  # the previous tick really came `lost` ticks later in the count
                        index, t = ticks[-1]
                        ticks[-1] = (index + lost, t)
            ticks.append((ticks[-1][0] + 1 if ticks else 0, time_s))
            self._bpm_dirty = True
            self._last_tick_s = time_s
            if not self._stopped:
                self._position = self._next + lost
                self._next = self._position + 1
                self._fresh = False

    def _restart_fit(self) -> None:
        self._ticks.clear()
        self._single.clear()
        self._gaps.clear()
        self._single_count = 0
        self._previous_regular = False
        self._pending_lost = 0

    def _count_lost(self, gap: float) -> int:
        """Ticks lost before the previous one; O(1), called on every tick.

        When nearly every gap is a whole number of intervals (the transport's jitter is well under an interval), a
        gap of two (three) intervals means one (two) ticks went missing. A long gap followed by a burst is a late
        tick instead (the burst makes up the time), so the verdict waits for the next gap.
        """
        gaps = self._gaps
        typical = sorted(gaps)[len(gaps) // 2] if gaps else 0.0  # median of recent gaps: deaf to losses and bursts
        gaps.append(gap)
        if typical <= 0:
            return 0
        ratio = gap / typical
        k = round(ratio)
        regular = k >= 1 and abs(ratio - k) <= _REGULAR
        window = self._single  # per gap: exactly one interval?
        if len(window) == window.maxlen:
            self._single_count -= window[0]
        window.append(regular and k == 1)
        self._single_count += regular and k == 1
        # losses are rare: when many gaps are doubles, it is the transport's rhythm (a JACK period near the tick
        # interval), not loss, and nothing is counted
        trusted = len(window) >= _MIN_GAPS and self._single_count >= _MIN_SINGLE_SHARE * len(window)
        lost = self._pending_lost if regular and trusted else 0
        self._pending_lost = k - 1 if trusted and regular and k >= 2 and self._previous_regular else 0
        self._previous_regular = regular
        return lost

    def start(self) -> None:
        """MIDI start: play from the top; the next pulse is beat 0."""
        with self._lock:
            self._stopped, self._fresh = False, True
            self._position = self._next = 0

    def stop(self) -> None:
        """MIDI stop: the position holds (clock pulses still measure the tempo)."""
        with self._lock:
            self._stopped = True

    def resume(self) -> None:
        """MIDI continue: play on from the held position."""
        with self._lock:
            self._stopped, self._fresh = False, True
            self._position = self._next

    def set_song_position(self, sixteenths: int) -> None:
        """MIDI song position pointer, in sixteenth notes from the start of the song."""
        if not 0 <= sixteenths <= 16383:
            raise ValueError(f"song position must be in range 0..16383 sixteenths, got {sixteenths}")
        with self._lock:
            self._position = self._next = sixteenths * TICKS_PER_SIXTEENTH
            self._fresh = True

    def _fit_bpm(self) -> float | None:
        if self._bpm_dirty:
            self._bpm_dirty = False
            pairs = np.asarray(self._ticks, dtype=np.float64)  # (n, 2): tick index, arrival time
            if self._pending_lost:
                pairs = pairs[:-1]  # the newest tick's count is undecided until the next gap
            if len(pairs) >= 2:
                seconds_per_tick = _late_robust_slope(pairs[:, 0], pairs[:, 1])
                if seconds_per_tick > 0:
                    self._bpm = 60.0 / (PPQN * seconds_per_tick)
        return self._bpm

    def tempo(self, now_s: float | None = None) -> TempoState | None:
        """The tempo and beat position at now_s (default: now), or None before two clock pulses arrived."""
        now = time.monotonic() if now_s is None else now_s
        with self._lock:
            bpm = self._fit_bpm()
            if bpm is None or self._last_tick_s is None:
                return None
            since_tick = max(0.0, now - self._last_tick_s)
            running = not self._stopped and since_tick <= self.config.timeout_s
            ticks = float(self._position)
            if running and not self._fresh:  # between pulses: advance smoothly, never past the next pulse
                ticks += min(since_tick * bpm * PPQN / 60.0, 1.0)
        return TempoState(bpm=bpm, beat=ticks / PPQN, time_s=now, running=running,
                          beats_per_bar=self.config.beats_per_bar)


def _slope(index: np.ndarray, t: np.ndarray) -> float:
    i = index - index.mean()
    denominator = float(np.dot(i, i))
    return float(np.dot(i, t - t.mean()) / denominator) if denominator > 0 else 0.0


def _late_robust_slope(index: np.ndarray, t: np.ndarray) -> float:
    """Seconds per tick: a least-squares line, refitted without ticks that arrived late.

    Transport delays only ever make a tick late, and a stalled sender or a late JACK cycle delivers several ticks
    late at once, which tilts a plain fit; ticks further behind the line than 30% of an interval (or than the
    transport's usual jitter, if that is larger) are left out.
    """
    slope = _slope(index, t)
    for _ in range(2):
        if slope <= 0:
            break
        residual = t - slope * index
        residual -= np.median(residual)
        spread = 3.0 * 1.4826 * float(np.median(np.abs(residual)))  # ~3 sigma of the transport's own jitter
        keep = residual <= max(_LATE * slope, spread)
        if keep.all() or keep.sum() < max(2, len(t) // 2):
            break
        index, t = index[keep], t[keep]
        slope = _slope(index, t)
    return slope


def beat_phase(state: TempoState) -> float:
    """Position inside the current beat, 0..1."""
    return state.beat % 1.0


def bar_phase(state: TempoState) -> float:
    """Position inside the current bar, 0..1."""
    return (state.beat / state.beats_per_bar) % 1.0
