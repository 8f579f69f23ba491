"""The show's inputs: OSC server, MIDI in (with clock), audio in (device or file), and the master clock.

Each input is optional and none is fatal: a missing device or a busy port is reported once and the show goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from controllers.base import ControlEvent, ControlSink, TempoState

log = logging.getLogger(__name__)

DEFAULT_OSC_PORT = 9000  # documented in docs/controls.md; TouchDesigner's OSC Out CHOP sends here by default


@dataclass(frozen=True)
class InputOptions:
    """What the performer asked for on the command line."""

    osc_port: int | None = None  # None: the default port; 0: OSC off
    osc_host: str = "127.0.0.1"  # bind address; 0.0.0.0 accepts phones and other computers
    midi_in: str | None = None  # port name fragment; "virtual" opens a port named "livekit"; None: auto
    audio_in: str | None = None  # device name fragment or index, or a WAV/FLAC path; None: auto
    midi_backend: str | None = None  # mido backend, e.g. "mido.backends.rtmidi/UNIX_JACK" (tests)
    osc_out: str | None = None  # "host:port" that receives state (fps, bpm, beat, parameter values); None: off
    midi_out: str | None = None  # port name fragment ("virtual" = a port named livekit) that echoes mapped CCs
    link: bool = False  # join the Ableton Link session on the network (tempo and beat; taps reach the peers)


class Inputs:
    """Starts the inputs a sketch needs, feeds a ControlSink, serves tempo and activity times for the HUD."""

    def __init__(self, sink: ControlSink, options: InputOptions, needs: set[str],
                 osc_params: dict[str, Any] | None = None, midi_decoder: Any = None,
                 status: Callable[[str], None] = print) -> None:
        self._sink = sink
        self.options = options
        self.needs = needs
        self.status = status
        self.osc: Any = None
        self.osc_out: Any = None
        self.midi_out: Any = None
        self.echo: list[Any] = []  # EchoRoutes: which CC shows which target
        self.midi: Any = None
        self.midi_clock: Any = None
        self.audio: Any = None
        self.clock: Any = None
        self.link: Any = None
        self.tap: Any = None
        self.tap: Any = None
        self.osc_last_s: float | None = None
        self.midi_last_s: float | None = None
        self.problems: list[str] = []
        self._audio_opener: threading.Thread | None = None
        self._osc_params = osc_params
        self._midi_decoder = midi_decoder

    def _on_event(self, event: ControlEvent) -> None:
        """Every controller event passes here: note activity, then hand on (called on controller threads)."""
        if event.source.startswith("osc"):
            self.osc_last_s = event.time_s
        elif event.source.startswith("midi"):
            self.midi_last_s = event.time_s
        self._sink(event)

    def _problem(self, what: str) -> None:
        self.problems.append(what)
        log.warning(what)
        self.status(f"livekit: {what}")

    def start(self) -> "Inputs":
        """Open what the options and the sketch ask for; report what could not be opened, never raise."""
        self._start_osc()
        self._start_osc_out()
        self._start_midi_out()
        self._start_midi()
        self._start_audio()
        from controllers.tempo import MasterClock, TapTempo

        self._start_link()
        self.tap = TapTempo()  # T in the stage window; takes over from the audio tracker once tapped
        sources = [(n, s) for n, s in (("midi", self.midi_clock), ("link", self.link), ("osc", self.osc),
                                       ("tap", self.tap), ("audio", self.audio)) if s]
        self.clock = MasterClock(sources)
        return self

    def _start_link(self) -> None:
        if not self.options.link:
            return
        try:
            from controllers.link import LinkClock

            self.link = LinkClock()
            self.status("livekit: Ableton Link on (tempo and beat follow the session; T taps reach the peers)")
        except Exception as exc:  # aalink missing or the network refused: the show goes on
            self.link = None
            self._problem(f"Link off: {type(exc).__name__}: {exc}")

    def tap_tempo(self, time_s: float | None = None) -> float | None:
        """A tap (T): the tapped tempo, which also becomes the Link session's tempo when Link is on."""
        bpm = self.tap.tap(time_s) if self.tap is not None else None
        if bpm is not None and self.link is not None:
            try:
                self.link.set_bpm(bpm)
            except ValueError as exc:
                self._problem(f"Link: {exc}")
        return bpm

    def _start_osc(self) -> None:
        port = DEFAULT_OSC_PORT if self.options.osc_port is None else self.options.osc_port
        if port == 0 and self.options.osc_port == 0:
            return
        from controllers.osc import OscConfig, OscServer

        try:
            self.osc = OscServer(self._on_event, OscConfig(host=self.options.osc_host, port=port),
                                 params=self._osc_params).start()
            self.status(f"livekit: OSC on {self.options.osc_host}:{self.osc.port} (/livekit/<param>)")
        except OSError as exc:
            self.osc = None
            self._problem(f"OSC off: cannot listen on {self.options.osc_host}:{port} ({exc.strerror or exc}); "
                          "pass --osc-port to choose another port")

    def _start_osc_out(self) -> None:
        if not self.options.osc_out:
            return
        from controllers.osc_out import OscOutConfig, OscSender

        host, _, port = self.options.osc_out.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--osc-out must look like 127.0.0.1:9001, got {self.options.osc_out!r}")
        self.osc_out = OscSender(OscOutConfig(host=host, port=int(port))).start()
        self.status(f"livekit: OSC state out to {host}:{port} (/livekit/state/..., /livekit/<param>)")

    def _start_midi_out(self) -> None:
        wanted = self.options.midi_out
        if not wanted:
            return
        from controllers.midi_out import MidiOutput

        try:
            virtual = wanted == "virtual"
            self.midi_out = MidiOutput(None if virtual else wanted, virtual_name="livekit" if virtual else None,
                                       backend=self.options.midi_backend).start()
            self.status(f"livekit: MIDI out (echo) to {wanted}")
        except Exception as exc:
            self.midi_out = None
            self._problem(f"MIDI out off: {type(exc).__name__}: {exc}")

    def send_state(self, values: Any, fps: float | None, tempo: TempoState | None) -> None:
        """Once per tick: values to the MIDI echo (changes only) and the OSC out receiver (rate-limited)."""
        if self.midi_out is not None:
            for route in self.echo:
                value = values.get(route.target)
                if isinstance(value, (int, float)):
                    self.midi_out.echo(route.key, route.knob(float(value)))
        if self.osc_out is None:
            return
        for name, value in values.items():
            if isinstance(value, (int, float)):
                self.osc_out.set_param(name, float(value))
        self.osc_out.set_state(fps=fps, bpm=tempo.bpm if tempo else None, beat=tempo.beat if tempo else None)
        self.osc_out.set("/livekit/state/confidence", self.tempo_confidence())

    def tempo_confidence(self) -> float:
        """How much the tempo is to be trusted: 1 from a clock (MIDI, Link, Ableton, tap), the beat tracker's
        confidence when the audio leads, 0 while free-running on the default tempo."""
        active = getattr(self.clock, "active", None)
        if active is None:
            return 0.0
        if active == "audio":
            analyzer = getattr(self.audio, "analyzer", None)
            return float(getattr(analyzer, "beat_confidence", 0.0) or 0.0)
        return 1.0

    def _start_midi(self) -> None:
        wanted = self.options.midi_in
        if wanted is None and "midi" not in self.needs:
            return
        from controllers.midi import MidiInput, list_input_ports
        from controllers.midi_clock import MidiClock

        try:
            port = None if wanted in (None, "virtual") else wanted
            if port is None and wanted is None:  # the sketch wants MIDI: take the first hardware port, if any
                names = [n for n in list_input_ports(self.options.midi_backend) if "through" not in n.lower()]
                port = names[0] if names else None
            self.midi_clock = MidiClock()
            self.midi = MidiInput(self._on_event, port=port, virtual_name="livekit",
                                  backend=self.options.midi_backend, decoder=self._midi_decoder,
                                  clock=self.midi_clock).start()
            if port is not None and self.midi.port_found is False:
                names = ", ".join(list_input_ports(self.options.midi_backend)) or "none"
                self._problem(f"MIDI in: no port matches {port!r} (ports: {names}); only the virtual port "
                              f"'livekit' is listening")
            else:
                self.status(f"livekit: MIDI in: {port or 'no hardware port'} + virtual port 'livekit'")
        except Exception as exc:  # no MIDI API on this machine, or the port vanished: the show goes on
            self.midi, self.midi_clock = None, None
            self._problem(f"MIDI off: {type(exc).__name__}: {exc}")

    def _start_audio(self) -> None:
        wanted = self.options.audio_in
        if wanted is None and "audio" not in self.needs:
            return
        from controllers.audio import AudioConfig, AudioInput, FileSource

        try:
            if wanted is not None and Path(wanted).is_file():
                self.audio = FileSource(wanted, sink=self._on_event, loop=True)
                self.audio.start()
                self.status(f"livekit: audio from file {wanted}")
                return
            device: str | int | None = int(wanted) if wanted is not None and wanted.isdigit() else wanted
            self.audio = AudioInput(AudioConfig(device=device), sink=self._on_event)
        except Exception as exc:
            self.audio = None
            self._problem(f"audio off: {type(exc).__name__}: {exc}")
            return
        # Opening a device can block inside PortAudio (a JACK server that went away, a busy driver): do it on a
        # thread of its own so the show starts regardless, and audio joins when it is ready.
        self._audio_opener = threading.Thread(target=self._open_audio, args=(self.audio, device),
                                              name="livekit-audio-open", daemon=True)
        self._audio_opener.start()

    def _open_audio(self, audio: Any, device: Any) -> None:
        try:
            if audio.start():
                self.status(f"livekit: audio in: {device if device is not None else 'default device'}")
            else:
                self._problem(f"audio off for now: {audio.error} (retrying in the background)")
        except Exception as exc:
            self._problem(f"audio off: {type(exc).__name__}: {exc}")

    def tempo(self, now_s: float | None = None) -> TempoState | None:
        """The master clock's tempo (free-running at 120 BPM until a source has one)."""
        return self.clock.tempo(now_s) if self.clock is not None else None

    def poll(self, now_s: float) -> None:
        """Once per tick: clock events (beat, bar, phases) go to the sink."""
        if self.clock is not None:
            for event in self.clock.events(now_s):
                self._sink(event)

    def set_osc_params(self, params: dict[str, Any]) -> None:
        """Tell the OSC router which parameters the (reloaded) sketch declares."""
        if self.osc is not None:
            self.osc.set_params(params)

    def close(self) -> None:
        """Close every port and stream (idempotent); an audio device still opening is left to its daemon thread."""
        if self._audio_opener is not None:
            self._audio_opener.join(0.5)
        for name in ("osc", "osc_out", "midi", "midi_out", "audio", "link"):
            thing = getattr(self, name)
            if thing is None:
                continue
            try:
                (getattr(thing, "close", None) or thing.stop)()
            except Exception as exc:
                log.warning("closing %s: %s", name, exc)
            setattr(self, name, None)


def now_s() -> float:
    """The clock every input stamps with."""
    return time.monotonic()
