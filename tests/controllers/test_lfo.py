"""LFO shapes, free-running rates, beat sync and seeded randomness."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.base import TempoState
from controllers.lfo import LFO, SHAPES, LFOBank
from controllers.tempo import ManualTempo


@pytest.mark.parametrize("shape, expected", [
    ("sine", [0.5, 1.0, 0.5, 0.0]),
    ("triangle", [0.5, 1.0, 0.5, 0.0]),
    ("saw", [0.0, 0.25, 0.5, 0.75]),
    ("square", [1.0, 1.0, 0.0, 0.0]),
])
def test_shapes_at_quarter_cycles(shape: str, expected: list[float]) -> None:
    lfo = LFO(shape, rate_hz=1.0)
    assert [lfo.value(c) for c in (0.0, 0.25, 0.5, 0.75)] == pytest.approx(expected, abs=1e-9)


def test_free_running_rate_and_range() -> None:
    lfo = LFO("sine", rate_hz=2.0, low=-1.0, high=3.0)
    times = np.linspace(0.0, 5.0, 2001)
    values = np.array([lfo.at(t, 0.0) for t in times])
    assert values.min() == pytest.approx(-1.0, abs=1e-3) and values.max() == pytest.approx(3.0, abs=1e-3)
    rising_through_middle = np.sum((values[:-1] < 1.0) & (values[1:] >= 1.0))
    assert rising_through_middle == 10  # 2 Hz for 5 s


def test_phase_offset_and_pulse_width() -> None:
    assert LFO("saw", rate_hz=1.0, phase=0.25).value(0.0) == pytest.approx(0.25)
    square = LFO("square", rate_hz=1.0, pulse_width=0.25)
    highs = np.mean([square.value(c) for c in np.linspace(0, 4, 4000, endpoint=False)])
    assert highs == pytest.approx(0.25, abs=0.01)


def test_beat_synced_lfo_follows_the_clock_tempo() -> None:
    manual = ManualTempo(120.0, now_s=0.0)
    bank = LFOBank({"pulse": LFO("saw", period_beats=1.0), "bar": LFO("saw", period_beats=4.0)}, clock=manual, start_s=0.0)
    assert bank.values(0.25, manual.tempo(0.25)) == pytest.approx({"pulse": 0.5, "bar": 0.125})
    manual.set_bpm(60.0, now_s=1.0)  # beat 2 at t=1, then one beat per second
    assert bank.values(1.5, manual.tempo(1.5)) == pytest.approx({"pulse": 0.5, "bar": 0.625})


def test_bank_events_are_named_lfo_and_synced_lfos_fall_back_without_a_clock() -> None:
    bank = LFOBank({"wobble": LFO("sine", rate_hz=1.0), "beat": LFO("saw", period_beats=1.0)}, start_s=10.0,
                   fallback_bpm=120.0)
    events = {e.source: e for e in bank.events(10.25)}
    assert set(events) == {"lfo/wobble", "lfo/beat"}
    assert events["lfo/wobble"].value == pytest.approx(1.0) and events["lfo/beat"].value == pytest.approx(0.5)
    assert events["lfo/beat"].time_s == 10.25
    state = TempoState(bpm=60.0, beat=7.25, time_s=10.25)
    assert bank.values(10.25, state)["beat"] == pytest.approx(0.25)


def test_random_shapes_are_deterministic_given_a_seed() -> None:
    positions = np.linspace(0.0, 20.0, 401)
    for shape in ("sample_hold", "smooth_random"):
        a = [LFO(shape, rate_hz=1.0, seed=7).value(p) for p in positions]
        b = [LFO(shape, rate_hz=1.0, seed=7).value(p) for p in positions]
        c = [LFO(shape, rate_hz=1.0, seed=8).value(p) for p in positions]
        assert a == b and a != c


def test_sample_and_hold_holds_within_a_cycle_and_is_uniform_across_cycles() -> None:
    lfo = LFO("sample_hold", rate_hz=1.0, seed=3)
    assert len({lfo.value(k + f) for k in range(5) for f in (0.0, 0.3, 0.99)}) == 5
    values = np.array([lfo.value(k) for k in range(4000)])
    assert 0.0 <= values.min() and values.max() < 1.0
    assert values.mean() == pytest.approx(0.5, abs=0.02)
    assert np.histogram(values, bins=10, range=(0, 1))[0].min() > 300


def test_smooth_random_glides_through_the_held_values() -> None:
    smooth, held = LFO("smooth_random", rate_hz=1.0, seed=5), LFO("sample_hold", rate_hz=1.0, seed=5)
    assert [smooth.value(k) for k in range(10)] == pytest.approx([held.value(k) for k in range(10)])
    steps = np.abs(np.diff([smooth.value(p) for p in np.linspace(0.0, 10.0, 1001)]))
    assert steps.max() < 0.02  # continuous: no jumps at cycle boundaries


@pytest.mark.parametrize("kwargs, message", [
    ({"shape": "wobble", "rate_hz": 1.0}, "shape must be one of"),
    ({"shape": "sine"}, "exactly one of rate_hz"),
    ({"shape": "sine", "rate_hz": 1.0, "period_beats": 1.0}, "exactly one of rate_hz"),
    ({"shape": "sine", "rate_hz": -1.0}, "rate_hz must be > 0"),
    ({"shape": "square", "rate_hz": 1.0, "pulse_width": 1.0}, "pulse_width"),
])
def test_lfo_errors_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LFO(**kwargs)


def test_every_shape_stays_in_range() -> None:
    for shape in SHAPES:
        lfo = LFO(shape, rate_hz=1.0, low=0.2, high=0.4, seed=1)
        values = [lfo.value(p) for p in np.linspace(0.0, 8.0, 333)]
        assert 0.2 - 1e-12 <= min(values) and max(values) <= 0.4 + 1e-12
    with pytest.raises(ValueError, match="no '/'"):
        LFOBank({"a/b": LFO(rate_hz=1.0)})
