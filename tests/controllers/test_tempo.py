"""Manual and tap tempo, the master clock's choice between sources, and changes quantised to beats and bars."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.base import TempoState
from controllers.features import analyze_array
from controllers.tempo import (ClockConfig, ManualTempo, MasterClock, Quantizer, TapTempo, beat_at,
                               next_boundary_time)
from tests.controllers.test_beat import RATE, beat_track


class FakeSource:
    """A tempo source returning whatever state the test sets (like a MIDI or Ableton clock would)."""

    def __init__(self, state: TempoState | None = None) -> None:
        self.state = state

    def tempo(self) -> TempoState | None:
        """The state set by the test."""
        return self.state


def test_manual_tempo_counts_beats_and_keeps_position_across_bpm_changes() -> None:
    manual = ManualTempo(120.0, now_s=10.0)
    assert manual.tempo(11.0).beat == pytest.approx(2.0)
    manual.set_bpm(60.0, now_s=11.0)
    assert manual.tempo(11.0).beat == pytest.approx(2.0)
    assert manual.tempo(13.0).beat == pytest.approx(4.0)
    manual.downbeat(now_s=20.0)
    assert manual.tempo(20.5).beat == pytest.approx(0.5)
    manual.nudge(0.25)
    assert manual.tempo(20.5).beat == pytest.approx(0.75)
    with pytest.raises(ValueError, match="bpm must be between"):
        manual.set_bpm(0.0)


def test_tap_tempo_from_steady_and_jittered_taps() -> None:
    tap = TapTempo()
    assert tap.tap(100.0) is None and tap.tempo(100.0) is None
    for i in range(1, 6):
        bpm = tap.tap(100.0 + 0.5 * i)
    assert bpm == pytest.approx(120.0)
    state = tap.tempo(103.0)
    assert state is not None and state.beat == pytest.approx(6.0) and state.bpm == pytest.approx(120.0)

    jittered = TapTempo()
    jitter = np.random.default_rng(0).uniform(-0.015, 0.015, 8)
    for i in range(8):
        bpm = jittered.tap(i * 60.0 / 128.0 + jitter[i])
    assert bpm == pytest.approx(128.0, abs=1.0)


def test_tap_tempo_restarts_after_a_pause_and_ignores_double_hits() -> None:
    tap = TapTempo()
    for i in range(4):
        tap.tap(i * 0.5)
    assert tap.tap(1.55) == pytest.approx(120.0)  # 50 ms after the last tap: a double hit
    tap.tap(10.0)  # long pause: a new sequence; the old tempo holds until the second tap
    assert tap.tempo(10.0).bpm == pytest.approx(120.0)
    assert tap.tap(10.6) == pytest.approx(100.0)
    assert tap.tempo(10.6).beat == pytest.approx(1.0)  # the sequence's first tap was beat 0


def test_master_clock_takes_the_first_running_source_and_falls_back() -> None:
    midi = FakeSource(TempoState(bpm=140.0, beat=8.0, time_s=100.0))
    audio = FakeSource(TempoState(bpm=128.0, beat=3.0, time_s=100.0))
    manual = ManualTempo(90.0, now_s=0.0)
    clock = MasterClock([("midi", midi), ("audio", audio), ("manual", manual)])
    assert clock.tempo(100.0).bpm == 140.0 and clock.active == "midi"

    midi.state = TempoState(bpm=140.0, beat=8.0, time_s=100.0, running=False)  # MIDI stop
    state = clock.tempo(100.5)
    assert clock.active == "audio" and state.bpm == 128.0
    assert state.beat % 1.0 == pytest.approx(beat_at(audio.state, 100.5) % 1.0)  # the audio's phase
    assert state.beat % 4 == pytest.approx(beat_at(audio.state, 100.5) % 4)  # and its bar position

    clock.tempo(103.0)  # the audio state is now 3 s old: stale
    assert clock.active == "manual"
    clock.pin("audio")
    assert clock.tempo(103.0).running is False and clock.active is None
    clock.pin(None)
    with pytest.raises(ValueError, match="unknown tempo source"):
        clock.pin("osc")


def test_master_clock_beat_count_stays_near_where_it_was_on_a_switch() -> None:
    first = ManualTempo(120.0, now_s=0.0)
    second = FakeSource(TempoState(bpm=120.0, beat=1.25, time_s=30.0))
    clock = MasterClock({"second": second, "first": first})
    second_state = second.state
    second.state = None
    before = clock.tempo(30.0).beat  # 60 beats from `first`
    second.state = second_state
    after = clock.tempo(30.0).beat
    assert abs(after - before) <= 2.0  # shifted by whole bars only
    assert after % 4 == pytest.approx(1.25)


def test_master_clock_free_runs_on_the_last_tempo_without_sources() -> None:
    source = FakeSource(TempoState(bpm=100.0, beat=0.0, time_s=0.0))
    clock = MasterClock([("only", source)], ClockConfig(fallback_bpm=120.0))
    clock.tempo(1.2)
    source.state = None
    state = clock.tempo(2.4)
    assert not state.running and state.bpm == 100.0 and state.beat == pytest.approx(4.0)
    assert MasterClock([]).tempo(0.0).bpm == 120.0


def test_clock_events_beats_bars_and_phases() -> None:
    clock = MasterClock([("manual", ManualTempo(120.0, now_s=0.0))])
    sources: list[str] = []
    beats = bars = 0
    for i in range(0, 401):  # 4 s at 100 ticks per second: 8 beats, 2 bars
        events = {e.source: e.value for e in clock.events(i / 100.0)}
        beats += "clock/beat" in events
        bars += "clock/bar" in events
        if "clock/source" in events:
            sources.append(str(events["clock/source"]))
        assert 0.0 <= events["clock/beat_phase"] < 1.0 and 0.0 <= events["clock/bar_phase"] < 1.0
    assert (beats, bars, sources) == (8, 2, ["manual"])
    assert clock.phases(1.25) == pytest.approx((0.5, 0.625))


def test_quantizer_applies_changes_on_the_next_bar_or_beat() -> None:
    clock = MasterClock([("manual", ManualTempo(120.0, now_s=0.0))])
    quantizer = Quantizer(clock)
    applied: list[tuple[str, float]] = []
    now = [0.3]
    quantizer.schedule(lambda: applied.append(("bar", now[0])), "bar", now_s=0.3)
    quantizer.schedule(lambda: applied.append(("beat", now[0])), "beat", now_s=0.3)
    for i in range(30, 250):
        now[0] = i / 100.0
        quantizer.poll(now[0])
    assert applied == [("beat", 0.5), ("bar", 2.0)]
    assert quantizer.pending == 0
    with pytest.raises(ValueError, match="'beat', 'bar'"):
        quantizer.schedule(lambda: None, "phrase")


def test_next_boundary_time() -> None:
    state = TempoState(bpm=120.0, beat=6.5, time_s=10.0)
    assert next_boundary_time(state, 1.0, 10.0) == pytest.approx(10.25)
    assert next_boundary_time(state, 4.0, 10.0) == pytest.approx(10.75)


def test_audio_beat_tracker_drives_the_master_clock() -> None:
    signal, beats = beat_track(128.0, 6.0)
    _, analyzer = analyze_array(signal, RATE, start_time_s=500.0)
    clock = MasterClock([("audio", analyzer), ("manual", ManualTempo(90.0, now_s=500.0))])
    state = clock.tempo(506.0)
    assert clock.active == "audio" and state.bpm == pytest.approx(128.0, abs=1.0)
    next_beat = next_boundary_time(state, 1.0, 506.0)
    true_next = 500.0 + beats[0] + np.ceil((506.0 - 500.0 - beats[0]) * 128.0 / 60.0) * 60.0 / 128.0
    assert next_beat == pytest.approx(true_next, abs=0.03)
