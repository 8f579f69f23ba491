"""Transport through the master clock: stop holds, start is beat 0, continue resumes, song position and Ableton
jumps are followed, the beat never runs backwards on its own, and a congested MIDI clock cannot move the tempo."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from controllers.ableton import AbletonClock
from controllers.midi_clock import MidiClock
from controllers.tempo import MasterClock

TICK_128 = 60.0 / (128 * 24)


class Timed:
    """A source read at the test's own time (the master asks sources for tempo() at time.monotonic())."""

    def __init__(self, source: MidiClock | AbletonClock) -> None:
        self.source, self.now = source, 0.0

    @property
    def stopped(self) -> bool:
        return self.source.stopped

    def tempo(self):  # noqa: ANN201 - TempoSource protocol
        return self.source.tempo(self.now)


_TIMED: dict[int, Timed] = {}


def master_for(name: str, source: MidiClock | AbletonClock) -> tuple[MasterClock, Timed]:
    timed = Timed(source)
    master = MasterClock({name: timed}, now_s=0.0)
    _TIMED[id(master)] = timed
    return master, timed


def at(timed: Timed, master: MasterClock, t: float) -> MasterClock:
    timed.now = t
    return master


def tempo_at(master: MasterClock | tuple[MasterClock, Timed], t: float):  # noqa: ANN201
    """The master's tempo with its source read at t."""
    clock, timed = master if isinstance(master, tuple) else (master, _TIMED[id(master)])
    timed.now = t
    return clock.tempo(t)


def events_at(master: MasterClock | tuple[MasterClock, Timed], t: float):  # noqa: ANN201
    """The master's events with its source read at t."""
    clock, timed = master if isinstance(master, tuple) else (master, _TIMED[id(master)])
    timed.now = t
    return clock.events(t)


def play(clock: MidiClock, master: tuple[MasterClock, Timed], t0: float, n: int, interval: float = TICK_128,
         messages: list[tuple[float, str]] | None = None) -> tuple[float, list[float], list[str]]:
    """Feed n clock ticks from t0 (plus timestamped plain-data messages), polling the master after each."""
    plan = [(t0 + k * interval, "clock") for k in range(n)] + list(messages or [])
    beats, fired = [], []
    for t, kind in sorted(plan, key=lambda p: p[0]):
        if kind.startswith("songpos"):
            clock.feed(mido.Message("songpos", pos=int(kind.split(":")[1])), t)
        else:
            clock.feed(mido.Message(kind), t)
        events = events_at(master, t)
        beats.append(tempo_at(master, t).beat)
        fired += [e.source for e in events if e.source in ("clock/beat", "clock/bar")]
    return plan[-1][0] if not messages else max(p[0] for p in plan), beats, fired


def test_stop_holds_the_beat_and_continue_resumes_from_it() -> None:
    clock = MidiClock()
    master = master_for("midi", clock)
    last, _, _ = play(clock, master, 0.0, 24 * 8)
    clock.feed(mido.Message("stop"), last + 0.001)
    held = tempo_at(master, last + 0.01).beat
    last, beats, fired = play(clock, master, last + TICK_128, 24 * 4)  # the sender keeps clocking while stopped
    assert max(beats) == pytest.approx(held) and min(beats) == pytest.approx(held)
    assert not tempo_at(master, last).running and fired == []
    clock.feed(mido.Message("continue"), last + 0.001)
    _, beats, fired = play(clock, master, last + TICK_128, 24 * 2)
    assert beats[0] >= held and beats[-1] == pytest.approx(held + 2.0, abs=0.1)
    assert np.all(np.diff(beats) >= 0) and fired.count("clock/beat") == 2


def test_start_resets_to_beat_0_and_fires_the_downbeat() -> None:
    clock = MidiClock()
    master = master_for("midi", clock)
    last, _, _ = play(clock, master, 0.0, int(24 * 61.8))
    clock.feed(mido.Message("stop"), last + 0.001)
    clock.feed(mido.Message("start"), last + 0.3)
    assert tempo_at(master, last + 0.3).beat == pytest.approx(0.0)
    _, beats, fired = play(clock, master, last + 0.3 + TICK_128, 24 * 4 + 1)
    assert beats[0] == pytest.approx(0.0) and beats[-1] == pytest.approx(4.0, abs=0.05)
    assert np.all(np.diff(beats) >= 0)
    assert fired.count("clock/beat") == 5 and fired.count("clock/bar") == 2  # beats 0..4, bars 0 and 1


def test_song_position_pointer_sets_the_master_beat() -> None:
    clock = MidiClock()
    master = master_for("midi", clock)
    last, _, _ = play(clock, master, 0.0, 24 * 3)
    clock.feed(mido.Message("stop"), last + 0.001)
    clock.feed(mido.Message("songpos", pos=64), last + 0.002)  # 64 sixteenths = beat 16
    clock.feed(mido.Message("continue"), last + 0.003)
    _, beats, fired = play(clock, master, last + TICK_128, 24 * 2 + 1)
    assert beats[0] == pytest.approx(16.0) and beats[-1] == pytest.approx(18.0, abs=0.05)
    assert fired.count("clock/beat") == 3 and np.all(np.diff(beats) >= 0)


def test_free_running_master_never_runs_backwards_when_the_clock_returns() -> None:
    clock = MidiClock()
    master = master_for("midi", clock)
    last, _, _ = play(clock, master, 0.0, int(24 * 61.8))
    before = tempo_at(master, last).beat
    _, beats, _ = play(clock, master, last + 1.0, 24)  # the clock was lost for a second, then comes back
    assert min(beats) >= before


def stalled_arrivals(stall_s: float, n: int = 480, at: int = 200, jitter_s: float = 0.0, seed: int = 0) -> np.ndarray:
    """A steady 128 BPM clock whose transport stalls for stall_s at tick `at`, then delivers the held ticks at once."""
    rng = np.random.default_rng(seed)
    due = 100.0 + np.arange(n) * TICK_128
    end = due[at] + stall_s
    held = (np.arange(n) >= at) & (due < end)
    arrived = np.where(held, end + np.cumsum(held) * 2e-4, due)
    return np.maximum.accumulate(arrived + rng.uniform(0, jitter_s, n))  # a transport delays, never reorders


@pytest.mark.parametrize("stall_s", [0.1, 0.34, 0.45, 1.0])
def test_a_stall_and_burst_moves_the_tempo_by_a_fraction_of_a_bpm(stall_s: float) -> None:
    clock = MidiClock()
    shown = []
    for k, t in enumerate(stalled_arrivals(stall_s)):
        clock.tick(t)
        if k >= 96:
            shown.append(clock.tempo(t).bpm)
    assert max(shown) - 128.0 < 0.3 and 128.0 - min(shown) < 0.3


@pytest.mark.parametrize("stall_s", [0.1, 0.34, 0.45])
@pytest.mark.parametrize("seed", range(5))
def test_a_stall_and_burst_on_a_jittery_transport_stays_within_a_fraction_of_a_bpm(stall_s: float, seed: int) -> None:
    clock = MidiClock()
    shown = []
    for k, t in enumerate(stalled_arrivals(stall_s, jitter_s=0.005, seed=seed)):
        clock.tick(t)
        if k >= 96:
            shown.append(clock.tempo(t).bpm)
    assert max(abs(b - 128.0) for b in shown) < 0.3


@pytest.mark.parametrize("seed", range(5))
def test_steady_128_with_transport_jitter_never_dips(seed: int) -> None:
    clock = MidiClock()
    shown = []
    for k, t in enumerate(stalled_arrivals(0.0, jitter_s=0.005, seed=seed)):
        clock.tick(t)
        if k >= 96:
            shown.append(clock.tempo(t).bpm)
    assert min(shown) > 127.5 and max(shown) < 128.5


def test_a_tempo_outside_the_sane_range_is_ignored() -> None:
    clock = MidiClock()
    for t in 100.0 + np.arange(96) * TICK_128:
        clock.tick(t)
    start = 100.0 + 96 * TICK_128
    for k in range(200):  # a flood of pulses 1 ms apart (2500 BPM)
        clock.tick(start + k * 1e-3)
        assert clock.tempo(start + k * 1e-3).bpm < 300.0


def test_ableton_song_position_jump_is_followed_by_the_master() -> None:
    live = AbletonClock()
    master, timed = master_for("ableton", live)
    live.handle("/live/song/get/tempo", (120.0,), 0.0)
    t, fired = 0.0, []
    for b in range(8):
        t = b * 0.5
        live.handle("/live/song/get/beat", (b,), t)
        fired += [e.source for e in events_at(master, t) if e.source == "clock/beat"]
    live.handle("/live/song/get/current_song_time", (32.0,), t + 0.25)  # the performer jumped to bar 9
    assert tempo_at(master, t + 0.25).beat == pytest.approx(32.0)
    fired = [e.source for e in events_at(master, t + 0.25) if e.source == "clock/beat"]
    live.handle("/live/song/get/beat", (33,), t + 0.75)
    fired += [e.source for e in events_at(master, t + 0.75) if e.source == "clock/beat"]
    assert fired == ["clock/beat", "clock/beat"]  # the landing on beat 32, then beat 33
    live.handle("/live/song/get/beat", (4,), t + 1.25)  # a loop back to beat 4: followed, beats keep firing
    assert tempo_at(master, t + 1.25).beat == pytest.approx(4.0)
    live.handle("/live/song/get/beat", (5,), t + 1.75)
    assert tempo_at(master, t + 1.75).beat == pytest.approx(5.0)
    events_at(master, t + 1.25)
    assert [e.source for e in events_at(master, t + 1.75) if e.source == "clock/beat"] == ["clock/beat"]


def test_ableton_stop_holds_the_master_beat() -> None:
    live = AbletonClock()
    master, timed = master_for("ableton", live)
    live.handle("/live/song/get/tempo", (120.0,), 0.0)
    live.handle("/live/song/get/beat", (10,), 1.0)
    live.handle("/live/song/get/is_playing", (0,), 1.2)
    assert tempo_at(master, 1.3).beat == pytest.approx(10.0) and tempo_at(master, 5.0).beat == pytest.approx(10.0)
