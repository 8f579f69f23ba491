"""MIDI clock (24 pulses per quarter note): smoothed BPM, beat and bar phase, start/stop/continue, song position.

Pure logic over arrival timestamps (time.monotonic(), taken by the port callback), so it is tested with plain numbers.
The BPM is the least-squares slope of the last `window_ticks` tick times, which averages out the jitter of the
transport (a JACK period, a USB frame) instead of trusting any single tick interval.
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


@dataclass(frozen=True)
class MidiClockConfig:
    """How the clock is measured."""

    window_ticks: int = 48  # ticks in the BPM fit (2 beats): longer is smoother, shorter follows tempo changes faster
    timeout_s: float = 0.5  # no tick for this long: the clock is lost (TempoState.running = False)
    max_gap_factor: float = 4.0  # a gap this many tick intervals long restarts the fit (the sender paused)
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
        self._times: deque[float] = deque(maxlen=self.config.window_ticks)  # one uninterrupted run of tick times
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
            times = self._times
            if times:
                gap = time_s - times[-1]
                interval = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else gap
                if gap > self.config.timeout_s or gap > self.config.max_gap_factor * interval or gap < 0:
                    times.clear()
            times.append(time_s)
            self._bpm_dirty = True
            self._last_tick_s = time_s
            if not self._stopped:
                self._position = self._next
                self._next += 1
                self._fresh = False

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
            if len(self._times) >= 2:
                t = np.asarray(self._times, dtype=np.float64)  # (n,) tick times
                i = np.arange(t.size, dtype=np.float64)
                i -= i.mean()
                seconds_per_tick = float(np.dot(i, t - t.mean()) / np.dot(i, i))
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


def beat_phase(state: TempoState) -> float:
    """Position inside the current beat, 0..1."""
    return state.beat % 1.0


def bar_phase(state: TempoState) -> float:
    """Position inside the current bar, 0..1."""
    return (state.beat / state.beats_per_bar) % 1.0
