"""MIDI decoding as plain data: every message kind gives the value a performer expects under the documented key."""

from __future__ import annotations

import mido
import pytest

from controllers.midi import (
    MidiDecoder,
    MidiDecoderConfig,
    MidiInput,
    MidiSource,
    decode_relative,
    find_port,
    parse_midi_source,
)


def cc(control: int, value: int, channel: int = 0) -> mido.Message:
    return mido.Message("control_change", channel=channel, control=control, value=value)


def test_plain_cc_is_normalised_under_its_key() -> None:
    event = MidiDecoder().decode(cc(74, 127, channel=2), 1.5)
    assert (event.source, event.value, event.time_s) == ("midi/cc/2/74", 1.0, 1.5)
    assert MidiDecoder().decode(cc(7, 0), 0.0).value == 0.0


def test_14bit_pair_combines_msb_and_lsb_and_emits_on_lsb() -> None:
    decoder = MidiDecoder(MidiDecoderConfig(cc14=frozenset({(0, 1)})))
    assert decoder.decode(cc(1, 0x40), 0.0) is None  # MSB waits for its LSB
    event = decoder.decode(cc(33, 0x20), 0.0)
    assert event.source == "midi/cc14/0/1"
    assert event.value == pytest.approx((0x40 * 128 + 0x20) / 16383)
    # an LSB-only update (fine move within the same MSB) keeps the MSB
    assert decoder.decode(cc(33, 0x7F), 0.0).value == pytest.approx((0x40 * 128 + 0x7F) / 16383)
    decoder.decode(cc(1, 0x7F), 0.0)
    assert decoder.decode(cc(33, 0x7F), 0.0).value == 1.0
    # the same CC numbers on another channel are plain 7-bit controls
    assert decoder.decode(cc(33, 10, channel=1), 0.0).source == "midi/cc/1/33"


@pytest.mark.parametrize(
    ("encoding", "table"),
    [
        ("twos_complement", {1: 1, 5: 5, 63: 63, 127: -1, 123: -5, 64: -64}),
        ("binary_offset", {65: 1, 70: 6, 63: -1, 58: -6, 64: 0, 127: 63, 0: -64}),
        ("signed_bit", {1: 1, 5: 5, 63: 63, 65: -1, 69: -5, 127: -63, 64: 0}),
    ],
)
def test_relative_encodings(encoding: str, table: dict[int, int]) -> None:
    for value, steps in table.items():
        assert decode_relative(value, encoding) == steps, (encoding, value)
    decoder = MidiDecoder(MidiDecoderConfig(relative={(3, 16): encoding}))
    for value, steps in table.items():
        event = decoder.decode(cc(16, value, channel=3), 0.0)
        if steps == 0:
            assert event is None
        else:
            assert (event.source, event.value) == ("midi/rel/3/16", float(steps))


def test_notes_bend_and_program() -> None:
    decoder = MidiDecoder()
    on = decoder.decode(mido.Message("note_on", channel=9, note=36, velocity=127), 0.0)
    assert (on.source, on.value) == ("midi/note/9/36", 1.0)
    assert decoder.decode(mido.Message("note_off", channel=9, note=36, velocity=64), 0.0).value == 0.0
    assert decoder.decode(mido.Message("note_on", channel=9, note=36, velocity=0), 0.0).value == 0.0
    bends = [decoder.decode(mido.Message("pitchwheel", channel=1, pitch=p), 0.0) for p in (-8192, 0, 8191)]
    assert [b.value for b in bends] == [-1.0, 0.0, 1.0]
    assert bends[0].source == "midi/bend/1"
    program = decoder.decode(mido.Message("program_change", channel=0, program=5), 0.0)
    assert (program.source, program.value) == ("midi/program/0", 5.0)


def test_clock_and_system_messages_are_not_control_events() -> None:
    decoder = MidiDecoder()
    for msg in (mido.Message("clock"), mido.Message("start"), mido.Message("songpos", pos=8),
                mido.Message("sysex", data=[1, 2]), mido.Message("aftertouch", value=3)):
        assert decoder.decode(msg, 0.0) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cc14": {(16, 1)}}, "channel must be in range 0..15"),
        ({"cc14": {(0, 40)}}, "must be in range 0..31"),
        ({"relative": {(0, 200): "twos_complement"}}, "controller number must be in range 0..127"),
        ({"relative": {(0, 16): "sign_magnitude"}}, "relative encoding must be one of"),
        ({"cc14": {(0, 1)}, "relative": {(0, 33): "binary_offset"}}, "cannot be both relative"),
    ],
)
def test_decoder_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MidiDecoderConfig(**kwargs)


def test_parse_midi_source() -> None:
    assert parse_midi_source("midi/cc/0/74") == MidiSource("cc", 0, 74)
    assert parse_midi_source("midi/cc14/15/31") == MidiSource("cc14", 15, 31)
    assert parse_midi_source("midi/bend/3") == MidiSource("bend", 3, -1)
    assert parse_midi_source("midi/program/0") == MidiSource("program", 0, -1)
    for bad in ("midi/cc/0", "midi/cc/16/1", "midi/cc14/0/40", "midi/knob/0/1", "osc/livekit/x", "midi/bend/0/1",
                "midi/cc/a/1"):
        with pytest.raises(ValueError):
            parse_midi_source(bad)


def test_find_port_prefers_exact_then_case_insensitive_fragment() -> None:
    names = ["Midi Through:Midi Through Port-0 14:0", "nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0", "nano"]
    assert find_port(names, "nano") == "nano"
    assert find_port(names, "KONTROL") == names[1]
    assert find_port(names, "kontrol2 midi") == names[1]
    assert find_port(names, "launchpad") is None


def test_midi_input_needs_a_port_or_a_virtual_port() -> None:
    with pytest.raises(ValueError, match="port name fragment"):
        MidiInput(lambda e: None)
    with pytest.raises(ValueError, match="must not be empty"):
        MidiInput(lambda e: None, port="  ")
