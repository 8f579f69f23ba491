"""A live picture source: decoding on its own thread, newest frame wins, a lost source keeps its last frame.

Subclasses implement ``_frames()``: open the device/file/stream, yield HxWx3 uint8 RGB frames as they arrive, and
close it in a ``finally``. When it raises or ends, the source logs the problem once, keeps showing the last frame,
and opens it again after ``reconnect_s``. ``version`` counts new frames, so a consumer (the similarity filter) can
skip a frame it has already seen without comparing pixels.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import numpy as np

log = logging.getLogger(__name__)


class SourceStalled(RuntimeError):
    """No frame arrived for longer than the source's stall limit; the source reconnects."""


class PictureSource:
    """Base class: a thread runs ``_frames()`` and keeps the newest frame for ``latest()``."""

    kind = "picture"  # for messages: "video file", "camera", "NDI"

    def __init__(self, name: str, reconnect_s: float = 1.0, stall_s: float = 2.0) -> None:
        if reconnect_s <= 0 or stall_s <= 0:
            raise ValueError(f"reconnect_s and stall_s must be > 0, got {reconnect_s} and {stall_s}")
        self.name = name
        self.reconnect_s = reconnect_s
        self.stall_s = stall_s
        self.version = 0  # +1 per new frame
        self.reconnects = 0
        self.problem: str | None = None  # the current problem (None while frames flow), for the HUD
        self._latest: np.ndarray | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reported: set[str] = set()
        self._thread: threading.Thread | None = None

    def start(self) -> PictureSource:
        """Start the decoding thread (returns self, so ``video("x.mp4").start()`` reads well)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"livekit-{self.kind}", daemon=True)
            self._thread.start()
        return self

    def latest(self) -> np.ndarray | None:
        """The newest frame (HxWx3 uint8 RGB, read-only), or None before the first one arrived."""
        with self._lock:
            return self._latest

    def wait_for_frame(self, timeout_s: float = 5.0, after_version: int = 0) -> np.ndarray | None:
        """Block until a frame newer than ``after_version`` arrived (None on timeout); for scripts and tests."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.version > after_version:
                return self.latest()
            time.sleep(0.005)
        return None

    @property
    def stopping(self) -> bool:
        """True once close() was called; ``_frames()`` loops check it to return promptly."""
        return self._stop.is_set()

    def _publish(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
        frame.setflags(write=False)
        with self._lock:
            self._latest = frame
            self.version += 1
        self.problem = None

    def _frames(self) -> Iterator[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for frame in self._frames():
                    self._publish(frame)
                    if self._stop.is_set():
                        break
                if not self._stop.is_set():
                    raise SourceStalled("the stream ended")
            except Exception as exc:  # a lost device or a broken file keeps the last frame and tries again
                self._report(exc)
                self.reconnects += 1
                self._stop.wait(self.reconnect_s)

    def _report(self, exc: Exception) -> None:
        message = f"{self.kind} {self.name!r}: {exc}"
        self.problem = message
        if message not in self._reported:  # once per distinct problem, not once per retry
            self._reported.add(message)
            log.warning("%s (keeping the last frame, retrying every %.1f s)", message, self.reconnect_s)

    def close(self) -> None:
        """Stop decoding; returns within about a second."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            if self._thread.is_alive():
                log.warning("%s %r: decoding thread still busy after 1 s (left as a daemon)", self.kind, self.name)

    def __enter__(self) -> PictureSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
