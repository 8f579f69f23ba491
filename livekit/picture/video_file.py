"""A video file as a live picture source (PyAV), played at its own frame rate, looping if asked."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from livekit.picture.base import PictureSource


class VideoFile(PictureSource):
    """Plays ``path`` in real time on its own thread; with ``loop`` it starts over at the end, else holds the last frame."""

    kind = "video file"

    def __init__(self, path: str | Path, loop: bool = True, speed: float = 1.0, reconnect_s: float = 1.0) -> None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"video file not found: {path}")
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        super().__init__(str(path), reconnect_s=reconnect_s)
        self.path = path
        self.loop = loop
        self.speed = speed
        self.loops = 0  # times playback went back to the start
        with av.open(str(path)) as container:  # fail here, at the edge, on a file with no video
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")

    def _frames(self) -> Iterator[np.ndarray]:
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fallback_s = 1.0 / float(stream.average_rate or 30)
            while not self.stopping:
                start = time.monotonic()
                first: float | None = None
                index = 0
                for frame in container.decode(stream):
                    t = frame.time if frame.time is not None else index * fallback_s
                    first = t if first is None else first
                    index += 1
                    delay = start + (t - first) / self.speed - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                    yield frame.to_ndarray(format="rgb24")
                if index == 0:
                    raise ValueError("no frame could be decoded")
                if not self.loop:
                    self._stop.wait()  # hold the last frame until closed
                    return
                self._stop.wait(fallback_s)  # the last frame's duration
                container.seek(0)
                self.loops += 1


def video(path: str | Path, loop: bool = True, speed: float = 1.0) -> VideoFile:
    """A video file source for a sketch, ``image = video("loop.mp4")``: a relative path is looked up next to the
    file that calls this (the sketch) when it is not in the working folder; the show starts and closes it."""
    path = Path(path).expanduser()
    if not path.is_absolute() and not path.is_file():
        caller = sys._getframe(1).f_globals.get("__file__")
        if caller:
            path = Path(caller).parent / path
    return VideoFile(path, loop=loop, speed=speed)
