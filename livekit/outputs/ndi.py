"""NDI output: every displayed frame goes out as an NDI source other machines (Resolume, TouchDesigner, OBS) receive.

Built on ndi-python (https://pypi.org/project/ndi-python), whose wheels carry the NDI runtime. ``send()`` copies the
frame and returns; a sender thread converts it to RGBX and uses NDI's asynchronous send, alternating two buffers (NDI
reads one while the next is filled). A failing send is counted and logged once; it never raises into the show.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_EXTRA_IPS = ("127.0.0.1",)  # finders also ask this machine directly (multicast discovery may be off)

_ndi: Any = None
_ndi_lock = threading.Lock()


class NdiUnavailable(RuntimeError):
    """ndi-python is missing or the NDI runtime does not start on this machine."""


def load_ndi() -> Any:
    """The initialised NDIlib module (ndi-python); NdiUnavailable with the fix if it cannot load."""
    global _ndi
    with _ndi_lock:
        if _ndi is None:
            try:
                import NDIlib
            except ImportError as exc:
                raise NdiUnavailable("NDI needs the ndi-python package: pip install ndi-python") from exc
            if not NDIlib.initialize():
                raise NdiUnavailable("the NDI runtime did not start (this CPU may lack SSE4.2, see NDIlib.is_supported_CPU)")
            _ndi = NDIlib
        return _ndi


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an NDI source needs a non-empty name, got {name!r}")
    return name.strip()


class NdiOutput:
    """An NDI source named ``name``; ``send(frame)`` publishes one HxWx3 uint8 RGB frame."""

    def __init__(self, name: str = "livekit", fps: float = 60.0) -> None:
        self.name = _check_name(name)
        ndi = load_ndi()
        self._ndi = ndi
        settings = ndi.SendCreate()
        settings.ndi_name = self.name
        settings.clock_video = False  # livekit paces frames itself (display rate); NDI must not block on a clock
        settings.clock_audio = False
        self._sender = ndi.send_create(settings)
        if self._sender is None:
            raise NdiUnavailable(f"NDI could not create the source {self.name!r}")
        self._frame = ndi.VideoFrameV2()
        self._frame.FourCC = ndi.FOURCC_VIDEO_TYPE_RGBX
        self._frame.frame_format_type = ndi.FRAME_FORMAT_TYPE_PROGRESSIVE
        rate = max(1, round(float(fps) * 1000))
        self._frame.frame_rate_N, self._frame.frame_rate_D = rate, 1000
        self._buffers: list[np.ndarray] = []
        self._next = 0
        self.frames_sent = 0  # frames NDI accepted
        self.frames_dropped = 0  # frames replaced by a newer one before the sender thread took them
        self.errors = 0
        self.problem: str | None = None  # first error, for the HUD
        self._closed = False
        self._stopping = False
        self._pending: np.ndarray | None = None
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"livekit-ndi-out-{self.name}", daemon=True)
        self._thread.start()

    @property
    def source_name(self) -> str:
        """The full name receivers see, e.g. ``HOST (livekit)``."""
        return str(self._ndi.send_get_source_name(self._sender).ndi_name) if not self._closed else self.name

    def connections(self) -> int:
        """Number of receivers connected right now."""
        return 0 if self._closed else int(self._ndi.send_get_no_connections(self._sender, 0))

    def send(self, frame: np.ndarray) -> bool:
        """Hand one frame (HxWx3 uint8 RGB, any size) to the sender thread; False (counted, logged once) if rejected.

        The caller pays one plain copy (about 0.7 ms at 1080p); RGB -> RGBX and NDI's send run on the sender thread.
        If that thread is still busy with the previous frame, the newer frame replaces the waiting one (newest wins).
        """
        if self._closed:
            return False
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8):
            shape = getattr(frame, "shape", None)
            self._fail(ValueError(f"NDI output takes HxWx3 uint8 frames, got {shape} {getattr(frame, 'dtype', type(frame))}"))
            return False
        with self._wake:
            if self._pending is not None:
                self.frames_dropped += 1
            self._pending = frame.copy()
            self._wake.notify()
        return True

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._pending is not None or self._stopping)
                if self._stopping:
                    return
                frame, self._pending = self._pending, None
            try:
                buffer = self._buffer_for(frame)
                buffer[..., :3] = frame
                self._frame.data = buffer
                self._ndi.send_send_video_async_v2(self._sender, self._frame)
            except Exception as exc:  # a lost network or a library error must not stop the show
                self._fail(exc)
                continue
            self.frames_sent += 1

    def _buffer_for(self, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        if not self._buffers or self._buffers[0].shape[:2] != (height, width):
            # a size change: NDI may still read the old buffer, so flush it before replacing both
            if self._buffers:
                self._ndi.send_send_video_async_v2(self._sender, None)
            self._buffers = [np.full((height, width, 4), 255, np.uint8) for _ in range(2)]
            self._frame.xres, self._frame.yres = width, height
            self._frame.line_stride_in_bytes = width * 4
            self._frame.picture_aspect_ratio = width / height
        self._next ^= 1  # NDI is reading the other one until this send returns
        return self._buffers[self._next]

    def _fail(self, exc: Exception) -> None:
        self.errors += 1  # from the caller (bad frame) or the sender thread; a lost count here is harmless
        if self.problem is None:
            self.problem = f"NDI output {self.name!r}: {exc}"
            log.warning("%s (further failures are counted, not logged)", self.problem)

    def flush(self, timeout_s: float = 1.0) -> bool:
        """Wait until the sender thread took the waiting frame (True) or timeout_s passed; for tests and shutdown."""
        deadline = time.monotonic() + timeout_s
        while self._pending is not None and time.monotonic() < deadline:
            time.sleep(0.001)
        return self._pending is None

    def close(self) -> None:
        """Stop the source (receivers see it go); idempotent, returns within about a second."""
        if self._closed:
            return
        self._closed = True
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=1.0)
        try:
            self._ndi.send_send_video_async_v2(self._sender, None)  # wait until NDI let go of our buffers
            self._ndi.send_destroy(self._sender)
        except Exception as exc:
            log.warning("NDI output %r did not close cleanly: %s", self.name, exc)

    def __enter__(self) -> NdiOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
