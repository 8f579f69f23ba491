"""MIDI learn: the next moving control binds to the armed target; mappings round-trip through the sketch's file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controllers.base import ControlEvent
from controllers.learn import (
    MidiLearn,
    MidiMapping,
    decoder_config_for,
    load_mappings,
    mappings_path,
    save_mappings,
)


def ev(source: str, value: float) -> ControlEvent:
    return ControlEvent(source, value, 0.0)


def test_next_moving_control_binds_to_the_armed_target() -> None:
    learn = MidiLearn()
    learn.feed(ev("midi/cc/0/10", 0.5))  # a knob that was touched before arming
    assert learn.feed(ev("midi/cc/0/11", 0.3)) is None  # not armed: nothing learned
    learn.arm("speed")
    assert learn.armed == "speed"
    assert learn.feed(ev("midi/cc/0/10", 0.5)) is None  # same value again: a repeat, not a move
    assert learn.feed(ev("midi/note/0/36", 0.0)) is None  # a note-off is not a move
    assert learn.feed(ev("osc/livekit/speed", 0.2)) is None  # only MIDI controls are learned
    mapping = learn.feed(ev("midi/cc/0/10", 0.52))
    assert mapping == MidiMapping("speed", "midi/cc/0/10")
    assert learn.armed is None
    assert learn.feed(ev("midi/cc/0/12", 0.9)) is None  # disarmed after one binding
    assert learn.mapping_for("speed") == mapping


def test_relearning_moves_bindings_one_control_one_target() -> None:
    learn = MidiLearn([MidiMapping("speed", "midi/cc/0/10"), MidiMapping("zoom", "midi/cc/0/11")])
    learn.arm("speed")
    learn.feed(ev("midi/note/9/36", 1.0))  # pads bind on note-on
    learn.arm("hue")
    learn.feed(ev("midi/cc/0/11", 0.1))  # zoom's knob now drives hue
    assert [(m.target, m.source) for m in learn.mappings()] == [("hue", "midi/cc/0/11"), ("speed", "midi/note/9/36")]
    assert learn.remove("hue") and not learn.remove("hue")
    learn.cancel()


def test_relative_encoder_is_learned_with_its_encoding() -> None:
    learn = MidiLearn(relative={(0, 16): "twos_complement"})
    learn.arm("hue")
    assert learn.feed(ev("midi/rel/0/16", 1.0)) == MidiMapping("hue", "midi/rel/0/16", "twos_complement")


def test_mappings_round_trip_through_a_json_file_next_to_the_sketch(tmp_path: Path) -> None:
    sketch = tmp_path / "tunnel.py"
    path = mappings_path(sketch)
    assert path == tmp_path / "tunnel.midi.json"
    assert load_mappings(path, missing_ok=True) == []
    mappings = [MidiMapping("speed", "midi/cc/0/74"), MidiMapping("zoom", "midi/cc14/0/1", soft_takeover=False),
                MidiMapping("hue", "midi/rel/0/16", "binary_offset")]
    save_mappings(path, mappings)
    doc = json.loads(path.read_text())
    assert doc["format"] == "livekit-midi-mappings" and doc["version"] == 1
    assert {"target": "zoom", "source": "midi/cc14/0/1", "soft_takeover": False} in doc["mappings"]
    assert sorted(load_mappings(path), key=lambda m: m.target) == sorted(mappings, key=lambda m: m.target)
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"mappings": []}', "not a livekit MIDI mapping file"),
        ('{"format": "livekit-midi-mappings", "version": 9, "mappings": []}', "version 9 is not supported"),
        ('{"format": "livekit-midi-mappings", "version": 1, "mappings": [{"target": "a", "source": "midi/cc/0/200"}]}',
         "mapping 0: cc number must be in range 0..127"),
        ('{"format": "livekit-midi-mappings", "version": 1, "mappings": [{"target": "a", "source": "midi/rel/0/1"}]}',
         "needs an encoding"),
        ('{"format": "livekit-midi-mappings", "version": 1, "mappings": [{"target": "a", "src": "midi/cc/0/1"}]}',
         "mapping 0 must be an object"),
    ],
)
def test_bad_mapping_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.midi.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_mappings(path)


def test_decoder_config_follows_the_mappings() -> None:
    config = decoder_config_for([MidiMapping("a", "midi/cc14/1/7"), MidiMapping("b", "midi/rel/0/16", "signed_bit"),
                                 MidiMapping("c", "midi/cc/0/1")])
    assert config.cc14 == frozenset({(1, 7)})
    assert dict(config.relative) == {(0, 16): "signed_bit"}
