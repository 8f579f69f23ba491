"""MIDI through real ports on a JACK dummy server: a virtual controller's messages arrive as the right values,
the virtual `livekit` port works, a port that goes away and comes back is picked up again, values echo out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import mido
import pytest

from controllers.base import ControlEvent
from controllers.midi import VIRTUAL_PORT_NAME, MidiDecoderConfig, MidiInput, list_input_ports, list_output_ports
from controllers.midi_out import MidiOutput
from controllers.midi_ports import open_input

JACK = "mido.backends.rtmidi/UNIX_JACK"
TIMEOUT_S = 5.0


class Events:
    """A ControlSink that keeps the latest value per source and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.latest: dict[str, float | str] = {}
        self.all: list[ControlEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: ControlEvent) -> None:
        with self._cond:
            self.latest[event.source] = event.value
            self.all.append(event)
            self._cond.notify_all()

    def wait(self, predicate: Callable[[dict[str, float | str]], bool], timeout_s: float = TIMEOUT_S) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.latest), timeout_s)


@pytest.fixture
def backend(jack) -> mido.Backend:
    return mido.Backend(JACK, load=True)


def test_virtual_controller_values_arrive(backend: mido.Backend, jack) -> None:
    events = Events()
    decoder = MidiDecoderConfig(cc14=frozenset({(0, 1)}), relative={
        (0, 16): "twos_complement", (0, 17): "binary_offset", (0, 18): "signed_bit"})
    with backend.open_output("lk-ctl-values", virtual=True) as controller:
        assert any("lk-ctl-values" in name for name in list_input_ports(JACK))
        with MidiInput(events, port="lk-ctl-values", backend=JACK, decoder=decoder) as midi_in:
            assert midi_in.wait_connected(TIMEOUT_S), f"not connected; ports: {jack.ports()}"
            assert "lk-ctl-values" in midi_in.port_name
            for msg in [
                mido.Message("control_change", channel=2, control=74, value=101),
                mido.Message("control_change", channel=0, control=1, value=0x40),  # 14-bit MSB
                mido.Message("control_change", channel=0, control=33, value=0x20),  # 14-bit LSB
                mido.Message("control_change", channel=0, control=16, value=127),  # two's complement -1
                mido.Message("control_change", channel=0, control=17, value=67),  # binary offset +3
                mido.Message("control_change", channel=0, control=18, value=66),  # signed bit -2
                mido.Message("note_on", channel=9, note=36, velocity=100),
                mido.Message("pitchwheel", channel=1, pitch=-8192),
                mido.Message("program_change", channel=0, program=5),
            ]:
                controller.send(msg)
            assert events.wait(lambda v: "midi/program/0" in v), f"got only {events.latest}"
    assert events.latest == pytest.approx({
        "midi/cc/2/74": 101 / 127,
        "midi/cc14/0/1": (0x40 * 128 + 0x20) / 16383,
        "midi/rel/0/16": -1.0,
        "midi/rel/0/17": 3.0,
        "midi/rel/0/18": -2.0,
        "midi/note/9/36": 100 / 127,
        "midi/bend/1": -1.0,
        "midi/program/0": 5.0,
    })
    order = [e.source for e in events.all]
    assert order.index("midi/cc/2/74") < order.index("midi/cc14/0/1") < order.index("midi/program/0")  # order kept
    assert all(e.time_s > 0 for e in events.all)


def test_other_software_sends_to_the_virtual_livekit_port(backend: mido.Backend, jack) -> None:
    events = Events()
    with MidiInput(events, virtual_name=VIRTUAL_PORT_NAME, backend=JACK) as midi_in:
        assert midi_in.connected
        with backend.open_output("lk-daw", virtual=True) as daw:
            ports = jack.ports()
            src = next(p for p in ports if p.endswith(":lk-daw"))
            dst = next(p for p in ports if p.startswith("RtMidiIn") and p.endswith(f":{VIRTUAL_PORT_NAME}"))
            jack.connect(src, dst)
            daw.send(mido.Message("control_change", channel=0, control=7, value=64))
            assert events.wait(lambda v: "midi/cc/0/7" in v), f"nothing arrived; ports: {ports}"
    assert events.latest["midi/cc/0/7"] == pytest.approx(64 / 127)


def _send_until(events: Events, port: mido.ports.BaseOutput, msg: mido.Message, key: str, value: float) -> bool:
    """Send like a knob that keeps moving: the JACK connection to a freshly (re)opened port settles a little after
    the port appears, so a single message may go nowhere; a real controller simply sends again."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        port.send(msg)
        if events.wait(lambda v: v.get(key) == pytest.approx(value), 0.1):
            return True
    return False


def test_port_closed_and_reopened_is_picked_up_again(backend: mido.Backend) -> None:
    events = Events()
    with MidiInput(events, port="lk-ctl-replug", backend=JACK, reconnect_interval_s=0.1) as midi_in:
        assert not midi_in.connected  # the show starts before the controller is plugged in
        controller = backend.open_output("lk-ctl-replug", virtual=True)
        assert midi_in.wait_connected(TIMEOUT_S)
        cc = mido.Message("control_change", channel=0, control=20, value=10)
        assert _send_until(events, controller, cc, "midi/cc/0/20", 10 / 127)

        controller.close()  # cable pulled
        assert midi_in.wait_connected(TIMEOUT_S, connected=False)

        controller = backend.open_output("lk-ctl-replug", virtual=True)  # plugged back in
        try:
            assert midi_in.wait_connected(TIMEOUT_S)
            cc = mido.Message("control_change", channel=0, control=20, value=99)
            assert _send_until(events, controller, cc, "midi/cc/0/20", 99 / 127), events.latest
        finally:
            controller.close()


def test_values_echo_to_a_controller_and_come_back_after_replug(backend: mido.Backend) -> None:
    received: list[mido.Message] = []
    cond = threading.Condition()

    def on_device_message(msg: mido.Message) -> None:
        with cond:
            received.append(msg)
            cond.notify_all()

    def wait_for(expected: set[tuple[str, int, int]]) -> bool:
        # a set, not a list: an overloaded non-realtime JACK graph may deliver a MIDI event twice (xrun)
        with cond:
            return cond.wait_for(lambda: expected <= seen(), TIMEOUT_S)

    def seen() -> set[tuple[str, int, int]]:
        return {(m.type, getattr(m, "control", getattr(m, "note", -1)), getattr(m, "value", getattr(m, "velocity", -1)))
                for m in received}

    device = open_input(backend, "lk-leds", on_device_message, virtual=True)
    assert any("lk-leds" in name for name in list_output_ports(JACK))
    with MidiOutput(port="lk-leds", backend=JACK, reconnect_interval_s=0.1) as midi_out:
        assert midi_out.wait_connected(TIMEOUT_S)
        assert midi_out.echo("midi/cc/0/7", 0.5)
        assert not midi_out.echo("midi/cc/0/7", 0.5)  # unchanged: nothing sent
        assert midi_out.send_cc14(0, 1, 1.0)
        state = {("control_change", 7, 64), ("control_change", 1, 127), ("control_change", 33, 127)}
        assert wait_for(state), seen()
        assert seen() == state

        device.close()  # the controller goes away and comes back
        assert midi_out.wait_connected(TIMEOUT_S, connected=False)
        with cond:
            received.clear()
        device = open_input(backend, "lk-leds", on_device_message, virtual=True)
        try:
            assert midi_out.wait_connected(TIMEOUT_S)
            midi_out.echo("midi/note/0/36", 1.0)
            assert wait_for(state | {("note_on", 36, 127)}), seen()  # the whole state again, then the new note
        finally:
            device.close()
