"""MIDI clock (24 pulses per quarter note): smoothed BPM, beat and bar phase, start/stop/continue, song position.

Pure logic over arrival timestamps (time.monotonic(), taken by the port callback), so it is tested with plain numbers.
The port callback only appends a timestamp; `tempo()` does the work on the reader's thread. The BPM is a straight
line through the last `window_ticks` arrival times against their tick count, which averages out the transport's
jitter (a JACK period, a USB frame) instead of trusting any single interval. Two things would tilt that line and
are taken care of: a tick lost on the way (an overloaded JACK graph drops MIDI events) is counted back in when the
gaps around it add up to one interval more than the ticks seen, and ticks that arrive late (a stalled sender, a
late cycle delivering a burst) are left out of the final fit.
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
_WHOLE = 0.35  # a gap (or a run of gaps) within 35% of a whole number of intervals counts as that many
_LONG = 1.5  # a gap this many intervals long may hide lost ticks
_MIN_GAPS = 8  # lost ticks are only counted when the window has this many gaps...
_MIN_SINGLE_SHARE = 0.7  # ...and this share of them is one interval (else jitter and loss look alike)...
_MAX_LONG_SHARE = 0.15  # ...and at most this share is long (losses are rare; a transport's rhythm is not)
_LATE = 0.3  # ticks further than this many intervals behind the fitted line are left out of the final fit


@dataclass(frozen=True)
class MidiClockConfig:
    """How the clock is measured."""

    window_ticks: int = 96  # ticks in the BPM fit (4 beats): longer is smoother, shorter follows tempo changes faster
    timeout_s: float = 0.5  # no tick for this long: the clock is lost (TempoState.running = False)
    max_gap_factor: float = 8.0  # a gap this many tick intervals long restarts the fit (the sender paused)...
    restart_s: float = 0.5  # ...once it is also this long: shorter stalls are a congested transport, not a pause
    beats_per_bar: int = 4  # for bar phase
    bpm_min: float = 20.0  # fits outside bpm_min..bpm_max are ignored (a burst or a gap, not a tempo)
    bpm_max: float = 300.0
    switch_share: float = 0.03  # a fit this far (relative) from the tempo shown must hold...
    switch_ticks: int = 24  # ...over this many ticks, within switch_share of itself, before the tempo jumps to it

    def __post_init__(self) -> None:
        if self.window_ticks < 2:
            raise ValueError(f"window_ticks must be >= 2 to measure a tempo, got {self.window_ticks}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_gap_factor <= 1:
            raise ValueError(f"max_gap_factor must be > 1, got {self.max_gap_factor}")
        if self.beats_per_bar < 1:
            raise ValueError(f"beats_per_bar must be >= 1, got {self.beats_per_bar}")
        if not 0 < self.bpm_min < self.bpm_max:
            raise ValueError(f"need 0 < bpm_min < bpm_max, got {self.bpm_min}, {self.bpm_max}")
        if self.restart_s < 0 or self.switch_share <= 0 or self.switch_ticks < 0:
            raise ValueError("restart_s and switch_ticks must be >= 0 and switch_share > 0")


class MidiClock:
    """Follows a MIDI clock: `feed` it messages with their arrival times, read `tempo()` from any thread."""

    def __init__(self, config: MidiClockConfig | None = None) -> None:
        self.config = config or MidiClockConfig()
        self._lock = threading.Lock()
        self._times: deque[float] = deque(maxlen=self.config.window_ticks)  # arrival times, one unbroken run
        self._last_tick_s: float | None = None
        self._position = 0  # tick index of the beat position shown (the last tick played, or where we were set)
        self._next = 0  # tick index the next clock pulse plays
        self._fresh = True  # no tick since start / continue / song position: do not extrapolate
        self._stopped = False  # after MIDI stop; a clock with no start at all counts as running
        self._bpm: float | None = None
        self._bpm_dirty = False
        self._challenger: tuple[float, int] | None = None  # (side of a differing fit: +1/-1, the tick it began at)
        self._settled = False  # the tempo shown came from a full window: big changes must hold first
        self._full_bpm: float | None = None  # the latest tempo fitted over a full window (kept across pauses)
        self._ticks_seen = 0

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
                average = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0  # burst-proof
                cfg = self.config
                long_gap = gap > cfg.timeout_s or (average > 0 and gap > cfg.max_gap_factor * average)
                paused = long_gap and gap > cfg.restart_s
                if gap < 0 or paused:
                    times.clear()  # the sender paused: a new run, free to set a new tempo
                    self._settled, self._challenger = False, None
            times.append(time_s)
            self._bpm_dirty = True
            self._ticks_seen += 1
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

    @property
    def stopped(self) -> bool:
        """True after MIDI stop until start or continue: the master clock holds the beat instead of free-running."""
        return self._stopped

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
            t = np.asarray(self._times, dtype=np.float64)  # (n,) arrival times
            if not self._settled:
                t = _skip_leading_burst(t, None if self._full_bpm is None else 60.0 / (PPQN * self._full_bpm))
            index = tick_counts(t)  # (m,) m <= n: the newest ticks wait while their count is undecided
            if len(index) >= (2 if self._bpm is None else _MIN_GAPS + 1):  # a new run must settle before it rules
                prior = None if self._full_bpm is None else 60.0 / (PPQN * self._full_bpm)
                seconds_per_tick = _late_robust_slope(index, t[: len(index)], prior)
                if seconds_per_tick > 0:
                    self._accept(60.0 / (PPQN * seconds_per_tick), index, t[: len(index)], prior)
        return self._bpm

    def _accept(self, fitted: float, index: np.ndarray, t: np.ndarray, prior: float | None) -> None:
        """Take a fitted tempo: in range, and (once settled) a big change only when it held for switch_ticks."""
        cfg = self.config
        if not cfg.bpm_min <= fitted <= cfg.bpm_max:
            return
        if not self._settled or abs(fitted / self._bpm - 1.0) <= cfg.switch_share:
            self._bpm, self._challenger = fitted, None
            self._settled = len(self._times) == cfg.window_ticks
            if self._settled:
                self._full_bpm = fitted
            return
        side = 1.0 if fitted > self._bpm else -1.0
        if self._challenger is None or self._challenger[0] != side:
            self._challenger = (side, self._ticks_seen)
        held = self._ticks_seen - self._challenger[1] >= cfg.switch_ticks
        n = cfg.switch_ticks
        if not held and n >= 2 and len(index) >= n:  # read rarely: do the newest switch_ticks ticks agree on their own?
            recent = _late_robust_slope(index[-n:], t[-n:], prior)
            recent_bpm = 60.0 / (PPQN * recent) if recent > 0 else 0.0
            held = (recent_bpm - self._bpm) * side > cfg.switch_share * self._bpm
        if held:
            self._bpm, self._challenger = fitted, None
            self._full_bpm = fitted

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


def tick_counts(t: np.ndarray) -> np.ndarray:
    """Tick count of each arrival time, with lost ticks counted in; shorter than t while the end is undecided.

    A long gap is lost ticks, or a late tick followed by a burst of the ticks it held up. Counting the intervals
    from before the long gap to the first regular gap after it, against the ticks that arrived in that time,
    tells them apart whatever the late ticks did.
    This is only decided while nearly every gap is one interval and long gaps are rare (else transport jitter or a
    JACK period close to the tick interval would look like loss).
    """
    steps = np.ones(max(len(t) - 1, 0))  # (n-1,) ticks per gap
    if len(steps) < _MIN_GAPS:
        return np.arange(len(t), dtype=np.float64)
    typical = float(np.median(np.diff(t)))
    ratio = np.diff(t) / typical if typical > 0 else steps
    steady = np.mean(np.abs(ratio - 1.0) <= _WHOLE) >= _MIN_SINGLE_SHARE and np.mean(ratio >= _LONG) <= _MAX_LONG_SHARE
    if typical <= 0 or not steady:
        return np.arange(len(t), dtype=np.float64)
    single = np.abs(ratio - 1.0) <= _WHOLE
    i, end = 0, len(t)
    while i < len(ratio):
        if ratio[i] < _LONG:
            i += 1
            continue
        j = i + 1
        while j < len(ratio) and not single[j]:  # held-up ticks catching up, or more long gaps
            j += 1
        if j == len(ratio):  # the cadence is not back yet: leave these ticks out for now
            end = i + 1
            break
        span = float(ratio[i : j + 1].sum())  # intervals from before the long gap to the first regular tick after
        burst = j - i > 2 and np.mean(ratio[i + 1 : j] < 0.5) > 0.5  # held-up ticks delivered at once: none lost
        if not burst and abs(span - round(span)) <= _WHOLE:
            steps[i] += max(0, round(span) - (j - i + 1))
        i = j
    return np.concatenate(([0.0], np.cumsum(steps)))[:end]


def _skip_leading_burst(t: np.ndarray, typical_s: float | None) -> np.ndarray:
    """A run's arrival times from the first of three gaps in a row near the typical gap (drops a catch-up burst)."""
    if len(t) < 4:
        return t
    gaps = np.diff(t)
    regular = gaps > 0.5 * (float(np.median(gaps)) if typical_s is None else typical_s)
    run = regular[:-2] & regular[1:-1] & regular[2:]
    first = int(np.argmax(run)) if run.any() else 0
    return t[first:]


def _slope(index: np.ndarray, t: np.ndarray) -> float:
    i = index - index.mean()
    denominator = float(np.dot(i, i))
    return float(np.dot(i, t - t.mean()) / denominator) if denominator > 0 else 0.0


def _late_robust_slope(index: np.ndarray, t: np.ndarray, prior: float | None = None) -> float:
    """Seconds per tick: a least-squares line, refitted without ticks that arrived late.

    Transport delays only ever make a tick late; a stalled sender or a late JACK cycle delivers several at once,
    which tilts a plain fit. Ticks further behind the line than 30% of an interval (or than the transport's usual
    jitter, if larger) are left out. The first line has the `prior` slope (the tempo shown) when there is one, so
    a burst cannot tilt the line that decides which ticks were late.
    """
    slope = _slope(index, t) if prior is None else prior
    for _ in range(3):
        if slope <= 0:
            break
        residual = t - slope * index
        residual -= np.median(residual)
        spread = 3.0 * 1.4826 * float(np.median(np.abs(residual)))  # ~3 sigma of the transport's own jitter
        keep = residual <= max(_LATE * slope, spread)
        if keep.all() or keep.sum() < max(2, len(t) // 2):
            if slope == prior:  # the prior line explains too little: the tempo changed, fit the ticks as they are
                slope = _slope(index, t)
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
