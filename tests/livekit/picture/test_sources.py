"""Picture sources: a clip made here with PyAV that turns red -> blue drives a VideoFile source; looping, holding
the last frame, closing promptly; camera errors are clear."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from livekit.picture import PictureSource, VideoFile, camera, list_cameras, video

FPS = 20


def make_clip(path: Path, colours: list[tuple[int, int, int]], seconds_each: float = 0.5) -> Path:
    """An MPEG-4 clip of flat colours, seconds_each per colour, 64x48."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for colour in colours:
            image = np.empty((48, 64, 3), np.uint8)
            image[:] = colour
            for _ in range(int(seconds_each * FPS)):
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def colour_of(source: PictureSource) -> str | None:
    frame = source.latest()
    if frame is None:
        return None
    mean = frame.reshape(-1, 3).mean(0)
    return "red" if mean[0] > 200 and mean[2] < 40 else "blue" if mean[2] > 200 and mean[0] < 40 else "other"


def watch(source: PictureSource, seconds: float) -> list[str | None]:
    """The colour seen every 20 ms, collapsed to the sequence of changes."""
    seen: list[str | None] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        c = colour_of(source)
        if not seen or seen[-1] != c:
            seen.append(c)
        time.sleep(0.02)
    return seen


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "red_blue.mp4", [(255, 0, 0), (0, 0, 255)])


def test_the_source_follows_the_clip_and_loops(clip: Path) -> None:
    source = video(clip, loop=True).start()
    try:
        assert source.wait_for_frame(5.0) is not None
        seen = [c for c in watch(source, 2.6) if c is not None]
        # 1 s per loop: red, blue, red, blue, ... ("other" may flash where the codec blends a cut)
        changes = [c for c in seen if c != "other"]
        assert changes[:4] == ["red", "blue", "red", "blue"], seen
        assert source.loops >= 2
        assert source.latest().shape == (48, 64, 3) and source.latest().dtype == np.uint8
        assert not source.latest().flags.writeable  # consumers cannot scribble on the shared frame
    finally:
        started = time.monotonic()
        source.close()
        assert time.monotonic() - started < 1.0


def test_without_loop_the_last_frame_stays(clip: Path) -> None:
    with VideoFile(clip, loop=False) as source:
        time.sleep(1.6)
        assert colour_of(source) == "blue"
        version = source.version
        time.sleep(0.3)
        assert source.version == version  # nothing new: the similarity filter can skip it
        assert source.problem is None


def test_versions_count_new_frames(clip: Path) -> None:
    with VideoFile(clip, loop=True) as source:
        first = source.wait_for_frame(5.0)
        assert first is not None
        v = source.version
        assert source.wait_for_frame(2.0, after_version=v) is not None  # a newer frame arrives


def test_clear_errors_at_the_edge(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="video file not found"):
        video(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="no camera matching 'NoSuchCam'"):
        camera("NoSuchCam")
    with pytest.raises(ValueError, match="index >= 0 or a name fragment"):
        camera(-1)
    assert isinstance(list_cameras(), list)


def test_a_broken_file_is_reported_and_retried(tmp_path: Path, clip: Path) -> None:
    path = tmp_path / "later.mp4"
    path.write_bytes(clip.read_bytes())
    source = VideoFile(path, loop=True, reconnect_s=0.1)
    path.write_bytes(b"not a video")  # broken after construction: the thread must survive it
    source.start()
    try:
        time.sleep(0.5)
        assert source.latest() is None and source.problem is not None and source.reconnects >= 2
        make_clip(path, [(0, 0, 255)])
        assert source.wait_for_frame(5.0) is not None  # picked up again once the file is good
        assert colour_of(source) == "blue"
    finally:
        source.close()
