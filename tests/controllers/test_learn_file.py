"""Mapping files: 14-bit and relative entries decode once loaded; the file is written only when a mapping changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mido
import pytest

from controllers.learn import MidiMapping, decoder_config_for, load_mappings, merge_decoder_configs, save_mappings
from controllers.midi import MidiDecoder, MidiDecoderConfig

HAND_WRITTEN = """{
  "format": "livekit-midi-mappings", "version": 1, "comment": "my rig",
  "mappings": [
    {"target": "speed", "source": "midi/cc/0/74", "label": "cutoff knob"},
    {"target": "zoom", "source": "midi/cc14/0/1"},
    {"target": "hue", "source": "midi/rel/0/16", "encoding": "twos_complement"}
  ]
}
"""


def test_cc14_and_relative_entries_of_a_mapping_file_produce_their_events(tmp_path: Path) -> None:
    path = tmp_path / "tunnel.midi.json"
    path.write_text(HAND_WRITTEN)
    mappings = load_mappings(path)
    sketch_needs = MidiDecoderConfig(cc14=frozenset({(1, 7)}))  # what the sketch itself declares
    decoder = MidiDecoder(merge_decoder_configs(sketch_needs, decoder_config_for(mappings)))
    events = [decoder.decode(m, 0.0) for m in (
        mido.Message("control_change", channel=0, control=1, value=127),
        mido.Message("control_change", channel=0, control=33, value=127),
        mido.Message("control_change", channel=0, control=16, value=125),  # two's complement: -3
        mido.Message("control_change", channel=1, control=7, value=64),
        mido.Message("control_change", channel=1, control=39, value=0),
    )]
    got = [(e.source, e.value) for e in events if e is not None]
    assert ("midi/cc14/0/1", pytest.approx(1.0)) in got
    assert ("midi/rel/0/16", -3) in got
    assert ("midi/cc14/1/7", pytest.approx(8192 / 16383)) in got
    assert not any(source.startswith("midi/cc/0/") for source, _ in got)  # no stray 7-bit halves


def test_unchanged_mappings_leave_a_hand_edited_file_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "tunnel.midi.json"
    path.write_text(HAND_WRITTEN)
    os.utime(path, (1_000_000, 1_000_000))
    assert save_mappings(path, load_mappings(path)) is False
    assert path.read_text() == HAND_WRITTEN and path.stat().st_mtime == 1_000_000


def test_a_changed_mapping_is_written_keeping_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "tunnel.midi.json"
    path.write_text(HAND_WRITTEN)
    mappings = [m for m in load_mappings(path) if m.target != "hue"] + [MidiMapping("hue", "midi/cc/0/20")]
    assert save_mappings(path, mappings) is True
    doc = json.loads(path.read_text())
    assert doc["comment"] == "my rig"
    entries = {e["target"]: e for e in doc["mappings"]}
    assert entries["speed"]["label"] == "cutoff knob"
    assert entries["hue"] == {"target": "hue", "source": "midi/cc/0/20"}
    assert sorted(load_mappings(path), key=lambda m: m.target) == sorted(mappings, key=lambda m: m.target)
    assert [p.name for p in tmp_path.iterdir()] == ["tunnel.midi.json"]  # no temporary file left behind


def test_a_new_file_is_written_and_a_second_save_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "new.midi.json"
    mappings = [MidiMapping("speed", "midi/cc/0/74")]
    assert save_mappings(path, mappings) is True
    assert save_mappings(path, mappings) is False
    assert load_mappings(path) == mappings


def test_merged_decoder_config_drops_a_pair_that_a_relative_encoder_overrides() -> None:
    merged = merge_decoder_configs(MidiDecoderConfig(cc14=frozenset({(0, 1)})),
                                   MidiDecoderConfig(relative={(0, 1): "signed_bit"}))
    assert merged.cc14 == frozenset() and dict(merged.relative) == {(0, 1): "signed_bit"}
