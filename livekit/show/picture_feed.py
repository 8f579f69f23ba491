"""The picture an img2img or feedback sketch starts from, or a ControlNet follows: a still file, or a live source
(camera, video file, NDI) whose newest frame every tick hands to the engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


class PictureFeed:
    """Holds the sketch's `image` (or `control`): a still loaded once, or a started live source (closed when
    replaced)."""

    def __init__(self, sketch_path: Path, status: Callable[[str], None] = print, setting: str = "image") -> None:
        self.sketch_path = sketch_path
        self.status = status
        self.setting = setting  # the sketch setting it holds, named in messages
        self.still: np.ndarray | None = None
        self.live: Any = None  # a livekit.picture.PictureSource
        self._seen, self._frame = -1, None

    def load(self, image: Any) -> None:
        """Install the sketch's `image` (or `control`) setting (None, a path relative to the sketch, or a live
        source); ValueError, with the path, for a still that cannot be read."""
        if image is not self.live and self.live is not None:
            self.live.close()  # a reload replaced the live source (or dropped it)
            self.live = None
        self.still = None
        if image is None:
            return
        if not isinstance(image, (str, Path)):
            if image is not self.live:
                self.live, self._seen, self._frame = image.start(), -1, None
                what = "live picture in" if self.setting == "image" else f"{self.setting} picture in"
                self.status(f"livekit: {what}: {image.kind} {image.name!r}")
            return
        self.still = read_still(image, self.sketch_path.parent, self.setting)

    def frame(self) -> np.ndarray | None:
        """The picture for this tick: the still, or the live source's newest frame (the same object until a new one
        arrives, so the similarity filter can skip it), or None."""
        if self.live is None:
            return self.still
        if self.live.version != self._seen:
            self._seen, self._frame = self.live.version, self.live.latest()
        return self._frame

    def close(self) -> None:
        """Stop a live source."""
        if self.live is not None:
            self.live.close()
            self.live = None


def read_still(image: str | Path, folder: Path, setting: str = "image") -> np.ndarray:
    """A picture file (relative to folder) as (H, W, 3) uint8; ValueError naming the file when it cannot be read."""
    path = Path(image)
    path = path if path.is_absolute() else folder / path
    if not path.is_file():
        raise ValueError(f"{setting} {str(image)!r}: no such file ({path}); paths are relative to the sketch")
    import av

    try:
        with av.open(str(path)) as container:
            return next(container.decode(video=0)).to_ndarray(format="rgb24")
    except (av.error.FFmpegError, StopIteration) as exc:
        raise ValueError(f"{setting} {path}: cannot read it as a picture ({exc})") from exc
