"""Inputs -> control values: MIDI, OSC, audio features, tempo/clock, LFOs (numpy only, never torch).

Names are imported lazily, so using OSC does not load the MIDI backend, and the other way round.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "controllers.base": ["ControlEvent", "ControlSink", "TempoState"],
    "controllers.midi": ["MidiInput", "MidiDecoderConfig", "MidiDecoder", "list_input_ports", "list_output_ports",
                         "find_port", "parse_midi_source", "VIRTUAL_PORT_NAME", "RELATIVE_ENCODINGS"],
    "controllers.midi_out": ["MidiOutput"],
    "controllers.midi_clock": ["MidiClock", "MidiClockConfig", "beat_phase", "bar_phase"],
    "controllers.takeover": ["SoftTakeover", "TakeoverBank", "TakeoverConfig"],
    "controllers.learn": ["MidiLearn", "MidiMapping", "mappings_path", "save_mappings", "load_mappings",
                          "decoder_config_for"],
    "controllers.osc": ["OscServer", "OscConfig", "OscRouter", "Problem", "DEFAULT_OSC_PORT"],
    "controllers.osc_out": ["OscSender", "OscOutConfig"],
    "controllers.ableton": ["AbletonClock", "subscribe_ableton"],
    "controllers.audio": ["AudioConfig", "AudioInput", "FileSource", "rescan", "list_input_devices",
                          "find_input_device", "AudioUnavailable", "PortAudioMissing"],
    "controllers.features": ["AnalyzerConfig", "AudioAnalyzer", "FeatureConfig", "analyze_array", "analysis_cost",
                             "band_energy_fractions"],
    "controllers.onsets": ["OnsetConfig", "match_onsets"],
    "controllers.beat": ["BeatConfig", "BeatTracker"],
    "controllers.envelope": ["EnvelopeConfig", "EnvelopeFollower", "EnvelopeBank"],
    "controllers.ringbuffer": ["RingBuffer", "SampleClock"],
    "controllers.tempo": ["ManualTempo", "TapTempo", "MasterClock", "ClockConfig", "Quantizer", "TempoSource",
                          "beat_at", "next_boundary_time"],
    "controllers.lfo": ["LFO", "LFOBank", "SHAPES"],
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'controllers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
