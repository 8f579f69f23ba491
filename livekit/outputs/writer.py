"""The writers' shared part: the fixed-rate timeline that places frames by their timestamps, and the writer thread
with its bounded frame queue and audio buffer (VideoRecorder and PngSequenceWriter build on it)."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Protocol, TypeVar

import numpy as np

log = logging.getLogger("livekit.outputs.recording")
_CLOSE = object()
_Writer = TypeVar("_Writer", bound="WriterThread")


class FrameWriter(Protocol):
    """Where recorded frames go: a video file or a folder of PNGs."""

    path: Path

    def write(self, frame: np.ndarray, time_s: float | None = None) -> None:
        """Record an (H,W,3) uint8 frame shown at time_s (None: the next frame slot); never blocks for long."""

    def add_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        """Append live audio, float32 (n, channels) in -1..1, from any thread."""

    def close(self) -> None:
        """Finish writing; the output is complete when this returns."""


def check_frame(frame: np.ndarray) -> np.ndarray:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frames must be (H, W, 3) uint8 arrays, got shape {frame.shape} dtype {frame.dtype}")
    return frame


def check_fps(fps: float) -> Fraction:
    if not 0 < fps <= 240:
        raise ValueError(f"fps must be in (0, 240], got {fps}")
    return Fraction(fps).limit_denominator(1001)  # 29.97 -> 30000/1001


class FixedRateTimeline:
    """Maps display timestamps to frame numbers on a fixed-rate grid: extra frames are skipped, gaps repeated."""

    def __init__(self, fps: float, max_repeat_s: float = 2.0) -> None:
        self.fps = float(fps)
        self._max_repeat = max(1, round(max_repeat_s * fps))  # longer gaps jump the timeline instead of filling it
        self.start_s: float | None = None  # the timestamp of frame 0
        self._last: int | None = None

    def place(self, time_s: float | None) -> tuple[int, int] | None:
        """(frame number for this frame, copies of the previous frame to write first), or None to skip it."""
        if time_s is None:
            index = 0 if self._last is None else self._last + 1
        else:
            if self.start_s is None:
                self.start_s = time_s
            index = math.floor((time_s - self.start_s) * self.fps + 1e-6)  # the slot this instant falls in
        if self._last is not None and index <= self._last:
            return None
        repeats = 0 if self._last is None else min(index - self._last - 1, self._max_repeat)
        self._last = index
        return index, repeats


class WriterThread:
    """The shared part of both writers: a bounded frame queue, an audio deque and one thread that does the work."""

    def __init__(self, name: str, fps: float, max_queue: int, drop_when_behind: bool) -> None:
        self.drop_when_behind = drop_when_behind  # False: write() waits for the writer (offline rendering)
        self.timeline = FixedRateTimeline(fps)
        self.frames_written = 0  # frames in the output, repeats included
        self.frames_dropped = 0  # frames lost because the writer fell behind (the previous frame repeats instead)
        self.error: str | None = None  # first writer error; the recording stops growing after it
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._audio: deque[np.ndarray] = deque()
        self._audio_lock = threading.Lock()
        self._audio_rate: int | None = None
        self.audio_start_s: float | None = None  # time.monotonic() of the first audio sample (the sample clock after)
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def write(self, frame: np.ndarray, time_s: float | None = None) -> None:
        """Record an (H,W,3) uint8 frame shown at time_s (None: the next frame slot); never blocks for long."""
        check_frame(frame)
        if self._closed:
            return
        slot = self.timeline.place(time_s)
        if slot is None:
            return
        item = (slot[0], slot[1], np.array(frame, copy=True))
        if not self.drop_when_behind:
            self._queue.put(item)
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.frames_dropped += 1

    def add_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        """Append live audio, float32 (n, channels) in -1..1, from any thread."""
        data = np.asarray(samples, dtype=np.float32)
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2 or not 1 <= data.shape[1] <= 8:
            raise ValueError(f"audio must be float32 (samples, channels) with 1..8 channels, got shape {data.shape}")
        with self._audio_lock:
            if self._audio_rate is None:
                self._audio_rate = int(sample_rate)
                self.audio_start_s = time.monotonic() - data.shape[0] / float(sample_rate)  # its first sample
            elif int(sample_rate) != self._audio_rate:
                raise ValueError(f"audio arrived at {sample_rate} Hz after {self._audio_rate} Hz; one recording takes "
                                 "one sample rate: start a new recording when the audio device changes")
            if not self._closed:
                self._audio.append(data.copy())

    def _take_audio(self) -> list[np.ndarray]:
        with self._audio_lock:
            chunks = list(self._audio)
            self._audio.clear()
        return chunks

    def close(self) -> None:
        """Finish writing; the output is complete when this returns."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_CLOSE)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                item = None
            if item is _CLOSE:
                break
            if self.error is None:
                try:
                    if item is not None:
                        self._frame(*item)
                    self._audio_chunks(self._take_audio())
                except Exception as exc:  # a full disk must not take the show down: report, stop recording
                    self.error = f"{type(exc).__name__}: {exc}"
                    log.error("recording to %s failed: %s", getattr(self, "path", "?"), self.error)
            else:
                self._take_audio()  # discarded: after an error nothing more is written
        try:
            if self.error is None:
                self._audio_chunks(self._take_audio())
            self._finish()
        except Exception as exc:  # reported; close() still returns so the runtime can exit
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            log.error("finishing the recording failed: %s", self.error)

    def _frame(self, index: int, repeats: int, frame: np.ndarray) -> None:
        raise NotImplementedError

    def _audio_chunks(self, chunks: list[np.ndarray]) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Writer) -> _Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
