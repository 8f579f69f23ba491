"""Tempo: manual BPM, tap tempo, a master clock that picks between tempo sources, and on-the-beat scheduling.

Every tempo source (MIDI clock, Ableton/OSC clock, the audio beat tracker, TapTempo, ManualTempo) has
``tempo() -> TempoState | None``; the master clock takes any of them in priority order.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from controllers.base import ControlEvent, TempoState


class TempoSource(Protocol):
    """Anything with a tempo: MidiClock, the Ableton clock, AudioInput, TapTempo, ManualTempo, MasterClock."""

    def tempo(self) -> TempoState | None:
        """The source's current view of the music, or None while it has none."""


def beat_at(state: TempoState, time_s: float) -> float:
    """A state's beat count extrapolated to time_s (held still while the source is not running)."""
    return state.beat + (time_s - state.time_s) * state.bpm / 60.0 if state.running else state.beat


def next_boundary_time(state: TempoState, every_beats: float, time_s: float) -> float:
    """Time of the first multiple of every_beats (1 = next beat, beats_per_bar = next bar) after time_s."""
    if every_beats <= 0:
        raise ValueError(f"every_beats must be > 0, got {every_beats}")
    beat = beat_at(state, time_s)
    target = (math.floor(beat / every_beats) + 1) * every_beats
    return time_s + (target - beat) * 60.0 / state.bpm


def _check_bpm(bpm: float) -> float:
    if not (math.isfinite(bpm) and 1.0 <= bpm <= 999.0):
        raise ValueError(f"bpm must be between 1 and 999, got {bpm}")
    return float(bpm)


class ManualTempo:
    """A tempo typed or dialled in by hand; beat 0 (a downbeat) is at construction or the last downbeat()."""

    def __init__(self, bpm: float = 120.0, beats_per_bar: int = 4, now_s: float | None = None) -> None:
        if beats_per_bar < 1:
            raise ValueError(f"beats_per_bar must be >= 1, got {beats_per_bar}")
        self.beats_per_bar = beats_per_bar
        self._lock = threading.Lock()
        self._bpm = _check_bpm(bpm)
        self._anchor = (0.0, time.monotonic() if now_s is None else now_s)  # (beat, time_s)

    def set_bpm(self, bpm: float, now_s: float | None = None) -> None:
        """Change the tempo from now on; the beat position carries on without a jump."""
        bpm = _check_bpm(bpm)
        now = time.monotonic() if now_s is None else now_s
        with self._lock:
            beat = self._anchor[0] + (now - self._anchor[1]) * self._bpm / 60.0
            self._bpm, self._anchor = bpm, (beat, now)

    def downbeat(self, now_s: float | None = None) -> None:
        """Now is beat 0 of a bar (align the grid to the music by hand)."""
        with self._lock:
            self._anchor = (0.0, time.monotonic() if now_s is None else now_s)

    def nudge(self, beats: float) -> None:
        """Shift the beat grid by a fraction of a beat (positive: later beats arrive sooner)."""
        with self._lock:
            self._anchor = (self._anchor[0] + beats, self._anchor[1])

    def tempo(self, now_s: float | None = None) -> TempoState:
        """The manual tempo at now_s (default now); always running."""
        now = time.monotonic() if now_s is None else now_s
        with self._lock:
            beat = self._anchor[0] + (now - self._anchor[1]) * self._bpm / 60.0
            return TempoState(bpm=self._bpm, beat=beat, time_s=now, running=True, beats_per_bar=self.beats_per_bar)


class TapTempo:
    """Tap tempo: BPM from a least-squares line through the recent taps; each tap is a beat, a sequence's first tap
    a downbeat (beat 0)."""

    def __init__(self, beats_per_bar: int = 4, max_taps: int = 8, bpm_min: float = 30.0, bpm_max: float = 300.0) -> None:
        if beats_per_bar < 1 or max_taps < 2:
            raise ValueError(f"need beats_per_bar >= 1 and max_taps >= 2, got {beats_per_bar}, {max_taps}")
        if not 0 < bpm_min < bpm_max:
            raise ValueError(f"need 0 < bpm_min < bpm_max, got {bpm_min}, {bpm_max}")
        self.beats_per_bar = beats_per_bar
        self.max_taps = max_taps
        self._longest_s = 60.0 / bpm_min  # a longer gap starts a new tap sequence
        self._shortest_s = 60.0 / bpm_max  # a shorter gap is a double hit and is ignored
        self._lock = threading.Lock()
        self._taps: list[tuple[int, float]] = []  # (beat number in this sequence, tap time)
        self._fit: tuple[float, float, float] | None = None  # (beat, its time_s, seconds per beat)

    def tap(self, time_s: float | None = None) -> float | None:
        """Register a tap (default now); returns the BPM once the sequence has two taps."""
        now = time.monotonic() if time_s is None else time_s
        with self._lock:
            if self._taps and now - self._taps[-1][1] < self._shortest_s:
                return self._bpm()  # a double hit
            if self._taps and now - self._taps[-1][1] > self._longest_s:
                self._taps.clear()  # a new sequence; the old tempo stays until it has two taps
            number = self._taps[-1][0] + 1 if self._taps else 0
            self._taps = (self._taps + [(number, now)])[-self.max_taps :]
            if len(self._taps) >= 2:
                k = np.array([n for n, _ in self._taps], dtype=np.float64)
                spb, intercept = np.polyfit(k, np.array([t for _, t in self._taps]), 1)
                self._fit = (float(number), float(intercept + spb * number), float(spb))
            return self._bpm()

    def _bpm(self) -> float | None:
        return None if self._fit is None else 60.0 / self._fit[2]

    def reset(self) -> None:
        """Forget taps and tempo."""
        with self._lock:
            self._taps.clear()
            self._fit = None

    def tempo(self, now_s: float | None = None) -> TempoState | None:
        """The tapped tempo at now_s (default now), or None before two taps."""
        now = time.monotonic() if now_s is None else now_s
        with self._lock:
            if self._fit is None:
                return None
            beat, ref_s, spb = self._fit
            return TempoState(bpm=60.0 / spb, beat=beat + (now - ref_s) / spb, time_s=now,
                              beats_per_bar=self.beats_per_bar)


@dataclass(frozen=True)
class ClockConfig:
    """How the master clock picks and reports its tempo."""

    stale_s: float = 2.0  # a source whose state is older than this counts as lost
    beats_per_bar: int | None = None  # None: use the active source's beats_per_bar
    fallback_bpm: float = 120.0  # tempo while no source has one

    def __post_init__(self) -> None:
        if self.stale_s <= 0:
            raise ValueError(f"stale_s must be > 0 seconds, got {self.stale_s}")
        if self.beats_per_bar is not None and self.beats_per_bar < 1:
            raise ValueError(f"beats_per_bar must be >= 1 or None, got {self.beats_per_bar}")
        _check_bpm(self.fallback_bpm)


_JUMP_BEATS = 0.5  # the active source's count moving this far from where the master expected it is a jump


class MasterClock:
    """Picks the first running source in priority order (or a pinned one) and reports one continuous beat count.

    Beat and bar phase come from the active source; the first source's beat count is used as is, and on a later switch
    the count is shifted by whole bars so it stays near where it was. `events()` turns the clock into clock/<name> control events for the runtime to poll.
    """

    def __init__(self, sources: Mapping[str, TempoSource] | Sequence[tuple[str, TempoSource]],
                 config: ClockConfig | None = None, now_s: float | None = None) -> None:
        self.sources: list[tuple[str, TempoSource]] = list(sources.items() if isinstance(sources, Mapping) else sources)
        names = [name for name, _ in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"tempo source names must be unique, got {names}")
        self.config = config or ClockConfig()
        self._lock = threading.Lock()
        self._pinned: str | None = None
        self.active: str | None = None  # name of the source in use, None while free-running
        self._offset = 0.0  # master beat = source beat + offset
        self._has_run = False  # until a source was used, the master count is simply the first source's count
        self._free = (0.0, time.monotonic() if now_s is None else now_s, self.config.fallback_bpm)  # beat, time, bpm
        self._last_beat: int | None = None
        self._last_bar: int | None = None
        self._last_source: str | None = None
        self._free_running = True  # False while the active source's transport holds the beat
        self._jumped = False  # the source's position jumped since events() last ran

    def pin(self, name: str | None) -> None:
        """Use only this source while it runs (None: back to priority order)."""
        if name is not None and name not in {n for n, _ in self.sources}:
            raise ValueError(f"unknown tempo source {name!r}; sources: {[n for n, _ in self.sources]}")
        with self._lock:
            self._pinned = name

    def _pick(self, now: float) -> tuple[str, TempoState] | None:
        for name, source in self.sources:
            if self._pinned is not None and name != self._pinned:
                continue
            state = source.tempo()
            if state is None or now - state.time_s > self.config.stale_s or state.bpm <= 0:
                continue
            if state.running or getattr(source, "stopped", False):  # a stopped transport still owns the beat
                return name, state
        return None

    def tempo(self, now_s: float | None = None) -> TempoState:
        """The master tempo at now_s (default now): running=False while free-running on the last known tempo or
        while the active source's transport is stopped (then the beat holds where it stopped)."""
        now = time.monotonic() if now_s is None else now_s
        with self._lock:
            picked = self._pick(now)
            free_beat, free_s, free_bpm = self._free
            previous = free_beat + (now - free_s) * free_bpm / 60.0 if self._free_running else free_beat
            if picked is None:
                self.active = None
                self._free, self._free_running = (previous, now, free_bpm), True
                bpb = self.config.beats_per_bar or 4
                return TempoState(bpm=free_bpm, beat=previous, time_s=now, running=False, beats_per_bar=bpb)
            name, state = picked
            bpb = self.config.beats_per_bar or state.beats_per_bar
            source_beat = beat_at(state, now)
            switched = name != self.active
            if switched:  # keep the count near where it was, whole bars apart from the source's
                self._offset = round((previous - source_beat) / bpb) * bpb if self._has_run else 0.0
                self.active = name
                self._has_run = True
            beat = source_beat + self._offset
            if not switched and abs(beat - previous) > _JUMP_BEATS:  # start, song position, a relocate
                self._jumped = True
            self._free, self._free_running = (beat, now, state.bpm), state.running
            return TempoState(bpm=state.bpm, beat=beat, time_s=now, running=state.running, beats_per_bar=bpb)

    def phases(self, now_s: float | None = None) -> tuple[float, float]:
        """(beat phase, bar phase), each 0..1, at now_s."""
        state = self.tempo(now_s)
        return state.beat % 1.0, (state.beat / state.beats_per_bar) % 1.0

    def events(self, now_s: float | None = None) -> list[ControlEvent]:
        """clock/bpm, clock/beat_phase, clock/bar_phase, clock/running now; clock/beat and clock/bar when one
        began since the previous call; clock/source (the source's name) when it changed. Call once per tick."""
        now = time.monotonic() if now_s is None else now_s
        state = self.tempo(now)
        beat_phase, bar_phase = state.beat % 1.0, (state.beat / state.beats_per_bar) % 1.0
        events = [ControlEvent("clock/bpm", state.bpm, now), ControlEvent("clock/beat_phase", beat_phase, now),
                  ControlEvent("clock/bar_phase", bar_phase, now),
                  ControlEvent("clock/running", 1.0 if state.running else 0.0, now)]
        number, bar = math.floor(state.beat), math.floor(state.beat / state.beats_per_bar)
        if self._jumped:  # a jump restarts the count: a landing on a beat or bar line fires it, never a stale max
            self._jumped = False
            self._last_beat = math.ceil(state.beat) - 1
            self._last_bar = math.ceil(state.beat / state.beats_per_bar) - 1
        if self._last_beat is not None and number > self._last_beat:
            events.append(ControlEvent("clock/beat", 1.0, now))
        if self._last_bar is not None and bar > self._last_bar:
            events.append(ControlEvent("clock/bar", 1.0, now))
        self._last_beat = number if self._last_beat is None else max(number, self._last_beat)
        self._last_bar = bar if self._last_bar is None else max(bar, self._last_bar)
        source = self.active or "free"
        if source != self._last_source:
            events.append(ControlEvent("clock/source", source, now))
            self._last_source = source
        return events


class Quantizer:
    """Applies changes on the next beat or bar of a clock, so a scene switch lands on the downbeat."""

    def __init__(self, clock: MasterClock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: list[tuple[float, Callable[[], None]]] = []  # (master beat to run at, action)

    def schedule(self, action: Callable[[], None], on: str | float = "bar", now_s: float | None = None) -> float:
        """Run action at the next 'beat', 'bar', or multiple of a number of beats; returns the target beat count."""
        state = self.clock.tempo(now_s)
        if on == "beat":
            every = 1.0
        elif on == "bar":
            every = float(state.beats_per_bar)
        elif isinstance(on, (int, float)) and not isinstance(on, bool) and on > 0:
            every = float(on)
        else:
            raise ValueError(f"on must be 'beat', 'bar' or a number of beats > 0, got {on!r}")
        target = (math.floor(state.beat / every + 1e-9) + 1) * every
        with self._lock:
            self._pending.append((target, action))
        return target

    @property
    def pending(self) -> int:
        """Changes waiting for their beat."""
        return len(self._pending)

    def poll(self, now_s: float | None = None) -> int:
        """Run every change whose beat has come (on the caller's thread, in scheduling order); returns how many."""
        beat = self.clock.tempo(now_s).beat
        with self._lock:
            due = [action for target, action in self._pending if beat >= target]
            self._pending = [(target, action) for target, action in self._pending if beat < target]
        for action in due:
            action()
        return len(due)
