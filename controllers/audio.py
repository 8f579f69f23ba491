"""Live audio in: a sounddevice input or a sound file, analysed hop by hop into ``audio/<feature>`` control events.

Threads: the PortAudio callback only copies into a RingBuffer; one analysis thread per input reads it hop by hop,
runs AudioAnalyzer and calls the sink. A missing PortAudio or device is reported once and the show goes on without
audio; a device that dies mid-show is reopened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from controllers.base import ControlEvent, ControlSink, TempoState
from controllers.features import AnalyzerConfig, AudioAnalyzer
from controllers.ringbuffer import RingBuffer, SampleClock

log = logging.getLogger(__name__)


RESCAN_TIMEOUT_S = 5.0  # a PortAudio re-initialisation that takes longer is wedged (a dead JACK client)
CLOSE_TIMEOUT_S = 1.0  # a device that takes longer to close is abandoned: shutdown never waits on a dead server
_ABANDONED: list[Any] = []  # streams whose server died: never touched again, released by the next rescan


class AudioUnavailable(RuntimeError):
    """No audio input could be opened; the message says why and what to do."""


class PortAudioMissing(AudioUnavailable):
    """The PortAudio library (or sounddevice) cannot be loaded: retrying will not help."""


def _sounddevice() -> ModuleType:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library itself is missing
        raise PortAudioMissing(
            f"audio input unavailable: PortAudio could not be loaded ({exc}); install it (Debian: apt-get install "
            "libportaudio2) and the sounddevice package. Continuing without audio."
        ) from exc
    return sounddevice


_JACK_PROBE = """
import ctypes, ctypes.util, sys
name = ctypes.util.find_library("jack")
if name is None:
    sys.exit(2)
lib = ctypes.CDLL(name)
lib.jack_client_open.restype = ctypes.c_void_p
lib.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
status = ctypes.c_int(0)
client = lib.jack_client_open(b"livekit-probe", 0x01, ctypes.byref(status))  # 0x01: JackNoStartServer
sys.exit(0 if client else 1)
"""


def jack_server_running(timeout_s: float = 3.0) -> bool | None:
    """Whether a JACK server answers, asked from a separate process (a libjack client inside this one would wedge
    PortAudio's own); None where that cannot be told (no libjack, the probe failed)."""
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-c", _JACK_PROBE], capture_output=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {0: True, 1: False}.get(done.returncode)


def _skip_portaudio_exit() -> None:
    """After a JACK stream died, sounddevice's exit handler (Pa_Terminate) would hang or abort the interpreter:
    drop it, so the process still exits cleanly."""
    import atexit

    sd = _sounddevice()
    handler = getattr(sd, "_exit_handler", None)
    if handler is not None:
        atexit.unregister(handler)


def rescan() -> None:
    """Re-initialise PortAudio so it sees devices that appeared since import (a JACK server started, a USB
    interface plugged in). Every open sounddevice stream in the process is closed by this."""
    sd = _sounddevice()
    sd._terminate()
    sd._initialize()


def list_input_devices() -> list[dict[str, Any]]:
    """Every input device PortAudio sees: index, name, hostapi (name), channels, default_samplerate."""
    sd = _sounddevice()
    return [
        {"index": d["index"], "name": d["name"], "hostapi": sd.query_hostapis(d["hostapi"])["name"],
         "channels": d["max_input_channels"], "default_samplerate": d["default_samplerate"]}
        for d in sd.query_devices() if d["max_input_channels"] > 0
    ]


def find_input_device(device: str | int | None) -> int:
    """Index of the input device given by index or case-insensitive name fragment (host API name included);
    None picks PortAudio's default input, else the first input. Raises AudioUnavailable with the choices."""
    inputs = list_input_devices()
    choices = "; ".join(f"{d['index']}: {d['name']} ({d['hostapi']})" for d in inputs) or "none"
    if not inputs:
        raise AudioUnavailable("audio input unavailable: PortAudio sees no input device. Continuing without audio.")
    if device is None:
        default = _sounddevice().default.device[0]
        return default if any(d["index"] == default for d in inputs) else inputs[0]["index"]
    if isinstance(device, int):
        if any(d["index"] == device for d in inputs):
            return device
        raise AudioUnavailable(f"audio input unavailable: device {device} is not an input. Inputs: {choices}")
    for d in inputs:
        if device.lower() in f"{d['name']} ({d['hostapi']})".lower():
            return d["index"]
    raise AudioUnavailable(f"audio input unavailable: no input device matches {device!r}. Inputs: {choices}")


@dataclass(frozen=True)
class AudioConfig:
    """Which input to open and how the live input is supervised."""

    device: str | int | None = None  # index or case-insensitive name fragment ("jack", "scarlett"); None = default
    channels: int = 1  # channels opened; the analysis uses their mean
    sample_rate: int | None = None  # Hz; None takes the device's default rate
    block_size: int = 256  # frames per PortAudio callback (5.3 ms at 48 kHz); 0 lets PortAudio choose
    latency: float | str = "low"  # PortAudio input latency: seconds, "low" or "high"
    hops_per_wake: int = 2  # hops analysed per (cache-cold, costly) wake-up; 2 adds at most one hop of latency
    ring_s: float = 2.0  # ring buffer length: how far analysis may fall behind before audio is dropped
    stall_s: float = 1.0  # no audio for this long while open counts as a lost device
    reopen_s: float = 2.0  # pause between attempts to (re)open the device
    rescan_on_reopen: bool = True  # re-initialise PortAudio before a reopen, to find a replugged device

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0 Hz or None for the device default, got {self.sample_rate}")
        if self.hops_per_wake < 1:
            raise ValueError(f"hops_per_wake must be >= 1, got {self.hops_per_wake}")
        if self.block_size < 0:
            raise ValueError(f"block_size must be >= 0 frames (0 = PortAudio chooses), got {self.block_size}")
        if self.ring_s <= 0 or self.stall_s <= 0 or self.reopen_s <= 0:
            raise ValueError("ring_s, stall_s and reopen_s must be > 0 seconds")


class InputStreamLike(Protocol):
    """What AudioInput needs of a stream (sounddevice.InputStream has it)."""

    samplerate: float
    latency: float
    active: bool

    def start(self) -> None:
        """Start calling the callback."""

    def abort(self) -> None:
        """Stop at once, dropping pending audio."""

    def close(self) -> None:
        """Release the device."""


OpenStream = Callable[[AudioConfig, Callable[..., None]], InputStreamLike]


def open_input_stream(config: AudioConfig, callback: Callable[..., None]) -> InputStreamLike:
    """An unstarted sounddevice.InputStream (float32) for config; raises AudioUnavailable with the reason."""
    sd = _sounddevice()
    index = find_input_device(config.device)
    try:
        return sd.InputStream(device=index, channels=config.channels, samplerate=config.sample_rate,
                              blocksize=config.block_size, dtype="float32", latency=config.latency, callback=callback)
    except (sd.PortAudioError, ValueError) as exc:
        raise AudioUnavailable(f"audio input unavailable: cannot open device {index} ({exc}). Continuing without audio.") from exc


def _is_jack(stream: Any) -> bool:
    """Whether a sounddevice stream's device belongs to PortAudio's JACK host API (False for anything else)."""
    try:
        sd = _sounddevice()
        device = sd.query_devices(stream.device)
        return "jack" in sd.query_hostapis(device["hostapi"])["name"].lower()
    except Exception:  # a test double or a device that vanished: not JACK as far as reopening is concerned
        return False


class _AudioTap:
    """What both audio sources share: a context manager over start/stop, and an optional raw-sample listener
    (e.g. a recording) fed each analysed hop, never fatal."""

    def start(self) -> bool:  # defined by each source
        raise NotImplementedError

    def stop(self) -> None:  # defined by each source
        raise NotImplementedError

    def close(self) -> None:
        """Stop and release the source (same as stop)."""
        self.stop()

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    tap: Callable[[np.ndarray, int], None] | None = None  # (samples (n, channels) float32, sample_rate)
    tap_errors = 0

    def _tap(self, block: np.ndarray, sample_rate: int) -> None:
        listener = self.tap
        if listener is None:
            return
        try:
            listener(np.array(block, dtype=np.float32), int(sample_rate))
        except Exception:
            self.tap_errors += 1
            if self.tap_errors == 1:
                log.exception("audio tap failed (reported once; later failures are only counted)")


class _Delivery:
    """Calls a sink with events; a failing sink is counted and reported once, never fatal."""

    def __init__(self, sink: ControlSink | None) -> None:
        self.sink = sink
        self.errors = 0

    def __call__(self, events: list[ControlEvent]) -> None:
        if self.sink is None:
            return
        for event in events:
            try:
                self.sink(event)
            except Exception:
                self.errors += 1
                if self.errors == 1:
                    log.exception("audio event sink failed (reported once; later failures are only counted)")


class AudioInput(_AudioTap):
    """A live input device analysed on its own thread; events go to the sink, tempo() serves the master clock."""

    def __init__(self, config: AudioConfig | None = None, sink: ControlSink | None = None,
                 analysis: AnalyzerConfig | None = None, *, open_stream: OpenStream | None = None) -> None:
        self.config = config or AudioConfig()
        self.analysis = analysis or AnalyzerConfig()
        self._open_stream = open_stream or open_input_stream
        self._deliver = _Delivery(sink)
        self.analyzer: AudioAnalyzer | None = None
        self.error: str | None = None  # the latest problem, for a HUD; None while audio flows
        self.reopens = 0  # how many times a lost device was reopened
        self.overflows = 0  # callbacks PortAudio flagged (input overflow: audio lost before it reached us)
        self.analysis_errors = 0  # hops whose analysis raised (the first is logged)
        self._reported: set[str] = set()
        self._stream: InputStreamLike | None = None
        self._ring: RingBuffer | None = None
        self._clock: SampleClock | None = None
        self._fatal = False
        self._on_jack = False  # the stream runs on PortAudio's JACK host API (its server may go away and return)
        self._jack_server_lost = False  # the JACK server died under the stream: PortAudio cannot recover from that
        self._last_data_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stream(self) -> InputStreamLike | None:
        """The open stream, or None while there is none."""
        return self._stream

    def start(self) -> bool:
        """Open the device and start analysing; False (with `error` set, reported once) if there is no audio.
        Unless PortAudio itself is missing, a background thread keeps trying to open the device."""
        if self._thread is not None and self._thread.is_alive():
            return self._stream is not None
        self._stop.clear()
        opened = self._try_open()
        if self._fatal:
            return False
        self._thread = threading.Thread(target=self._run, name="livekit-audio-analysis", daemon=True)
        self._thread.start()
        return opened

    def stop(self) -> None:
        """Stop analysing and close the device (within about a second, whatever the device does); start() opens it
        again."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)  # it may be inside PortAudio (a rescan): it is a daemon, let it go
            self._thread = None
        self._close_stream(lost=self.error is not None and "lost" in self.error)

    def tempo(self) -> TempoState | None:
        """The audio beat tracker's tempo (None before a tempo is found or without audio)."""
        return self.analyzer.tempo() if self.analyzer is not None else None

    def latest(self) -> dict[str, float]:
        """The newest value of every audio feature (empty without audio)."""
        return self.analyzer.latest() if self.analyzer is not None else {}

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self._ring.write(indata, time.monotonic())  # type: ignore[union-attr]  # real-time: copy and return
        if status:
            self.overflows += 1

    def _report(self, message: str) -> None:
        self.error = message
        if message not in self._reported:
            self._reported.add(message)
            log.warning("%s", message)

    def _try_open(self) -> bool:
        stream: InputStreamLike | None = None
        try:
            stream = self._open_stream(self.config, self._callback)
            rate = int(round(stream.samplerate))
            self._ring = RingBuffer(max(int(self.config.ring_s * rate), 4 * self.analysis.hop), self.config.channels)
            self._clock = SampleClock(rate, latency_s=float(stream.latency or 0.0))
            if self.analyzer is None or self.analyzer.sample_rate != rate:
                self.analyzer = AudioAnalyzer(self.analysis, rate)
            stream.start()
        except AudioUnavailable as exc:
            self._fatal = isinstance(exc, PortAudioMissing)
            self._report(str(exc))
            return False
        except Exception as exc:  # a device error while starting: report it, the supervisor retries
            self._report(f"audio input unavailable: {type(exc).__name__}: {exc}. Retrying every {self.config.reopen_s:g} s.")
            if stream is not None:
                self._stream = stream
                self._close_stream()
            return False
        self._stream = stream
        self._on_jack = _is_jack(stream)
        self._last_data_s = time.monotonic()
        self.error = None
        self._reported.clear()  # a later problem is news again
        return True

    def _close_stream(self, lost: bool = False) -> None:
        """Release the stream. A lost one (its JACK server died) is abandoned, not aborted: PortAudio's abort waits
        forever for a callback that never comes. A live one is closed on a helper thread, abandoned if that hangs."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if lost:
            _ABANDONED.append(stream)  # kept referenced; PortAudio's re-initialisation (rescan) releases it
            return

        def close() -> None:
            try:
                stream.abort()
                stream.close()
            except Exception as exc:  # the device is already gone: nothing left to release
                log.debug("closing the audio stream failed: %s", exc)

        closer = threading.Thread(target=close, name="livekit-audio-close", daemon=True)
        closer.start()
        closer.join(CLOSE_TIMEOUT_S)
        if closer.is_alive():
            _ABANDONED.append(stream)
            log.warning("the audio device did not close within %.1f s; abandoned", CLOSE_TIMEOUT_S)

    def _run(self) -> None:
        hop = self.analysis.hop
        batch = hop * self.config.hops_per_wake
        block = np.zeros((hop, self.config.channels), dtype=np.float32)
        mono = np.zeros(hop, dtype=np.float64)
        next_attempt = time.monotonic() + self.config.reopen_s
        while not self._stop.is_set():
            stream, ring, clock, analyzer = self._stream, self._ring, self._clock, self.analyzer
            now = time.monotonic()
            if stream is None or ring is None or clock is None or analyzer is None:
                if now >= next_attempt:
                    next_attempt = now + self.config.reopen_s
                    self._reopen()
                time.sleep(0.05)
                continue
            got = False
            while ring.read_into(block):
                got = True
                stamp = ring.latest_stamp()
                if stamp is not None:
                    clock.observe(*stamp)
                np.mean(block, axis=1, out=mono)
                self._tap(block, analyzer.sample_rate)
                try:
                    self._deliver(analyzer.process(mono, clock.time_of(ring.read)))
                except Exception:  # a bug must not end the show: count it, report the first
                    self.analysis_errors += 1
                    if self.analysis_errors == 1:
                        log.exception("audio analysis failed (reported once; later failures are only counted)")
            if got:
                self._last_data_s = now
            elif not stream.active or now - self._last_data_s > self.config.stall_s:
                reason = "stream stopped" if not stream.active else f"no audio for {self.config.stall_s:g} s"
                self._report(f"audio input lost ({reason}); reopening")
                if self._on_jack and jack_server_running() is False:
                    self._jack_server_lost = True  # PortAudio's JACK client is dead for good in this process
                self._close_stream(lost=True)
                next_attempt = now
            # sleep until the next batch of hops should be complete (time.sleep costs far less CPU than Event.wait)
            time.sleep((max(batch - ring.available(), hop // 8) + 16) / analyzer.sample_rate)

    def _reopen(self) -> None:
        if self._jack_server_lost:  # measured: Pa_Terminate hangs or asserts once a JACK stream lost its server
            self._report("audio input lost: the JACK server went away; PortAudio cannot reopen JACK audio in this "
                         "process (restart livekit once the server is back). The show goes on without audio.")
            _skip_portaudio_exit()
            return
        if self.config.rescan_on_reopen:
            done = threading.Event()

            def scan() -> None:
                try:
                    rescan()
                except Exception as exc:  # PortAudio refused to re-initialise: the open below reports the outcome
                    log.debug("PortAudio rescan failed: %s", exc)
                done.set()

            threading.Thread(target=scan, name="livekit-audio-rescan", daemon=True).start()
            if not done.wait(RESCAN_TIMEOUT_S):  # wedged inside PortAudio: give up on audio, never on the show
                self._jack_server_lost = True
                _skip_portaudio_exit()
                return
        if self._try_open():
            self.reopens += 1
            log.warning("audio input reopened")


class FileSource(_AudioTap):
    """Plays a WAV/FLAC file through the same analysis, in real time for rehearsal or as fast as possible."""

    def __init__(self, path: str | Path, sink: ControlSink | None = None, analysis: AnalyzerConfig | None = None,
                 *, realtime: bool = True, loop: bool = False) -> None:
        import soundfile

        try:
            info = soundfile.info(str(path))
        except Exception as exc:  # soundfile raises its own error type for unreadable files
            raise ValueError(f"cannot read audio file {str(path)!r}: {exc}") from exc
        self.path = Path(path)
        self.sample_rate = int(info.samplerate)
        self.realtime = realtime
        self.loop = loop
        self.analysis = analysis or AnalyzerConfig()
        self.analyzer = AudioAnalyzer(self.analysis, self.sample_rate)
        self._deliver = _Delivery(sink)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start playing on a background thread; True (a readable file is always available)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._done.clear()
            self._thread = threading.Thread(target=self._run, name="livekit-audio-file", daemon=True)
            self._thread.start()
        return True

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the file has played out (never, when looping); True if it has."""
        return self._done.wait(timeout_s)

    def stop(self) -> None:
        """Stop playing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def tempo(self) -> TempoState | None:
        """The beat tracker's tempo for the file so far."""
        return self.analyzer.tempo()

    def latest(self) -> dict[str, float]:
        """The newest value of every audio feature."""
        return self.analyzer.latest()

    def _run(self) -> None:
        import soundfile

        hop = self.analysis.hop
        start_s = time.monotonic()
        played = 0
        try:
            with soundfile.SoundFile(str(self.path)) as audio:
                while not self._stop.is_set():
                    block = audio.read(hop, dtype="float64", always_2d=True)
                    if len(block) < hop:
                        if not self.loop:
                            break
                        audio.seek(0)
                        rest = audio.read(hop - len(block), dtype="float64", always_2d=True)
                        block = np.concatenate([block, rest])
                        if len(block) < hop:  # a file shorter than one hop
                            block = np.pad(block, ((0, hop - len(block)), (0, 0)))
                    played += hop
                    time_s = start_s + played / self.sample_rate
                    if self.realtime:
                        self._stop.wait(max(0.0, time_s - time.monotonic()))
                    self._tap(block.astype(np.float32), self.sample_rate)
                    self._deliver(self.analyzer.process(block.mean(axis=1), time_s))
        except Exception:
            log.exception("playing %s failed; continuing without file audio", self.path)
        finally:
            self._done.set()
