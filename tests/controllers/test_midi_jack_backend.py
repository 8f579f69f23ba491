"""MIDI backend choice: with no ALSA sequencer but a JACK server, ports are found with no backend given and no
MIDO_BACKEND variable; an explicit api name (alsa, jack, ...) picks one."""

from __future__ import annotations

import os
import threading
import time

import mido
import pytest

from controllers.base import ControlEvent
from controllers.midi import MidiInput, list_input_ports, list_output_ports, open_backend, resolve_backend

JACK = "mido.backends.rtmidi/UNIX_JACK"


@pytest.fixture
def no_alsa_sequencer(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.path.exists("/dev/snd/seq"):
        pytest.skip("this machine has an ALSA sequencer; the fallback to JACK is tested where it has none")
    monkeypatch.delenv("MIDO_BACKEND", raising=False)


def test_auto_finds_jack_ports_without_alsa(jack, no_alsa_sequencer) -> None:
    assert resolve_backend(None) == JACK
    controller = mido.Backend(JACK).open_output("lk-knobs", virtual=True)  # a hardware controller's stand-in
    try:
        assert any("lk-knobs" in name for name in list_input_ports())
        received: list[ControlEvent] = []
        arrived = threading.Event()

        def sink(event: ControlEvent) -> None:
            received.append(event)
            arrived.set()

        with MidiInput(sink, port="lk-knobs") as midi_in:  # no backend argument
            assert midi_in.wait_connected(5.0), "the JACK port was not opened"
            deadline = time.monotonic() + 5.0
            while not arrived.is_set() and time.monotonic() < deadline:  # JACK connects asynchronously
                controller.send(mido.Message("control_change", channel=0, control=74, value=127))
                arrived.wait(0.1)
        assert received and received[-1].source == "midi/cc/0/74" and received[-1].value == 1.0
    finally:
        controller.close()


def test_livekit_virtual_port_is_visible_to_other_jack_clients(jack, no_alsa_sequencer) -> None:
    port = open_backend(None).open_input("lk-virtual-in", virtual=True)
    try:
        assert any("lk-virtual-in" in name for name in mido.Backend(JACK).get_output_names())
    finally:
        port.close()


def test_explicit_api_names(jack) -> None:
    assert resolve_backend("jack") == JACK
    assert resolve_backend("ALSA") == "mido.backends.rtmidi/LINUX_ALSA"
    assert resolve_backend(JACK) == JACK
    assert any("lk-out-check" in n for n in _with_virtual_input("lk-out-check", lambda: list_output_ports("jack")))
    with pytest.raises(ValueError, match="MIDI api must be"):
        resolve_backend("bluetooth")


def test_nothing_to_find_falls_back_to_midos_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIDO_BACKEND", "mido.backends.rtmidi")
    assert resolve_backend("auto") is None  # a user's MIDO_BACKEND is respected


def _with_virtual_input(name: str, listing):
    port = mido.Backend(JACK).open_input(name, virtual=True)
    try:
        return listing()
    finally:
        port.close()
