"""Live audio in: a sounddevice input or a sound file, analysed hop by hop into ``audio/<feature>`` control events.

Threads: the device's blocks arrive from a capture process (controllers.audio_process: PortAudio runs there, never
in the show's process) on a reader thread that only copies them into a RingBuffer; one analysis thread per input
reads it hop by hop, runs AudioAnalyzer and calls the sink. A missing PortAudio or device is reported once and the
show goes on without audio; a device that dies mid-show (its capture process exits, reports its stream lost, or goes
quiet) is killed and reopened in a fresh process, so a JACK server restarted under the show brings audio back. The
PortAudio side (finding, opening, re-initialising devices, probing a JACK server) is controllers.audio_device.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from controllers.audio_device import (RESCAN_TIMEOUT_S, AudioConfig, AudioUnavailable, InputStreamLike, OpenStream,
                                     PortAudioMissing, call_with_timeout, find_input_device, is_jack_stream,
                                     jack_server_running, list_input_devices, release_stream, rescan,
                                     skip_portaudio_exit)
from controllers.audio_process import open_input_stream
from controllers.base import ControlEvent, ControlSink, TempoState
from controllers.features import AnalyzerConfig, AudioAnalyzer
from controllers.ringbuffer import RingBuffer, SampleClock

log = logging.getLogger(__name__)
__all__ = ["AudioConfig", "AudioInput", "AudioUnavailable", "FileSource", "PortAudioMissing", "find_input_device",
           "list_input_devices", "rescan"]  # the device side lives in controllers.audio_device, re-exported here


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
        self._open_stream: OpenStream = open_stream or (lambda c, cb: open_input_stream(c, cb, cancel=self._stop))
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
        self._jack_gone = False  # the JACK server went away: reopen once a probe finds it back
        self._wedged = False  # an in-process rescan hung inside PortAudio: no more reopening in this process
        self._last_data_s = 0.0
        self._lock = threading.Lock()  # guards _stream against a reopen that finishes while stop() runs
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
            self._thread.join(timeout=0.5)  # it may be probing JACK or inside a rescan: it is a daemon, let it go
            self._thread = None
        self._close_stream()  # a capture process is killed at once; a hung in-process stream abandoned in a second

    def tempo(self) -> TempoState | None:
        """The audio beat tracker's tempo (None before a tempo is found or without audio)."""
        return self.analyzer.tempo() if self.analyzer is not None else None

    def latest(self) -> dict[str, float]:
        """The newest value of every audio feature (empty without audio)."""
        return self.analyzer.latest() if self.analyzer is not None else {}

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # a capture process passes time.monotonic() at its PortAudio callback (one clock for every process)
        stamp = time_info if isinstance(time_info, float) else time.monotonic()
        self._ring.write(indata, stamp)  # type: ignore[union-attr]  # real-time: copy and return
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
            if not self._stop.is_set():  # an open cancelled by stop() is no news
                self._report(str(exc))
            return False
        except Exception as exc:  # a device error while starting: report it, the supervisor retries
            self._report(f"audio input unavailable: {type(exc).__name__}: {exc}. Retrying every {self.config.reopen_s:g} s.")
            if stream is not None:
                release_stream(stream)
            return False
        with self._lock:
            if self._stop.is_set():  # stop() ran while this was opening: nobody reads this stream
                release_stream(stream)
                return False
            self._stream = stream
        self._on_jack = is_jack_stream(stream)
        self._jack_gone = False
        self._last_data_s = time.monotonic()
        self.error = None
        self._reported.clear()  # a later problem is news again
        return True

    def _close_stream(self, lost: bool = False) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            release_stream(stream, lost)

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
                self._lost(stream)
                next_attempt = time.monotonic()
            # sleep until the next batch of hops should be complete (time.sleep costs far less CPU than Event.wait)
            time.sleep((max(batch - ring.available(), hop // 8) + 16) / analyzer.sample_rate)

    def _lost(self, stream: InputStreamLike) -> None:
        """The open stream stopped or went quiet: release it (a capture process is killed) and say why, once."""
        reason = "stream stopped" if not stream.active else f"no audio for {self.config.stall_s:g} s"
        self._close_stream(lost=True)
        if self._on_jack and jack_server_running() is False:
            self._jack_gone = True
            self._report(f"audio input lost: the JACK server went away; audio comes back when it returns (checking "
                         f"every {self.config.reopen_s:g} s). The show goes on without audio.")
        else:
            self._report(f"audio input lost ({reason}); reopening every {self.config.reopen_s:g} s")

    def _reopen(self) -> None:
        if self._wedged:
            return
        if self._jack_gone and jack_server_running() is False:  # a probe costs less than a capture process
            return
        if self.config.rescan_on_reopen and not call_with_timeout(rescan, RESCAN_TIMEOUT_S, "livekit-audio-rescan"):
            self._wedged = True  # stuck inside this process's PortAudio: give up on audio, never on the show
            self._report("audio input lost: re-initialising PortAudio hung; no more reopening in this process. The "
                         "show goes on without audio.")
            skip_portaudio_exit()
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
