"""MIDI clock: tempo, beat and bar position, transport messages, from plain timestamps and through a real JACK port."""

from __future__ import annotations

import threading
import time

import mido
import numpy as np
import pytest

from controllers.midi import MidiInput
from controllers.midi_clock import MidiClock, MidiClockConfig, bar_phase, beat_phase

JACK = "mido.backends.rtmidi/UNIX_JACK"


def feed_ticks(clock: MidiClock, bpm: float, n: int, t0: float = 100.0, jitter_s: float = 0.0, seed: int = 0) -> float:
    """Feed n clock ticks at bpm starting at t0 (with uniform arrival jitter); returns the last tick's time."""
    rng = np.random.default_rng(seed)
    interval = 60.0 / (bpm * 24)
    t = t0
    for k in range(n):
        t = t0 + k * interval + (rng.uniform(0, jitter_s) if jitter_s else 0.0)
        clock.tick(t)
    return t


def test_no_tempo_before_two_ticks() -> None:
    clock = MidiClock()
    assert clock.tempo(0.0) is None
    clock.tick(1.0)
    assert clock.tempo(1.0) is None
    clock.tick(1.02)
    assert clock.tempo(1.02) is not None


def test_bpm_is_smoothed_over_jittery_arrivals() -> None:
    clock = MidiClock()
    last = feed_ticks(clock, 128.0, 96, jitter_s=0.005)  # 5 ms of arrival jitter, like one JACK period
    state = clock.tempo(last)
    assert state.bpm == pytest.approx(128.0, abs=0.5)
    assert state.running


def arrivals(bpm: float, n: int, period_s: float, seed: int, drop: float = 0.0, stalls: int = 0) -> np.ndarray:
    """Arrival times of n ticks from a sender that stalls now and then (overdue ticks go out back to back),
    delivered at the end of each transport period (a JACK cycle), with a share of them lost on the way."""
    rng = np.random.default_rng(seed)
    interval = 60.0 / (bpm * 24)
    stall_at = sorted(rng.uniform(0, n * interval, stalls))
    sent, now = [], 0.0
    for due in np.arange(n) * interval:
        now = max(now, due)
        while stall_at and stall_at[0] <= now:
            now += rng.uniform(0.02, 0.04)  # the sender thread was descheduled
            stall_at.pop(0)
        sent.append(now)
        now += 50e-6
    arrived = np.ceil((np.asarray(sent) + rng.uniform(0, period_s)) / period_s) * period_s
    return 100.0 + arrived[rng.uniform(size=n) >= drop]


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("lost ticks", {"drop": 0.05}),
        ("sender stalls", {"stalls": 4}),
        ("both", {"drop": 0.03, "stalls": 2}),
        ("coarse JACK period near the tick interval", {"period_s": 1024 / 48000}),
    ],
)
def test_tempo_survives_lost_late_and_quantised_ticks(case: str, kwargs: dict) -> None:
    kwargs = {"period_s": 256 / 48000, **kwargs}
    for seed in range(10):
        clock = MidiClock()
        times = arrivals(120.0, 96, seed=seed, **kwargs)
        for t in times:
            clock.tick(t)
        assert clock.tempo(times[-1]).bpm == pytest.approx(120.0, abs=0.5), (case, seed)


def test_beat_and_bar_position_follow_the_ticks() -> None:
    clock = MidiClock()
    clock.start()
    last = feed_ticks(clock, 120.0, 24 * 5 + 12 + 1)  # ticks 0..132: beat 5.5
    state = clock.tempo(last)
    assert state.beat == pytest.approx(5.5)
    assert beat_phase(state) == pytest.approx(0.5)
    assert bar_phase(state) == pytest.approx(5.5 / 4 % 1)
    # between ticks the position advances smoothly, never past the next tick
    half_tick = 0.5 * 60 / (120 * 24)
    assert clock.tempo(last + half_tick).beat == pytest.approx(5.5 + 0.5 / 24)
    assert clock.tempo(last + 0.1).beat == pytest.approx(5.5 + 1 / 24)


def test_stop_holds_position_continue_resumes_start_restarts() -> None:
    clock = MidiClock()
    clock.start()
    last = feed_ticks(clock, 120.0, 49)  # beat 2.0
    clock.stop()
    stopped = clock.tempo(last + 0.01)
    assert not stopped.running and stopped.beat == pytest.approx(2.0)
    last = feed_ticks(clock, 120.0, 24, t0=last + 1 / 48)  # clock keeps running while stopped: tempo, no position
    assert clock.tempo(last).beat == pytest.approx(2.0)
    assert clock.tempo(last).bpm == pytest.approx(120.0)
    clock.resume()
    last = feed_ticks(clock, 120.0, 24, t0=last + 1 / 48)
    assert clock.tempo(last).beat == pytest.approx(2.0 + 24 / 24)
    assert clock.tempo(last).running
    clock.start()
    last = feed_ticks(clock, 120.0, 1, t0=last + 1 / 48)
    assert clock.tempo(last).beat == 0.0


def test_song_position_pointer_sets_the_beat() -> None:
    clock = MidiClock()
    clock.feed(mido.Message("songpos", pos=32), 0.0)  # 32 sixteenths = beat 8
    clock.feed(mido.Message("continue"), 0.0)
    last = feed_ticks(clock, 120.0, 13)
    assert clock.tempo(last).beat == pytest.approx(8.0 + 12 / 24)
    with pytest.raises(ValueError, match="song position"):
        clock.set_song_position(-1)


def test_tempo_change_is_followed_and_a_silent_clock_is_lost() -> None:
    clock = MidiClock(MidiClockConfig(timeout_s=0.5))
    last = feed_ticks(clock, 100.0, 60)
    last = feed_ticks(clock, 140.0, 48, t0=last + 60 / (140 * 24))
    assert 100.0 < clock.tempo(last).bpm < 140.0  # half way through the 4-beat window
    last = feed_ticks(clock, 140.0, 96, t0=last + 60 / (140 * 24))
    assert clock.tempo(last).bpm == pytest.approx(140.0, abs=0.01)
    assert not clock.tempo(last + 1.0).running
    # after a pause the fit starts over instead of averaging across the gap
    last = feed_ticks(clock, 90.0, 10, t0=last + 3.0)
    assert clock.tempo(last).bpm == pytest.approx(90.0, abs=0.01)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="window_ticks"):
        MidiClockConfig(window_ticks=1)
    with pytest.raises(ValueError, match="beats_per_bar"):
        MidiClockConfig(beats_per_bar=0)


def test_120_bpm_through_a_jack_port_reads_120_within_2_s(jack) -> None:
    backend = mido.Backend(JACK, load=True)
    clock = MidiClock()
    stop = threading.Event()
    first_tick = threading.Event()

    def send_clock(out: mido.ports.BaseOutput) -> None:
        interval = 60.0 / (120.0 * 24)
        due = time.monotonic()
        out.send(mido.Message("start"))
        while not stop.is_set():
            out.send(mido.Message("clock"))
            first_tick.set()
            due += interval
            delay = due - time.monotonic()
            if delay > 0:
                stop.wait(delay)  # absolute deadlines: sleep jitter never accumulates into tempo drift

    with backend.open_output("lk-clock-src", virtual=True) as out:
        with MidiInput(lambda e: None, port="lk-clock-src", backend=JACK, clock=clock) as midi_in:
            assert midi_in.wait_connected(5.0)
            sender = threading.Thread(target=send_clock, args=(out,), daemon=True)
            sender.start()
            try:
                assert first_tick.wait(5.0)
                stop.wait(2.0)  # the requirement: right within 2 s of the first tick
                state = clock.tempo()
            finally:
                stop.set()
                sender.join()
    assert state is not None, "no clock arrived"
    assert state.bpm == pytest.approx(120.0, abs=0.5)
    assert state.running
    assert state.beat == pytest.approx(4.0, abs=0.75)  # 2 s at 120 BPM, give or take scheduling on a busy machine
