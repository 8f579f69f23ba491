"""NDI output: every displayed frame goes out as an NDI source other machines (Resolume, TouchDesigner, OBS) receive.

Built on ndi-python (https://pypi.org/project/ndi-python), whose wheels carry the NDI runtime. Frames are sent with
NDI's asynchronous send: the call returns once NDI holds the buffer, so livekit keeps two RGBX buffers and alternates
(NDI reads one while the next is filled). A failing send is counted and logged once; it never raises into the show.
"""

from __future__ import annotations

import logging
import threading
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
        self.frames_sent = 0
        self.errors = 0
        self.problem: str | None = None  # first error, for the HUD
        self._closed = False
        self._lock = threading.Lock()

    @property
    def source_name(self) -> str:
        """The full name receivers see, e.g. ``HOST (livekit)``."""
        return str(self._ndi.send_get_source_name(self._sender).ndi_name) if not self._closed else self.name

    def connections(self) -> int:
        """Number of receivers connected right now."""
        return 0 if self._closed else int(self._ndi.send_get_no_connections(self._sender, 0))

    def send(self, frame: np.ndarray) -> bool:
        """Publish one frame (HxWx3 uint8 RGB, any size); False (counted, logged once) if it could not be sent."""
        with self._lock:
            if self._closed:
                return False
            try:
                buffer = self._buffer_for(frame)
                buffer[..., :3] = frame
                self._frame.data = buffer
                self._ndi.send_send_video_async_v2(self._sender, self._frame)
            except Exception as exc:  # a lost network or a bad frame must not stop the show
                self._fail(exc)
                return False
            self.frames_sent += 1
            return True

    def _buffer_for(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"NDI output takes HxWx3 uint8 frames, got {frame.shape} {frame.dtype}")
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
        self.errors += 1
        if self.problem is None:
            self.problem = f"NDI output {self.name!r}: {exc}"
            log.warning("%s (further failures are counted, not logged)", self.problem)

    def close(self) -> None:
        """Stop the source (receivers see it go); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._ndi.send_send_video_async_v2(self._sender, None)  # wait until NDI let go of our buffers
                self._ndi.send_destroy(self._sender)
            except Exception as exc:
                log.warning("NDI output %r did not close cleanly: %s", self.name, exc)

    def __enter__(self) -> NdiOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
