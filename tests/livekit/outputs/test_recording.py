"""Recording: decode what the writers produced with PyAV and check what a viewer would see."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from livekit.outputs.recording import (
    FixedRateTimeline,
    PngSequenceWriter,
    VideoRecorder,
    encode_png,
    open_frame_writer,
    save_png,
)

COLORS = [(230, 40, 40), (40, 220, 60), (50, 80, 230), (240, 220, 40)]


def solid(color: tuple[int, int, int], size_px: tuple[int, int] = (160, 96)) -> np.ndarray:
    frame = np.empty((size_px[1], size_px[0], 3), dtype=np.uint8)
    frame[:] = color
    return frame


def decode_video(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_timeline_skips_extra_display_frames_and_repeats_into_gaps() -> None:
    timeline = FixedRateTimeline(fps=30)
    placed = [timeline.place(i / 60) for i in range(6)]  # a 60 Hz display recorded at 30 frames/s
    assert placed == [(0, 0), None, (1, 0), None, (2, 0), None]
    assert timeline.place(0.2) == (6, 3)  # 100 ms of nothing: frames 3..5 repeat frame 2
    assert timeline.place(None) == (7, 0)  # untimed writes take the next slot (offline rendering)
    assert timeline.place(100.0) == (3000, 60)  # a long gap repeats at most 2 s, then jumps


def test_mp4_has_the_frames_the_size_and_the_colours(tmp_path: Path) -> None:
    path = tmp_path / "show.mp4"
    with VideoRecorder(path, fps=30, size_px=(160, 96), drop_when_behind=False) as recorder:
        for i in range(120):  # 2 s of a 60 Hz display, colour changes every half second
            recorder.write(solid(COLORS[i // 30]), time_s=10.0 + i / 60)
    assert recorder.error is None and recorder.frames_dropped == 0
    frames = decode_video(path)
    assert len(frames) == recorder.frames_written == 60
    assert frames[0].shape == (96, 160, 3)
    for k, color in enumerate(COLORS):
        middle = frames[k * 15 + 7].reshape(-1, 3).mean(axis=0)
        assert np.abs(middle - color).max() < 12, (k, middle, color)
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video"]
        assert container.streams.video[0].codec_context.name in ("h264", "mpeg4")
        assert container.streams.video[0].average_rate == 30


def test_odd_sizes_and_other_frame_sizes_are_scaled_to_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "odd.mkv"
    with VideoRecorder(path, fps=24, size_px=(101, 61), drop_when_behind=False) as recorder:
        recorder.write(solid(COLORS[0], (101, 61)))
        recorder.write(solid(COLORS[1], (64, 64)))  # generation size changed mid-show
    frames = decode_video(path)
    assert [f.shape for f in frames] == [(60, 100, 3)] * 2
    assert np.abs(frames[1].reshape(-1, 3).mean(axis=0) - COLORS[1]).max() < 12


def test_audio_is_muxed_and_lasts_as_long_as_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "with_audio.mp4"
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)).astype(np.float32)
    with VideoRecorder(path, fps=25, size_px=(64, 48), audio_sample_rate=48000, drop_when_behind=False) as rec:
        for i in range(25):
            rec.write(solid(COLORS[i % 4], (64, 48)), time_s=i / 25)
            rec.add_audio(tone[i * 1764:(i + 1) * 1764, None], 44100)  # mono 44.1 kHz into a stereo 48 kHz stream
    assert rec.has_audio and rec.error is None
    with av.open(str(path)) as container:
        assert sorted(s.type for s in container.streams) == ["audio", "video"]
        audio = container.streams.audio[0]
        assert audio.codec_context.name in ("aac", "mp3") and audio.rate == 48000 and audio.channels == 2
        samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    assert 47000 <= samples.size <= 51000  # 1 s at 48 kHz, plus the encoder's priming and padding
    assert 0.15 < np.abs(samples[2000:40000]).max() < 0.45  # the tone survived (peak 0.3)
    assert len(decode_video(path)) == 25


def test_audio_needs_a_declared_stream_and_a_single_rate(tmp_path: Path) -> None:
    with VideoRecorder(tmp_path / "mute.mp4", fps=30, size_px=(64, 48)) as rec:
        with pytest.raises(ValueError, match="audio_sample_rate"):
            rec.add_audio(np.zeros((100, 2), np.float32), 48000)
    with VideoRecorder(tmp_path / "a.mp4", fps=30, size_px=(64, 48), audio_sample_rate=48000) as rec:
        rec.add_audio(np.zeros((100, 2), np.float32), 48000)
        with pytest.raises(ValueError, match="one sample rate"):
            rec.add_audio(np.zeros((100, 2), np.float32), 44100)


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from livekit.outputs.recording import VideoRecorder
    rec = VideoRecorder(sys.argv[1], fps=30, size_px=(160, 96), audio_sample_rate=48000, drop_when_behind=False)
    i = 0
    while True:  # a show that never ends by itself
        frame = np.zeros((96, 160, 3), np.uint8)
        frame[..., 0] = (i * 7) % 256
        rec.write(frame)
        if i % 3 == 0:
            rec.add_audio(np.zeros((4800, 2), np.float32), 48000)
        i += 1
        if i == 100:
            time.sleep(0.5)
            print("written", rec.frames_written, flush=True)
        if i > 100:
            time.sleep(1 / 30)
""")


def test_a_killed_recording_still_plays(tmp_path: Path) -> None:
    path = tmp_path / "killed.mp4"
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.startswith("written"), f"writer did not start: {line!r}"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    frames = decode_video(path)  # no exception: the fragments before the kill are complete
    assert len(frames) >= 30  # at least the first second survived
    assert frames[0].shape == (96, 160, 3)
    with av.open(str(path)) as container:
        assert sorted(s.type for s in container.streams) == ["audio", "video"]


def test_png_sequence_writes_numbered_frames_and_audio(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    writer = open_frame_writer(folder, fps=10, drop_when_behind=False)
    assert isinstance(writer, PngSequenceWriter)
    with writer:
        writer.write(solid(COLORS[0]), time_s=0.0)
        writer.write(solid(COLORS[1]), time_s=0.3)  # frames 1 and 2 repeat frame 0
        writer.add_audio(np.full((800, 2), 0.5, np.float32), 16000)
    names = sorted(p.name for p in folder.glob("*.png"))
    assert names == [f"frame_{i:06d}.png" for i in range(4)]
    with av.open(str(folder / "frame_000002.png")) as png:
        assert np.array_equal(next(png.decode(video=0)).to_ndarray(format="rgb24"), solid(COLORS[0]))
    with wave.open(str(folder / "audio.wav")) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getnframes()) == (16000, 2, 800)
    with pytest.raises(ValueError, match="already holds"):
        PngSequenceWriter(folder)


@pytest.mark.parametrize("channels", [3, 4])
def test_png_round_trips_exactly(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(channels)
    image = rng.integers(0, 256, (37, 53, channels), dtype=np.uint8)
    path = save_png(tmp_path / "shots" / "shot.png", image)
    assert path.read_bytes() == encode_png(image)
    with av.open(str(path)) as png:
        decoded = next(png.decode(video=0)).to_ndarray(format="rgb24" if channels == 3 else "rgba")
    assert np.array_equal(decoded, image)


def test_open_frame_writer_chooses_by_path(tmp_path: Path) -> None:
    video = open_frame_writer(tmp_path / "a.MOV", fps=30, size_px=(64, 48))
    video.close()
    assert isinstance(video, VideoRecorder)
    (tmp_path / "takes.v2").mkdir()
    folder = open_frame_writer(tmp_path / "takes.v2", fps=30)
    folder.close()
    assert isinstance(folder, PngSequenceWriter)
    with pytest.raises(ValueError, match="folder name"):
        open_frame_writer(tmp_path / "show.gif", fps=30)
    with pytest.raises(ValueError, match="fps"):
        open_frame_writer(tmp_path / "b.mp4", fps=0)


def test_a_failing_writer_reports_instead_of_raising(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = VideoRecorder(tmp_path / "full_disk.mp4", fps=30, size_px=(64, 48), drop_when_behind=False)

    def no_space(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(recorder, "_frame", no_space)
    for i in range(5):
        recorder.write(solid(COLORS[0], (64, 48)), time_s=i / 30)  # the show goes on
    recorder.close()
    assert recorder.error is not None and "No space left" in recorder.error
