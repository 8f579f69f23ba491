"""Live audio captured in a child process: the child opens the PortAudio input and sends each float32 block to the
parent over a pipe as it arrives. A stream whose JACK server went away wedges PortAudio for good in the process that
opened it (abort never returns, Pa_Terminate hangs or asserts), so that process is never the show's: the parent kills
the child and starts a fresh one, which initialises PortAudio anew and sees the devices (and servers) of the moment.

Run as ``python -m controllers.audio_process CONFIG_JSON`` (CaptureStream does this). The child writes frames on its
stdout: a header (kind, flags, payload bytes, the child's time.monotonic() at the callback) and the payload. It reads
commands on stdin: b"s" starts the stream; end of input (the parent closed it, or died) ends the child at once.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np

from controllers.audio_device import AudioConfig, AudioUnavailable, PortAudioMissing, portaudio_missing

log = logging.getLogger("controllers.audio")

OPEN_TIMEOUT_S = 10.0  # a capture process that has not opened its device by then is wedged (or the machine is): killed
_HEADER = struct.Struct("<cBId")  # kind, flags (1: PortAudio flagged the block), payload bytes, monotonic stamp (s)
_AUDIO, _READY, _ERROR, _LOST = b"a", b"r", b"e", b"l"
_PENDING_BLOCKS = 512  # blocks the child holds while the parent does not read (older ones are dropped)
_LIVE: weakref.WeakSet[CaptureStream] = weakref.WeakSet()  # capture processes to kill when this process exits
__all__ = ["OPEN_TIMEOUT_S", "CaptureStream", "open_input_stream"]


class CaptureStream:
    """An input stream whose PortAudio side runs in a child process (the InputStreamLike AudioInput opens).

    The constructor starts the child and waits until it has opened the device: it raises AudioUnavailable (or
    PortAudioMissing) with the child's reason, or after OPEN_TIMEOUT_S. A reader thread calls
    ``callback(block (frames, channels) float32, frames, stamp_s, flags)`` per block once started. abort() and
    close() kill the child and never wait on it, so a stream that died with its server is released at once.
    """

    abort_never_blocks = True  # release_stream may abort it even when its device is lost

    def __init__(self, config: AudioConfig, callback: Callable[..., None], *, cancel: threading.Event | None = None,
                 open_timeout_s: float = OPEN_TIMEOUT_S) -> None:
        self.channels = config.channels
        self.samplerate = 0.0
        self.latency = 0.0
        self.device: int | None = None
        self.device_name = ""
        self.hostapi = ""  # PortAudio host API name of the device ("JACK Audio Connection Kit", "ALSA", ...)
        self.callback_errors = 0
        self._callback = callback
        self._started = False
        self._ended = False  # the child is gone (exited, killed, or reported its stream lost)
        self._ready = threading.Event()
        self._reason: tuple[str, str] | None = None  # (kind, message) from the child
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        root = str(Path(__file__).resolve().parents[1])  # so the child imports this checkout's controllers
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self._proc = subprocess.Popen([sys.executable, "-m", "controllers.audio_process", json.dumps(asdict(config))],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        _LIVE.add(self)
        threading.Thread(target=self._read, name="livekit-audio-capture", daemon=True).start()
        threading.Thread(target=self._drain_stderr, name="livekit-audio-capture-log", daemon=True).start()
        self._wait_ready(open_timeout_s, cancel)

    @property
    def active(self) -> bool:
        """Whether blocks are (still) arriving from a started, living child."""
        return self._started and not self._ended and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The capture process's id."""
        return self._proc.pid

    def start(self) -> None:
        """Tell the child to start its stream; blocks go to the callback from now on."""
        self._started = True
        self._command(b"s")

    def abort(self) -> None:
        """Kill the child at once (never waits on it: it may be wedged inside PortAudio)."""
        self._ended = True
        _LIVE.discard(self)
        try:
            self._proc.kill()
        except OSError:  # already gone
            pass
        for pipe in (self._proc.stdin,):
            try:
                pipe.close()  # type: ignore[union-attr]
            except OSError:
                pass

    close = abort

    def _wait_ready(self, timeout_s: float, cancel: threading.Event | None) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.05):
            if cancel is not None and cancel.is_set():
                self.abort()
                raise AudioUnavailable("audio input: opening was cancelled (the input is stopping)")
            if time.monotonic() > deadline:
                self.abort()
                raise AudioUnavailable(f"audio input unavailable: the capture process did not open the device "
                                       f"within {timeout_s:g} s (a wedged driver or JACK server?). Retrying.")
        if self._reason is not None:
            self.abort()
            kind, message = self._reason
            raise (PortAudioMissing if kind == "missing" else AudioUnavailable)(message)
        if self._ended:
            code = self._proc.poll()
            self.abort()
            last = self._stderr[-1][:200] if self._stderr else "no message"  # the rest went to the debug log
            raise AudioUnavailable(f"audio input unavailable: the capture process exited (code {code}) before "
                                   f"opening the device ({last}). Retrying.")

    def _command(self, command: bytes) -> None:
        try:
            self._proc.stdin.write(command)  # type: ignore[union-attr]
            self._proc.stdin.flush()  # type: ignore[union-attr]
        except (OSError, ValueError):  # the child died (or was killed): the reader notices and ends the stream
            self._ended = True

    def _read(self) -> None:
        out = self._proc.stdout
        assert out is not None
        try:
            while True:
                header = out.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    break
                kind, flags, size, stamp = _HEADER.unpack(header)
                payload = out.read(size)
                if len(payload) < size:
                    break
                if kind == _AUDIO:
                    if self._started and not self._ended:
                        self._deliver(np.frombuffer(payload, dtype=np.float32).reshape(-1, self.channels), stamp,
                                      flags)
                elif kind == _READY:
                    info = json.loads(payload)
                    self.samplerate, self.latency = float(info["samplerate"]), float(info["latency"])
                    self.device, self.device_name, self.hostapi = info["device"], info["name"], info["hostapi"]
                    self._ready.set()
                elif kind == _ERROR:
                    info = json.loads(payload)
                    self._reason = (info["kind"], info["message"])
                    break
                elif kind == _LOST:
                    log.debug("capture process %d: its stream stopped", self._proc.pid)
                    break
        except (OSError, ValueError):  # the pipe closed under us (abort)
            pass
        self._ended = True
        self._ready.set()
        try:
            out.close()
        except OSError:
            pass
        self.abort()
        try:
            self._proc.wait(2.0)  # reap it (killed above); never longer
        except subprocess.TimeoutExpired:
            log.debug("capture process %d did not exit after SIGKILL", self._proc.pid)

    def _deliver(self, block: np.ndarray, stamp: float, flags: int) -> None:
        try:
            self._callback(block, len(block), stamp, flags)
        except Exception:
            self.callback_errors += 1
            if self.callback_errors == 1:
                log.exception("audio callback failed (reported once; later failures are only counted)")

    def _drain_stderr(self) -> None:
        err = self._proc.stderr
        assert err is not None
        try:
            for line in err:
                text = line.decode("utf-8", "replace").strip()
                if text:
                    self._stderr.append(text)
                    log.debug("capture process %d: %s", self._proc.pid, text)
        except (OSError, ValueError):
            pass
        finally:
            err.close()


def open_input_stream(config: AudioConfig, callback: Callable[..., None],
                      cancel: threading.Event | None = None) -> CaptureStream:
    """An unstarted input stream for config, captured in a child process; raises AudioUnavailable with the reason
    (PortAudioMissing, before any child starts, when sounddevice is not installed)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("sounddevice") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise portaudio_missing("the sounddevice package is not importable")
    return CaptureStream(config, callback, cancel=cancel)


@atexit.register
def _kill_capture_processes() -> None:
    for stream in list(_LIVE):
        stream.abort()


# ---- the child ---------------------------------------------------------------------------------------------------


class _FrameWriter:
    """Child side: frames onto the pipe to the parent, one writer at a time; a closed pipe ends the child."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, kind: bytes, payload: bytes = b"", flags: int = 0, stamp_s: float = 0.0) -> None:
        """Write one frame (header + payload)."""
        with self._lock:
            try:
                self._out.write(_HEADER.pack(kind, flags, len(payload), stamp_s) + payload)
            except (OSError, ValueError):  # the parent is gone
                os._exit(0)

    def info(self, frame: bytes, /, **fields: Any) -> None:
        """Write a frame carrying JSON (positional-only frame tag: the fields may hold a `kind` of their own)."""
        self.send(frame, json.dumps(fields).encode())


def _watch_parent(start: threading.Event) -> None:
    """Child side: b"s" on stdin starts the stream; end of input means the parent is done with us."""
    while True:
        command = sys.stdin.buffer.read(1)
        if not command:
            os._exit(0)  # never Pa_Terminate: it hangs once a JACK server went away
        if command == b"s":
            start.set()


def _child(config_json: str) -> None:
    """The capture process: open the device, report it, stream blocks until the stream stops or the parent goes."""
    import signal

    from controllers.audio_device import load_sounddevice, open_local_stream

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is the parent's to handle
    frames = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # C libraries that print (libjack, ALSA) go to stderr, never into the frames
    writer = _FrameWriter(frames)
    start = threading.Event()
    threading.Thread(target=_watch_parent, args=(start,), daemon=True).start()
    config = AudioConfig(**json.loads(config_json))
    pending: collections.deque[tuple[bytes, float, int]] = collections.deque(maxlen=_PENDING_BLOCKS)
    wake = threading.Event()

    def callback(indata: np.ndarray, frame_count: int, time_info: Any, status: Any) -> None:
        pending.append((indata.tobytes(), time.monotonic(), 1 if status else 0))  # real-time: copy and return
        wake.set()

    try:
        sd = load_sounddevice()
        stream = open_local_stream(config, callback)
        device = sd.query_devices(stream.device)
        hostapi = sd.query_hostapis(device["hostapi"])["name"]
    except PortAudioMissing as exc:
        writer.info(_ERROR, kind="missing", message=str(exc))
        os._exit(0)
    except AudioUnavailable as exc:
        writer.info(_ERROR, kind="unavailable", message=str(exc))
        os._exit(0)
    except Exception as exc:  # anything else PortAudio raises while opening
        writer.info(_ERROR, kind="unavailable", message=f"audio input unavailable: {type(exc).__name__}: {exc}")
        os._exit(0)
    writer.info(_READY, samplerate=float(stream.samplerate), latency=float(stream.latency or 0.0),
                device=int(stream.device), name=str(device["name"]), hostapi=str(hostapi))
    start.wait()
    stream.start()
    while True:
        wake.wait(0.25)
        wake.clear()
        while pending:
            data, stamp, flags = pending.popleft()
            writer.send(_AUDIO, data, flags, stamp)
        if not stream.active:
            writer.send(_LOST)
            os._exit(0)


if __name__ == "__main__":
    _child(sys.argv[1])
