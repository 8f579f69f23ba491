"""MIDI input: ports chosen by name fragment, a virtual ``livekit`` port, reconnects, message -> ControlEvent decoding.

Decoding follows the source keys of controllers.base: ``midi/cc/<ch>/<num>`` (0..1), ``midi/cc14/<ch>/<msb>``
(0..1, MSB 0-31 paired with LSB 32-63), ``midi/rel/<ch>/<num>`` (signed steps), ``midi/note/<ch>/<note>``
(velocity 0..1, 0 = off), ``midi/bend/<ch>`` (-1..1) and ``midi/program/<ch>`` (0..127). Clock messages go to a
`MidiClock`. The backend is the caller's choice: ``None`` finds the first rtmidi API that works (so without an ALSA
sequencer but with a JACK server, the JACK ports), ``"alsa"``/``"jack"``/... picks an API, a full mido backend name
such as ``"mido.backends.rtmidi/UNIX_JACK"`` is used as given; the MIDO_BACKEND variable still wins over auto.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import mido

from controllers.base import ControlEvent, ControlSink
from controllers.midi_clock import CLOCK_MESSAGE_TYPES, MidiClock
from controllers.midi_ports import RTMIDI_BACKEND, is_rtmidi, open_input, rtmidi_api

log = logging.getLogger(__name__)

RELATIVE_ENCODINGS = ("signed_bit", "binary_offset", "twos_complement")
MIDI_APIS = {"alsa": "LINUX_ALSA", "jack": "UNIX_JACK", "coremidi": "MACOSX_CORE", "winmm": "WINDOWS_MM"}  # --midi-api
VIRTUAL_PORT_NAME = "livekit"  # name of the virtual port other software sends to (and the default echo port)


def decode_relative(value: int, encoding: str) -> int:
    """Signed step count of one relative-encoder CC value (0..127) in the given encoding."""
    if encoding == "twos_complement":  # 1..63 up, 127..64 down (-1..-64)
        return value if value < 64 else value - 128
    if encoding == "binary_offset":  # 64 = no move, 65 = +1, 63 = -1
        return value - 64
    if encoding == "signed_bit":  # bit 6 is the sign: 1..63 up, 65..127 down
        return value if value < 64 else -(value - 64)
    raise ValueError(f"relative encoding must be one of {RELATIVE_ENCODINGS}, got {encoding!r}")


def _check_channel(channel: int) -> None:
    if not 0 <= channel <= 15:
        raise ValueError(f"channel must be in range 0..15 (mido counts from 0), got {channel}")


@dataclass(frozen=True)
class MidiDecoderConfig:
    """Which CCs are 14-bit pairs and which are relative encoders; every other CC is a plain 7-bit control."""

    cc14: frozenset[tuple[int, int]] = frozenset()  # (channel, msb 0..31): CC msb + CC msb+32 form one 14-bit value
    relative: Mapping[tuple[int, int], str] = field(default_factory=dict)  # (channel, cc) -> a RELATIVE_ENCODINGS name

    def __post_init__(self) -> None:
        object.__setattr__(self, "cc14", frozenset((int(c), int(m)) for c, m in self.cc14))
        relative = {(int(c), int(n)): e for (c, n), e in self.relative.items()}
        object.__setattr__(self, "relative", MappingProxyType(relative))
        for channel, msb in self.cc14:
            _check_channel(channel)
            if not 0 <= msb <= 31:
                raise ValueError(f"MSB controller must be in range 0..31 (a 14-bit pair is named by its MSB), "
                                 f"got {msb}")
        for (channel, number), encoding in self.relative.items():
            _check_channel(channel)
            if not 0 <= number <= 127:
                raise ValueError(f"controller number must be in range 0..127, got {number}")
            if encoding not in RELATIVE_ENCODINGS:
                raise ValueError(f"relative encoding must be one of {RELATIVE_ENCODINGS}, got {encoding!r}")
            if (channel, number) in self.cc14 or (channel, number - 32) in self.cc14:
                raise ValueError(f"CC {number} on channel {channel} cannot be both relative and part of a 14-bit pair")


class MidiDecoder:
    """Turns mido messages into ControlEvents (one port's state: the pending MSB of each 14-bit pair)."""

    def __init__(self, config: MidiDecoderConfig | None = None) -> None:
        self.config = config or MidiDecoderConfig()
        self._msb: dict[tuple[int, int], int] = {}

    def decode(self, msg: mido.Message, time_s: float) -> ControlEvent | None:
        """The event a message produces, or None (an MSB waiting for its LSB, clock and system messages)."""
        kind = msg.type
        if kind == "control_change":
            return self._control_change(msg.channel, msg.control, msg.value, time_s)
        if kind == "note_on":
            return ControlEvent(f"midi/note/{msg.channel}/{msg.note}", msg.velocity / 127.0, time_s)
        if kind == "note_off":
            return ControlEvent(f"midi/note/{msg.channel}/{msg.note}", 0.0, time_s)
        if kind == "pitchwheel":  # -8192..8191 -> -1..1, both ends reached
            pitch = msg.pitch
            return ControlEvent(f"midi/bend/{msg.channel}", pitch / (8192.0 if pitch < 0 else 8191.0), time_s)
        if kind == "program_change":
            return ControlEvent(f"midi/program/{msg.channel}", float(msg.program), time_s)
        return None

    def _control_change(self, channel: int, number: int, value: int, time_s: float) -> ControlEvent | None:
        config = self.config
        if (channel, number) in config.cc14:  # MSB: MIDI 1.0 sends it first, the value is complete with the LSB
            self._msb[(channel, number)] = value
            return None
        if 32 <= number <= 63 and (channel, number - 32) in config.cc14:
            msb = self._msb.get((channel, number - 32), 0)
            return ControlEvent(f"midi/cc14/{channel}/{number - 32}", ((msb << 7) | value) / 16383.0, time_s)
        encoding = config.relative.get((channel, number))
        if encoding is not None:
            steps = decode_relative(value, encoding)
            return ControlEvent(f"midi/rel/{channel}/{number}", float(steps), time_s) if steps else None
        return ControlEvent(f"midi/cc/{channel}/{number}", value / 127.0, time_s)


class MidiSource(NamedTuple):
    """A parsed MIDI source key: kind (cc, cc14, rel, note, bend, program), channel, number (-1 if none)."""

    kind: str
    channel: int
    number: int


_NUMBERED = {"cc": 127, "cc14": 31, "rel": 127, "note": 127}


def parse_midi_source(source: str) -> MidiSource:
    """Parse a key such as ``midi/cc/0/74`` or ``midi/bend/3``; ValueError says what a valid key looks like."""
    parts = source.split("/")
    hint = "expected midi/cc|cc14|rel|note/<channel>/<number> or midi/bend|program/<channel>"
    if len(parts) < 3 or parts[0] != "midi" or parts[1] not in (*_NUMBERED, "bend", "program"):
        raise ValueError(f"not a MIDI source key: {source!r} ({hint})")
    kind = parts[1]
    if len(parts) != (4 if kind in _NUMBERED else 3) or not all(p.isascii() and p.isdigit() for p in parts[2:]):
        raise ValueError(f"not a MIDI source key: {source!r} ({hint})")
    channel = int(parts[2])
    _check_channel(channel)
    number = int(parts[3]) if kind in _NUMBERED else -1
    if kind in _NUMBERED and number > _NUMBERED[kind]:
        raise ValueError(f"{kind} number must be in range 0..{_NUMBERED[kind]} in {source!r}")
    return MidiSource(kind, channel, number)


def _first_working_rtmidi_api() -> str | None:
    """The first rtmidi API (native first, JACK after) that can open a client here, as a mido backend name."""
    import rtmidi

    names = {getattr(rtmidi, n): n[4:] for n in dir(rtmidi)
             if n.startswith("API_") and n not in ("API_UNSPECIFIED", "API_RTMIDI_DUMMY")}
    for api in rtmidi.get_compiled_api():
        if api not in names:
            continue
        try:
            rtmidi.MidiIn(rtapi=api, name="livekit probe").delete()
        except Exception:  # e.g. no /dev/snd/seq (ALSA) or no JACK server running
            continue
        return f"{RTMIDI_BACKEND}/{names[api]}"
    return None


def resolve_backend(backend: str | None = None) -> str | None:
    """The mido backend for a choice: ``None``/``"auto"`` finds a working rtmidi API (ALSA absent -> JACK), an API
    name from MIDI_APIS picks one, a full name such as ``"mido.backends.rtmidi/UNIX_JACK"`` is used as given."""
    if backend is None or backend.strip().lower() == "auto":
        if os.environ.get("MIDO_BACKEND"):  # the user chose a mido backend for every program
            return None
        return _first_working_rtmidi_api()
    key = backend.strip().lower()
    if key in MIDI_APIS:
        return f"{RTMIDI_BACKEND}/{MIDI_APIS[key]}"
    if "." in backend:
        return backend
    raise ValueError(f"MIDI api must be 'auto', one of {sorted(MIDI_APIS)} or a mido backend name, got {backend!r}")


def open_backend(backend: str | None = None) -> mido.Backend:
    """A loaded mido backend for a `resolve_backend` choice (``None`` = auto, ``"jack"``, a full mido name)."""
    return mido.Backend(resolve_backend(backend), load=True)


def list_input_ports(backend: str | None = None) -> list[str]:
    """Names of the MIDI ports livekit can read from."""
    return list(open_backend(backend).get_input_names())


def list_output_ports(backend: str | None = None) -> list[str]:
    """Names of the MIDI ports livekit can send to."""
    return list(open_backend(backend).get_output_names())


def find_port(names: Iterable[str], fragment: str) -> str | None:
    """The port whose name equals the fragment, else the first that contains it (case-insensitive), else None."""
    names = list(names)
    if fragment in names:
        return fragment
    lowered = fragment.lower()
    return next((name for name in names if lowered in name.lower()), None)


def _port_lister(backend: mido.Backend, direction: str) -> tuple[Callable[[], list[str]], Callable[[], None]]:
    """A cheap port-name lister and its closer: one persistent rtmidi probe (mido's lister opens a client per call)."""
    if is_rtmidi(backend):
        import rtmidi

        probe = (rtmidi.MidiIn if direction == "input" else rtmidi.MidiOut)(rtapi=rtmidi_api(backend),
                                                                            name="livekit probe")
        return probe.get_ports, probe.delete
    names = backend.get_input_names if direction == "input" else backend.get_output_names
    return lambda: list(names()), lambda: None


class _PortKeeper:
    """Keeps the port matching a name fragment open: closes it when it disappears and reopens it when it returns."""

    def __init__(self, fragment: str, backend: mido.Backend, direction: str, open_port: Callable[[str], Any],
                 interval_s: float, label: str) -> None:
        self.fragment = fragment
        self._names, self._close_lister = _port_lister(backend, direction)
        self._open_port = open_port
        self._interval_s = interval_s
        self._label = label
        self._port: Any = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported: str | None = None  # the problem last logged

    @property
    def port(self) -> Any:
        """The open mido port, or None while it is away."""
        return self._port

    def start(self) -> None:
        """Try to open the port now, then keep watching it on a thread (once; a closed keeper stays closed)."""
        if self._thread is not None:
            return
        self.poll()
        self._thread = threading.Thread(target=self._run, name=f"livekit-{self._label}-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.poll()

    def poll(self) -> None:
        """One check: drop a vanished port, open a (re)appeared one."""
        try:
            names = self._names()
        except Exception as exc:  # a backend hiccup must not end the watcher; the next poll retries
            self._report(f"listing MIDI ports failed: {exc}")
            return
        port = self._port
        if port is not None:
            if port.name in names:
                return
            log.warning("%s: MIDI port %r went away; reopening it when it comes back", self._label, port.name)
            self._set(None)
            self._close(port)
        name = find_port(names, self.fragment)
        if name is None:
            self._report(f"no MIDI port matches {self.fragment!r} (available: {', '.join(names) or 'none'}); "
                         "still looking")
            return
        try:
            opened = self._open_port(name)
        except Exception as exc:  # a port can vanish between listing and opening: retry on the next poll
            self._report(f"opening MIDI port {name!r} failed: {exc}")
            return
        self._reported = None
        log.info("%s: MIDI port %r open", self._label, name)
        self._set(opened)

    def _report(self, problem: str) -> None:
        """Log a problem once; the same problem on later polls stays quiet until something changes."""
        if problem != self._reported:
            log.warning("%s: %s", self._label, problem)
            self._reported = problem

    def _set(self, port: Any) -> None:
        with self._changed:
            self._port = port
            self._changed.notify_all()

    def _close(self, port: Any) -> None:
        try:
            port.close()
        except Exception as exc:  # closing a port whose device is gone may fail; it is gone either way
            log.debug("%s: closing MIDI port failed: %s", self._label, exc)

    def wait(self, connected: bool, timeout_s: float) -> bool:
        """Block until the port is open (or closed), at most timeout_s; True if that state was reached."""
        with self._changed:
            return self._changed.wait_for(lambda: (self._port is not None) == connected, timeout_s)

    def close(self) -> None:
        """Stop watching and close the port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        port, self._port = self._port, None
        if port is not None:
            self._close(port)
        self._close_lister()


class _KeptPorts:
    """What MIDI in and out share: an optional virtual port plus a named port a _PortKeeper reopens."""

    _keeper: _PortKeeper | None
    _virtual: Any

    @staticmethod
    def _check_args(port: str | None, virtual_name: str | None, reconnect_interval_s: float, lister: str) -> None:
        """The constructor checks both directions share; `lister` names the function that lists the ports."""
        if port is None and virtual_name is None:
            raise ValueError("give a port name fragment (port=...), a virtual port (virtual_name='livekit'), or both")
        if port is not None and not port.strip():
            raise ValueError(f"port name fragment must not be empty; use {lister}() to see the names")
        if reconnect_interval_s <= 0:
            raise ValueError(f"reconnect_interval_s must be > 0, got {reconnect_interval_s}")

    @property
    def connected(self) -> bool:
        """True while the named port is open (always True for a virtual-only port once started)."""
        return self._virtual is not None if self._keeper is None else self._keeper.port is not None

    @property
    def port_found(self) -> bool | None:
        """Whether the named port is open (checked once by start(), then by the watcher); None if none was named."""
        return None if self._keeper is None else self._keeper.port is not None

    @property
    def port_name(self) -> str | None:
        """Full name of the open named port, or None."""
        port = None if self._keeper is None else self._keeper.port
        return None if port is None else port.name

    def wait_connected(self, timeout_s: float, connected: bool = True) -> bool:
        """Wait until the named port is open (or, with connected=False, gone); True if it happened in time."""
        if self._keeper is None:
            return self.connected == connected
        return self._keeper.wait(connected, timeout_s)

    def close(self) -> None:
        """Close every port and stop the watcher."""
        if self._keeper is not None:
            self._keeper.close()
        if self._virtual is not None:
            self._virtual.close()
            self._virtual = None

    def __exit__(self, *exc: object) -> None:
        self.close()


class MidiInput(_KeptPorts):
    """MIDI in: a port picked by name fragment (reopened when it comes back) and/or a virtual port, to a sink."""

    def __init__(self, sink: ControlSink, port: str | None = None, *, virtual_name: str | None = None,
                 backend: str | None = None, decoder: MidiDecoderConfig | None = None, clock: MidiClock | None = None,
                 reconnect_interval_s: float = 0.5) -> None:
        self._check_args(port, virtual_name, reconnect_interval_s, "list_input_ports")
        self.sink = sink
        self.clock = clock
        self.decoder_config = decoder or MidiDecoderConfig()
        self._backend = open_backend(backend)
        self._virtual_name = virtual_name
        self._virtual: Any = None
        self._keeper = None if port is None else _PortKeeper(
            port, self._backend, "input", self._open_named, reconnect_interval_s, "midi-in")

    def _open_named(self, name: str) -> Any:
        return open_input(self._backend, name, self._make_callback())

    def _make_callback(self) -> Callable[[mido.Message], None]:
        decoder = MidiDecoder(self.decoder_config)  # one per port: a 14-bit pair never spans two ports

        def on_message(msg: mido.Message) -> None:  # the port's thread: convert and hand off
            now = msg.time  # arrival on time.monotonic()'s clock
            if msg.type in CLOCK_MESSAGE_TYPES:
                if self.clock is not None:
                    self.clock.feed(msg, now)
                return
            event = decoder.decode(msg, now)
            if event is not None:
                self.sink(event)

        return on_message

    def start(self) -> MidiInput:
        """Open the virtual port (if asked) and start looking for the named port; never fails for a missing port."""
        if self._virtual_name is not None and self._virtual is None:
            self._virtual = open_input(self._backend, self._virtual_name, self._make_callback(), virtual=True)
        if self._keeper is not None:
            self._keeper.start()
        return self

    def __enter__(self) -> MidiInput:
        return self.start()
