"""The PortAudio side of audio input: loading sounddevice, finding and opening input devices, re-initialising
PortAudio, and surviving a JACK server that goes away (probes run in a child process, device calls that can hang run
on a helper thread with a timeout). A show opens its device in a capture process (controllers.audio_process), which
uses open_local_stream; controllers.audio builds the live input on top of both."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

log = logging.getLogger("controllers.audio")

RESCAN_TIMEOUT_S = 5.0  # a PortAudio re-initialisation that takes longer is wedged (a dead JACK client)
CLOSE_TIMEOUT_S = 1.0  # a device that takes longer to close is abandoned: shutdown never waits on a dead server
_ABANDONED: list[Any] = []  # streams never touched again (their server died or their close hung), kept referenced


class AudioUnavailable(RuntimeError):
    """No audio input could be opened; the message says why and what to do."""


class PortAudioMissing(AudioUnavailable):
    """The PortAudio library (or sounddevice) cannot be loaded: retrying will not help."""


def portaudio_missing(reason: object) -> PortAudioMissing:
    """The error for a PortAudio (or sounddevice) that cannot load, saying how to install it."""
    return PortAudioMissing(f"audio input unavailable: PortAudio could not be loaded ({reason}); install it (Debian: "
                            "apt-get install libportaudio2) and the sounddevice package. Continuing without audio.")


def load_sounddevice() -> ModuleType:
    """The sounddevice module; PortAudioMissing (retrying will not help) when it or PortAudio cannot load."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library itself is missing
        raise portaudio_missing(exc) from exc
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


def skip_portaudio_exit() -> None:
    """After a JACK stream died, sounddevice's exit handler (Pa_Terminate) would hang or abort the interpreter:
    drop it, so the process still exits cleanly."""
    import atexit

    sd = load_sounddevice()
    handler = getattr(sd, "_exit_handler", None)
    if handler is not None:
        atexit.unregister(handler)


def rescan() -> None:
    """Re-initialise PortAudio so it sees devices that appeared since import (a JACK server started, a USB
    interface plugged in). Every open sounddevice stream in the process is closed by this."""
    sd = load_sounddevice()
    sd._terminate()
    sd._initialize()


def list_input_devices() -> list[dict[str, Any]]:
    """Every input device PortAudio sees: index, name, hostapi (name), channels, default_samplerate."""
    sd = load_sounddevice()
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
        default = load_sounddevice().default.device[0]
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
    # re-initialise this process's PortAudio before a reopen, to find a replugged device: only for an in-process
    # opener (open_stream=...); the default capture process is new at each open and sees the devices of the moment
    rescan_on_reopen: bool = False

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


def open_local_stream(config: AudioConfig, callback: Callable[..., None]) -> InputStreamLike:
    """An unstarted sounddevice.InputStream (float32) for config in this process (the capture process calls this);
    raises AudioUnavailable with the reason."""
    sd = load_sounddevice()
    index = find_input_device(config.device)
    try:
        return sd.InputStream(device=index, channels=config.channels, samplerate=config.sample_rate,
                              blocksize=config.block_size, dtype="float32", latency=config.latency, callback=callback)
    except (sd.PortAudioError, ValueError) as exc:
        raise AudioUnavailable(f"audio input unavailable: cannot open device {index} ({exc}). Continuing without audio.") from exc


def is_jack_stream(stream: Any) -> bool:
    """Whether a stream's device belongs to PortAudio's JACK host API (False for anything else)."""
    hostapi = getattr(stream, "hostapi", None)
    if isinstance(hostapi, str):  # a CaptureStream knows it without asking PortAudio in this process
        return "jack" in hostapi.lower()
    try:
        sd = load_sounddevice()
        device = sd.query_devices(stream.device)
        return "jack" in sd.query_hostapis(device["hostapi"])["name"].lower()
    except Exception:  # a test double or a device that vanished: not JACK as far as reopening is concerned
        return False


def call_with_timeout(fn: Callable[[], None], timeout_s: float, name: str) -> bool:
    """Run fn on a daemon thread and wait up to timeout_s; False when it is still running (wedged in PortAudio,
    left behind). Exceptions are logged at debug level: the caller looks at the outcome, not the error."""
    def run() -> None:
        try:
            fn()
        except Exception as exc:
            log.debug("%s failed: %s", name, exc)

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    worker.join(timeout_s)
    return not worker.is_alive()


def release_stream(stream: InputStreamLike, lost: bool = False) -> None:
    """Abort and close a stream within CLOSE_TIMEOUT_S. A lost in-process one (its JACK server died) is abandoned
    untouched: PortAudio's abort waits forever for a callback that never comes; so is one whose close hangs. A stream
    whose abort never blocks (a capture process, killed) is always aborted."""
    if getattr(stream, "abort_never_blocks", False):
        stream.abort()
        return

    def close() -> None:
        stream.abort()
        stream.close()

    if lost:
        _ABANDONED.append(stream)
    elif not call_with_timeout(close, CLOSE_TIMEOUT_S, "livekit-audio-close"):
        _ABANDONED.append(stream)
        log.warning("the audio device did not close within %.1f s; abandoned", CLOSE_TIMEOUT_S)
