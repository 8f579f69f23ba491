"""The show's inputs: tempo confidence as OSC out sends it, and a missing MIDI port is not reported as connected."""

from __future__ import annotations

from types import SimpleNamespace

from livekit.show.inputs import InputOptions, Inputs


def _inputs() -> Inputs:
    return Inputs(lambda event: None, InputOptions(osc_port=0), set(), status=lambda text: None)


def test_confidence_is_zero_while_free_running_and_follows_the_leading_source() -> None:
    inputs = _inputs()
    inputs.clock = SimpleNamespace(active=None)
    assert inputs.tempo_confidence() == 0.0  # the 120 BPM default is not a measurement
    inputs.clock = SimpleNamespace(active="midi")
    assert inputs.tempo_confidence() == 1.0
    inputs.clock = SimpleNamespace(active="audio")
    inputs.audio = SimpleNamespace(analyzer=SimpleNamespace(beat_confidence=0.25))
    assert inputs.tempo_confidence() == 0.25


def test_a_midi_port_that_is_not_there_is_reported_not_claimed(jack) -> None:
    said: list[str] = []
    inputs = Inputs(lambda event: None, InputOptions(osc_port=0, midi_in="no-such-port-xyz",
                                                    midi_backend="mido.backends.rtmidi/UNIX_JACK"),
                    set(), status=said.append)
    inputs._start_midi()
    try:
        text = " ".join(said)
        assert "no port matches 'no-such-port-xyz'" in text
        assert "MIDI in: no-such-port-xyz +" not in text
    finally:
        inputs.close()
