"""A camera as a live picture source through PyAV's capture inputs: v4l2 (Linux), avfoundation (macOS), dshow (Windows)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from livekit.picture.base import PictureSource

_FORMATS = {"linux": "v4l2", "darwin": "avfoundation", "win32": "dshow"}


def _capture_format() -> str:
    for prefix, fmt in _FORMATS.items():
        if sys.platform.startswith(prefix):
            return fmt
    raise RuntimeError(f"cameras are supported on Linux (v4l2), macOS (avfoundation) and Windows (dshow), not {sys.platform}")


def _linux_cameras() -> list[tuple[str, str]]:
    """(device path, card name) for each /dev/videoN, names from sysfs."""
    cameras = []
    for node in sorted(Path("/dev").glob("video*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0)):
        name_file = Path("/sys/class/video4linux") / node.name / "name"
        name = name_file.read_text().strip() if name_file.is_file() else node.name
        cameras.append((str(node), name))
    return cameras


def _ffmpeg_listed_devices(fmt: str, file: str) -> list[str]:
    """Device names ffmpeg prints for ``-list_devices true`` (avfoundation/dshow), captured from PyAV's log."""
    import av.logging

    lines: list[str] = []
    with av.logging.Capture() as logs:
        try:
            av.open(file, format=fmt, options={"list_devices": "true"}).close()
        except Exception:  # listing always "fails" to open; the names are in the log
            pass
        lines = [message for _level, _name, message in logs]
    names, in_video = [], True
    for line in lines:
        if "audio devices" in line.lower():
            in_video = False
        match = re.search(r'\[(\d+)\]\s+(.+)$', line) or re.search(r'"([^"]+)"', line)
        if in_video and match and "Alternative name" not in line:
            names.append(match.group(match.lastindex).strip())
    return names


def list_cameras() -> list[str]:
    """Cameras this machine offers, as ``index: name`` lines (``camera(index)`` or a name fragment opens one)."""
    fmt = _capture_format()
    if fmt == "v4l2":
        names = [f"{path} {name}" for path, name in _linux_cameras()]
    else:
        names = _ffmpeg_listed_devices(fmt, "" if fmt == "avfoundation" else "dummy")
    return [f"{i}: {name}" for i, name in enumerate(names)]


def _resolve(device: int | str, fmt: str) -> str:
    """The ``file`` argument of av.open for a camera index or name fragment on this platform."""
    if fmt == "v4l2":
        cameras = _linux_cameras()
        if isinstance(device, int):
            return f"/dev/video{device}"
        for path, name in cameras:
            if device.lower() in name.lower() or device == path:
                return path
        raise ValueError(f"no camera matching {device!r}; cameras: {[n for _p, n in cameras] or 'none'}")
    names = _ffmpeg_listed_devices(fmt, "" if fmt == "avfoundation" else "dummy")
    if isinstance(device, int):
        if fmt == "avfoundation":
            return f"{device}:none"  # video device index, no audio
        if not 0 <= device < len(names):
            raise ValueError(f"camera index {device} out of range; cameras: {names or 'none'}")
        return f"video={names[device]}"
    matches = [n for n in names if device.lower() in n.lower()]
    if not matches:
        raise ValueError(f"no camera matching {device!r}; cameras: {names or 'none'}")
    return f"{matches[0]}:none" if fmt == "avfoundation" else f"video={matches[0]}"


class Camera(PictureSource):
    """Frames from a camera by index (``0``) or name fragment (``"FaceTime"``); reconnects when it is unplugged."""

    kind = "camera"

    def __init__(self, device: int | str = 0, size: tuple[int, int] | None = None, fps: float | None = None,
                 reconnect_s: float = 1.0) -> None:
        if isinstance(device, bool) or not isinstance(device, (int, str)) or (isinstance(device, int) and device < 0):
            raise ValueError(f"camera needs an index >= 0 or a name fragment, got {device!r}")
        self.format = _capture_format()
        self.file = _resolve(device, self.format)
        super().__init__(str(device), reconnect_s=reconnect_s)
        self.options: dict[str, str] = {}
        if size is not None:
            self.options["video_size"] = f"{int(size[0])}x{int(size[1])}"
        if fps is not None:
            self.options["framerate"] = f"{float(fps):g}"

    def _frames(self) -> Iterator[np.ndarray]:
        with av.open(self.file, format=self.format, options=self.options, timeout=self.stall_s) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                if self.stopping:
                    return
                yield frame.to_ndarray(format="rgb24")


def camera(device: int | str = 0, size: tuple[int, int] | None = None, fps: float | None = None) -> Camera:
    """A camera source for a sketch: ``image = camera(0)`` or ``camera("FaceTime")``; the show starts and closes it."""
    return Camera(device, size=size, fps=fps)
