"""Sources: what a performer chains in a sketch gives the values they expect."""

from __future__ import annotations

import pytest

from livekit.sketch.sources import (
    AUDIO_FEATURES,
    KeyInput,
    apply_curve,
    audio,
    key,
    lfo,
    lfo_value,
    midi,
    osc,
    source_from_key,
    tempo,
)


def test_chaining_returns_new_sources_and_leaves_the_original_alone() -> None:
    knob = midi.cc(1)
    ranged = knob.range(0.0, 2.0)
    assert knob.ops == () and len(ranged.ops) == 1
    assert ranged != knob
    assert midi.cc(1) == knob  # sources compare by value, so a reloaded sketch keeps smoothing state
    assert repr(midi.bend(2)) == "midi.bend(channel=2)" and repr(midi.note(36)) == "midi.note(36, mode='gate')"
    assert repr(ranged.curve("exp").smooth(0.1, 0.4)) == "midi.cc(1).range(0.0, 2.0).curve('exp').smooth(0.1, 0.4)"


def test_ranges_follow_the_chain() -> None:
    assert midi.cc(1).out_range == (0.0, 1.0)
    assert midi.bend().out_range == (-1.0, 1.0)
    assert midi.program().out_range == (0.0, 127.0)
    assert audio.bass.range(0.0, 2.0).invert().out_range == (0.0, 2.0)
    assert lfo.sine(hz=1).scale(3).out_range == (0.0, 3.0)
    assert audio.bass.range(0, 2).explicit_range and not audio.bass.smooth(0.1).explicit_range


def test_sources_know_their_controller_keys() -> None:
    assert midi.cc(74, channel=2).keys == {"midi/cc/2/74"}
    assert midi.cc(16, relative="twos_complement").keys == {"midi/rel/0/16"}
    assert audio.beat.keys == {"audio/beat"}
    assert osc("/fader1").keys == {"osc/fader1"}
    assert key("space").keys == {"key/space"}
    assert lfo.sine(hz=0.5).keys == frozenset() and lfo.sine(hz=0.5).needs == frozenset()
    assert lfo.sine(beats=8).needs == {"tempo"}
    assert tempo.bar_phase.needs == {"tempo"}
    assert midi.clock_phase.needs == {"tempo", "midi"}
    assert audio.level.quantize("bar").needs == {"audio", "tempo"}


def test_audio_features_are_one_table() -> None:
    for name, (event_key, mode) in AUDIO_FEATURES.items():
        origin = getattr(audio, name).origin
        assert isinstance(origin, KeyInput) and (origin.key, origin.mode) == (event_key, mode)
        expected = f"audio/{name}_auto" if name in ("bass", "low_mid", "mid", "high") else f"audio/{name}"
        assert event_key == expected  # bands read the auto-gained 0..1 value
    assert getattr(audio, "onset").origin.mode == "pulse"
    assert getattr(audio, "bass").origin.mode == "level"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: midi.cc(128), "CC number must be in range 0..127"),
        (lambda: midi.cc(1, channel=16), "channel must be in range 0..15"),
        (lambda: midi.cc(1, relative="twos_complment"), "did you mean 'twos_complement'"),
        (lambda: midi.note(36, mode="trig"), "did you mean 'trigger'"),
        (lambda: midi.cc(1).curve("expo"), "did you mean 'exp'"),
        (lambda: midi.cc(1).curve(-1.0), "exponent must be > 0"),
        (lambda: midi.cc(1).range(1, 1), "lo != hi"),
        (lambda: midi.cc(1).quantize("beats"), "did you mean 'beat'"),
        (lambda: midi.cc(1).smooth(-0.1), ">= 0"),
        (lambda: lfo.sine(), "exactly one of hz="),
        (lambda: lfo.sine(hz=1, beats=4), "exactly one of hz="),
        (lambda: lfo.saw(beats=0), "must be > 0"),
        (lambda: osc("fader"), "starting with '/'"),
    ],
)
def test_bad_arguments_fail_where_they_are_written(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_misspelled_namespace_attributes_suggest_the_right_name() -> None:
    with pytest.raises(AttributeError, match="did you mean 'bass'"):
        audio.bas  # noqa: B018
    with pytest.raises(AttributeError, match="did you mean 'cc'"):
        midi.ccc(1)
    with pytest.raises(AttributeError, match="did you mean 'bar_phase'"):
        tempo.bar_phse  # noqa: B018


def test_lfo_shapes() -> None:
    assert lfo_value("sine", 0.0) == pytest.approx(0.0)
    assert lfo_value("sine", 0.5) == pytest.approx(1.0)
    assert lfo_value("sine", 1.25) == pytest.approx(0.5)
    assert [lfo_value("triangle", c) for c in (0, 0.25, 0.5, 0.75)] == pytest.approx([0, 0.5, 1, 0.5])
    assert lfo_value("saw", 2.3) == pytest.approx(0.3)
    assert (lfo_value("square", 0.2), lfo_value("square", 0.7)) == (1.0, 0.0)
    # sample and hold: one value per cycle, repeatable, different between cycles
    held = [lfo_value("random", 3 + f, seed=5) for f in (0.0, 0.3, 0.9)]
    assert held[0] == held[1] == held[2] and 0.0 <= held[0] < 1.0
    assert lfo_value("random", 4.0, seed=5) != held[0]
    assert lfo_value("random", 3.5, seed=6) != held[0]
    # smooth random starts each cycle at the held value and glides to the next one without a jump
    assert lfo_value("smooth_random", 3.0, seed=5) == pytest.approx(held[0])
    assert lfo_value("smooth_random", 3.999999, seed=5) == pytest.approx(lfo_value("random", 4.0, seed=5), abs=1e-6)


def test_curves_bend_inside_zero_one() -> None:
    for shape in ("linear", "exp", "log", "smoothstep", 2.0):
        assert apply_curve(0.0, shape) == pytest.approx(0.0)
        assert apply_curve(1.0, shape) == pytest.approx(1.0)
    assert apply_curve(0.5, "exp") < 0.2  # slow start: fine control at the bottom of the knob
    assert apply_curve(0.5, "log") > 0.8
    assert apply_curve(0.5, "smoothstep") == pytest.approx(0.5)
    assert apply_curve(0.5, 2.0) == pytest.approx(0.25)
    assert apply_curve(1.7, "linear") == 1.0  # clamped


def test_source_from_key_reads_every_learnable_key() -> None:
    assert source_from_key("midi/cc/3/74") == midi.cc(74, channel=3)
    assert source_from_key("midi/cc14/0/1") == midi.cc14(1)
    assert source_from_key("midi/note/9/36") == midi.note(36, channel=9)
    assert source_from_key("midi/bend/1") == midi.bend(1)
    assert source_from_key("midi/program/0") == midi.program(0)
    assert source_from_key("midi/rel/0/16", "signed_bit") == midi.cc(16, relative="signed_bit")
    assert source_from_key("audio/bass_auto") == audio.bass
    assert source_from_key("osc/td/speed") == osc("/td/speed")
    with pytest.raises(ValueError, match="cannot read a source"):
        source_from_key("midi/cc/x/1")
    with pytest.raises(ValueError, match="cannot read a source"):
        source_from_key("joystick/0")
