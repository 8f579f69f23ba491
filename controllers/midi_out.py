"""MIDI out: echo parameter values back to a controller (LED rings, motor faders), only when they change.

Values are echoed in the same encoding the source key reads: ``midi/cc`` and ``midi/rel`` as a 7-bit CC (LED
rings of relative encoders take absolute values), ``midi/cc14`` as an MSB/LSB pair, ``midi/note`` as a note-on
velocity, ``midi/bend`` as pitch bend, ``midi/program`` as a program change. When the port comes back after being
away, the last value of every control is sent again so the device shows the current state. Call `echo` from the
runtime's tick (not from a real-time callback): it sends only what changed.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import mido

from controllers.midi import MidiSource, _check_channel, _KeptPorts, _PortKeeper, open_backend, parse_midi_source
from controllers.midi_ports import JackGate, is_jack

log = logging.getLogger(__name__)


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


def messages_for(source: MidiSource, value: float) -> list[mido.Message]:
    """The MIDI messages that show `value` (0..1; -1..1 for bend; 0..127 for program) on the control `source`."""
    ch, num = source.channel, source.number
    if source.kind in ("cc", "rel"):
        return [mido.Message("control_change", channel=ch, control=num, value=round(_unit(value) * 127))]
    if source.kind == "cc14":
        v = round(_unit(value) * 16383)
        return [mido.Message("control_change", channel=ch, control=num, value=v >> 7),
                mido.Message("control_change", channel=ch, control=num + 32, value=v & 127)]
    if source.kind == "note":
        return [mido.Message("note_on", channel=ch, note=num, velocity=round(_unit(value) * 127))]
    if source.kind == "bend":
        v = min(1.0, max(-1.0, value))
        return [mido.Message("pitchwheel", channel=ch, pitch=round(v * (8192 if v < 0 else 8191)))]
    return [mido.Message("program_change", channel=ch, program=min(127, max(0, round(value))))]


class MidiOutput(_KeptPorts):
    """Sends control values to a port chosen by name fragment (reopened when it comes back) and/or a virtual port."""

    def __init__(self, port: str | None = None, *, virtual_name: str | None = None, backend: str | None = None,
                 reconnect_interval_s: float = 0.5) -> None:
        self._check_args(port, virtual_name, reconnect_interval_s, "list_output_ports")
        self._backend = open_backend(backend)
        self._virtual_name = virtual_name
        self._virtual: Any = None
        self._keeper = None if port is None else _PortKeeper(
            port, self._backend, "output", self._backend.open_output, reconnect_interval_s, "midi-out")
        self._lock = threading.Lock()
        self._state: dict[tuple[str, int, int], list[mido.Message]] = {}  # latest messages per control
        self._sent: dict[tuple[str, int, int], list[mido.Message]] = {}  # what the current ports last got
        self._ports_seen: tuple[Any, ...] = ()
        self._failing = False  # a send failed and was logged; quiet until one succeeds
        self._behind = False  # the JACK gate held messages back; the next update sends what the ports miss
        self._gate: JackGate | None = None  # JACK only: RtMidi would spin forever on a server that stopped cycling

    def start(self) -> MidiOutput:
        """Open the virtual port (if asked) and start looking for the named port."""
        if self._gate is None and is_jack(self._backend):
            self._gate = JackGate()
        if self._virtual_name is not None and self._virtual is None:
            self._virtual = self._backend.open_output(self._virtual_name, virtual=True)
        if self._keeper is not None:
            self._keeper.start()
        return self

    def _ports(self) -> list[Any]:
        named = None if self._keeper is None else self._keeper.port
        return [p for p in (self._virtual, named) if p is not None]

    def echo(self, source: str, value: float) -> bool:
        """Show `value` on the control named by a MIDI source key; True if messages went out (unchanged = no send)."""
        if isinstance(value, str) or not math.isfinite(value):
            return False
        src = parse_midi_source(source)
        return self._update((src.kind, src.channel, src.number), messages_for(src, value))

    def send_cc(self, channel: int, control: int, value: float) -> bool:
        """Send a 7-bit CC for a 0..1 value if it changed."""
        _check_channel(channel)
        if not 0 <= control <= 127:
            raise ValueError(f"control must be in range 0..127, got {control}")
        return self.echo(f"midi/cc/{channel}/{control}", value)

    def send_cc14(self, channel: int, msb: int, value: float) -> bool:
        """Send a 14-bit CC pair (MSB controller 0..31, then its LSB at +32) for a 0..1 value if it changed."""
        _check_channel(channel)
        if not 0 <= msb <= 31:
            raise ValueError(f"MSB controller must be in range 0..31 (a 14-bit pair is named by its MSB), got {msb}")
        return self.echo(f"midi/cc14/{channel}/{msb}", value)

    def _update(self, key: tuple[str, int, int], msgs: list[mido.Message]) -> bool:
        with self._lock:
            self._state[key] = msgs
            ports = tuple(self._ports())
            if ports != self._ports_seen:  # a port (re)appeared: it gets the whole state, not only this change
                self._ports_seen, self._sent = ports, {}
                pending = list(self._state.items())
            elif self._behind:  # sending was held back: everything the ports do not show yet
                pending = [(k, m) for k, m in self._state.items() if self._sent.get(k) != m]
            elif self._sent.get(key) != msgs:
                pending = [(key, msgs)]
            else:
                return False
            sent = False
            for k, messages in pending:
                if not self._admit(ports, messages):
                    self._behind = True
                    return sent
                try:
                    for port in ports:
                        for msg in messages:
                            port.send(msg)
                except Exception as exc:  # a device pulled mid-send: the keeper reopens it, then everything is resent
                    if not self._failing:
                        log.warning("midi-out: sending failed: %s (retrying quietly)", exc)
                        self._failing = True
                    self._ports_seen = ()
                    return False
                self._sent[k] = messages
                sent = sent or bool(ports)
            self._failing = self._behind = False
            return sent

    def _admit(self, ports: tuple[Any, ...], messages: list[mido.Message]) -> bool:
        """Whether the JACK gate lets these messages out to every port now (always, off JACK)."""
        if self._gate is None or not ports:
            return True
        size = sum(len(msg.bytes()) for msg in messages)
        return self._gate.admit(size * len(ports), messages=len(messages) * len(ports))  # False: held, reported

    def close(self) -> None:
        """Close every port, stop the watcher, close the JACK gate."""
        super().close()
        if self._gate is not None:
            self._gate.close()
            self._gate = None

    def __enter__(self) -> MidiOutput:
        return self.start()
