"""MIDI ports that cannot freeze livekit: inputs read off rtmidi's queue, JACK outputs gated by the server's clock.

python-rtmidi holds the GIL through every call into RtMidi, and RtMidi's MIDI thread calls Python callbacks. Two
freezes follow, both seen here on a real JACK server:
- closing an input port while messages arrive: jack_client_close cancels the JACK thread while it waits for the
  GIL inside a callback, the GIL's mutex stays locked and every Python thread stops for good. `PolledInput` sets no
  callback: RtMidi queues each message, a livekit thread takes them off the queue, so the JACK thread never touches
  Python.
- sending on a JACK port once the server is gone (or stopped): RtMidi spins until its 16 KB ring buffer has room,
  which no process cycle will ever make. `JackGate` lets bytes through only while the server's frame clock moves;
  what it holds back is the caller's to resend once the clock moves again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import mido

log = logging.getLogger(__name__)

POLL_S = 0.002  # how often an input's thread looks at rtmidi's queue while messages flow (latency <= 2 ms)
IDLE_POLL_S = 0.005  # ... and after a quiet second (the first message of a gesture waits <= 5 ms, a third of a frame)
QUEUE_SIZE = 4096  # messages rtmidi keeps for the thread; more than a second of dense controller traffic
GATE_BYTES = 4096  # bytes a JACK output may send between two moves of the server clock (RtMidi's ring holds 16 KB)
RTMIDI_BACKEND = "mido.backends.rtmidi"  # mido's python-rtmidi backend (an API follows after a "/")


def is_rtmidi(backend: mido.Backend) -> bool:
    """Whether a mido backend is python-rtmidi (whose ports need the care this module takes)."""
    return backend.module.__name__ == RTMIDI_BACKEND


def is_jack(backend: mido.Backend) -> bool:
    """Whether a mido backend is rtmidi's JACK API."""
    return is_rtmidi(backend) and backend.api == "UNIX_JACK"


def rtmidi_api(backend: mido.Backend) -> int:
    """The python-rtmidi API constant of an rtmidi mido backend (API_UNSPECIFIED when it names none)."""
    import rtmidi

    return getattr(rtmidi, f"API_{backend.api}") if backend.api else rtmidi.API_UNSPECIFIED


class PolledInput:
    """An rtmidi input port whose messages a livekit thread takes off rtmidi's queue and hands to a callback."""

    def __init__(self, backend: mido.Backend, name: str, callback: Callable[[mido.Message], None], *,
                 virtual: bool = False) -> None:
        import rtmidi

        self._callback = callback
        self._rt = rtmidi.MidiIn(rtapi=rtmidi_api(backend), queue_size_limit=QUEUE_SIZE)
        try:
            self._rt.ignore_types(sysex=False, timing=False, active_sense=True)
            if virtual:
                self._rt.open_virtual_port(name)
            else:
                names = self._rt.get_ports()
                if name not in names:
                    raise OSError(f"unknown MIDI port {name!r} (available: {', '.join(names) or 'none'})")
                self._rt.open_port(names.index(name))
        except BaseException:
            self._rt.delete()
            raise
        self.name = name
        self.closed = False
        self.callback_errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"livekit-midi-in {name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        get = self._rt.get_message
        last = 0.0  # when the last message came
        while not self._stop.is_set():
            batch = []
            item = get()
            while item is not None:
                batch.append(item)
                item = get()
            if not batch:
                time.sleep(POLL_S if time.monotonic() - last < 1.0 else IDLE_POLL_S)
                continue
            last = time.monotonic()
            # rtmidi's deltas are exact (JACK: the server's clock); the last message arrived by now at the latest
            stamp = last - sum(delta for _, delta in batch[1:])
            for index, (data, delta) in enumerate(batch):
                if index:
                    stamp += delta
                self._deliver(data, stamp)

    def _deliver(self, data: list[int], stamp: float) -> None:
        try:
            message = mido.Message.from_bytes(data, time=stamp)
        except ValueError:  # not a MIDI message (a stray byte): nothing to hand on
            return
        try:
            self._callback(message)
        except Exception:  # a failing callback must not end the port's thread
            self.callback_errors += 1
            if self.callback_errors == 1:
                log.exception("MIDI input callback failed on %r (reported once; later failures are only counted)",
                              self.name)

    def close(self) -> None:
        """Stop the thread, then close the port (no callback can be running inside RtMidi by then)."""
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        self._rt.close_port()
        self._rt.delete()

    def __enter__(self) -> PolledInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_input(backend: mido.Backend, name: str, callback: Callable[[mido.Message], None], *,
               virtual: bool = False) -> Any:
    """An input port calling `callback` with each message: a PolledInput for rtmidi, mido's own port otherwise.

    Each message's ``time`` is its arrival on time.monotonic()'s clock."""
    if is_rtmidi(backend):
        return PolledInput(backend, name, callback, virtual=virtual)
    return backend.open_input(name, virtual=virtual, callback=lambda m: callback(m.copy(time=time.monotonic())))


class JackGate:
    """Lets bytes out to JACK only while the server's frame clock moves: a stopped or vanished server gets none."""

    def __init__(self, budget_bytes: int = GATE_BYTES, retry_s: float = 1.0) -> None:
        self.budget_bytes = budget_bytes
        self.retry_s = retry_s
        self.held = 0  # messages refused since the gate was made
        self._monitor: Any = None  # a JACK client never activated (no process thread): it only reads the clock
        self._retry_at = 0.0
        self._frame = -1
        self._unproven = 0  # bytes sent since the clock last moved
        self._refusing = False  # the current stall was reported; quiet until a message goes out again

    def _clock(self) -> int | None:
        """The server's frame count at its last cycle; None while no server can be reached (retried each second)."""
        if self._monitor is None:
            now = time.monotonic()
            if now < self._retry_at:
                return None
            self._retry_at = now + self.retry_s
            try:
                import jack

                self._monitor = jack.Client("livekit gate", no_start_server=True)
            except Exception as exc:  # no server (yet), or no libjack: nothing may go out
                log.debug("JACK gate: no server to watch: %s", exc)
                return None
            self._frame = self._monitor.last_frame_time
        return self._monitor.last_frame_time

    def admit(self, nbytes: int, messages: int = 1) -> bool:
        """True if `nbytes` in `messages` messages may be sent now; False (counted) while the server is not cycling."""
        frame = self._clock()
        if frame is not None and frame != self._frame:  # a cycle ran since the last look: every client drained
            self._frame, self._unproven = frame, 0
        cost = nbytes + 4 * messages  # RtMidi stores a length in front of every message
        if frame is None or self._unproven + cost > self.budget_bytes:
            self.held += messages
            if not self._refusing:  # once per stall of the server, however many messages it holds back
                self._refusing = True
                log.warning("MIDI out: the JACK server is not running its cycles (stopped or gone): holding MIDI "
                            "out back until it runs again (reported once)")
            return False
        self._unproven += cost
        self._refusing = False
        return True

    def close(self) -> None:
        """Close the monitor client."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            try:
                monitor.close()
            except Exception as exc:  # the server may be gone; so is the client then
                log.debug("closing the JACK gate's client failed: %s", exc)
