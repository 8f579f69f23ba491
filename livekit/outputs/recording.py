"""Recording the show: displayed frames at a fixed frame rate to MP4/MOV/MKV (PyAV, whose wheel ships ffmpeg) with the
live audio muxed in, numbered PNG frames, and PNG screenshots.

Writers never encode on the caller's thread: write() places the frame on a fixed-rate timeline and queues it, and a
writer thread encodes. MP4/MOV files are fragmented (a self-contained fragment about every second), so a show that is
killed outright still leaves a file that plays up to its last fragment; close() finalises everything.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import wave
from collections import deque
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Protocol, TypeVar

import av
import numpy as np

from livekit.outputs.png import encode_png, save_png

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v")
_FRAGMENTED = (".mp4", ".mov", ".m4v")  # mov-family muxers take movflags
_VIDEO_CODECS = ("libx264", "libopenh264", "mpeg4")  # H.264 when the bundled ffmpeg has an encoder, else MPEG-4
_AUDIO_CODECS = ("aac", "libmp3lame")
_CLOSE = object()
_Writer = TypeVar("_Writer", bound="_WriterThread")

__all__ = ["FixedRateTimeline", "FrameWriter", "PngSequenceWriter", "VideoRecorder", "encode_png", "open_frame_writer",
           "save_png"]


class FrameWriter(Protocol):
    """Where recorded frames go: a video file or a folder of PNGs."""

    path: Path

    def write(self, frame: np.ndarray, time_s: float | None = None) -> None:
        """Record an (H,W,3) uint8 frame shown at time_s (None: the next frame slot); never blocks for long."""

    def add_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        """Append live audio, float32 (n, channels) in -1..1, from any thread."""

    def close(self) -> None:
        """Finish writing; the output is complete when this returns."""


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frames must be (H, W, 3) uint8 arrays, got shape {frame.shape} dtype {frame.dtype}")
    return frame


def _check_fps(fps: float) -> Fraction:
    if not 0 < fps <= 240:
        raise ValueError(f"fps must be in (0, 240], got {fps}")
    return Fraction(fps).limit_denominator(1001)  # 29.97 -> 30000/1001


class FixedRateTimeline:
    """Maps display timestamps to frame numbers on a fixed-rate grid: extra frames are skipped, gaps repeated."""

    def __init__(self, fps: float, max_repeat_s: float = 2.0) -> None:
        self.fps = float(fps)
        self._max_repeat = max(1, round(max_repeat_s * fps))  # longer gaps jump the timeline instead of filling it
        self._start_s: float | None = None
        self._last: int | None = None

    def place(self, time_s: float | None) -> tuple[int, int] | None:
        """(frame number for this frame, copies of the previous frame to write first), or None to skip it."""
        if time_s is None:
            index = 0 if self._last is None else self._last + 1
        else:
            if self._start_s is None:
                self._start_s = time_s
            index = math.floor((time_s - self._start_s) * self.fps + 1e-6)  # the slot this instant falls in
        if self._last is not None and index <= self._last:
            return None
        repeats = 0 if self._last is None else min(index - self._last - 1, self._max_repeat)
        self._last = index
        return index, repeats


class _WriterThread:
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
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def write(self, frame: np.ndarray, time_s: float | None = None) -> None:
        """Record an (H,W,3) uint8 frame shown at time_s (None: the next frame slot); never blocks for long."""
        _check_frame(frame)
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


class VideoRecorder(_WriterThread):
    """Frames at a fixed fps to an MP4/MOV/MKV file (H.264 or MPEG-4, yuv420p), with optional AAC audio."""

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, size_px: tuple[int, int] | None = None, *,
                 audio_sample_rate: int | None = None, audio_channels: int = 2, codec: str | None = None,
                 crf: int = 18, max_queue: int = 32, drop_when_behind: bool = True) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"video recordings need one of {', '.join(VIDEO_SUFFIXES)}, got {self.path.name!r}")
        rate = _check_fps(fps)
        if audio_channels not in (1, 2):
            raise ValueError(f"audio_channels must be 1 or 2, got {audio_channels}")
        super().__init__(f"record:{self.path.name}", float(rate), max_queue, drop_when_behind)
        self.codec_name = _pick_codec(codec, _VIDEO_CODECS, "video")
        self._rate, self._crf = rate, crf
        self.path.parent.mkdir(parents=True, exist_ok=True)
        options = {"max_interleave_delta": "1000000", "flush_packets": "1"}  # hand packets to the OS promptly
        if self.path.suffix.lower() in _FRAGMENTED:
            options["movflags"] = "frag_keyframe+empty_moov+default_base_moof"  # playable after a kill
        self._container = av.open(str(self.path), "w", container_options=options)
        self._video: av.VideoStream | None = None
        self._last_video_frame: av.VideoFrame | None = None
        self._audio_stream: av.AudioStream | None = None
        self._audio_pts = 0
        if audio_sample_rate is not None:
            audio_codec = _pick_codec(None, _AUDIO_CODECS, "audio")
            self._audio_stream = self._container.add_stream(
                audio_codec, rate=int(audio_sample_rate), layout="stereo" if audio_channels == 2 else "mono")
            self._audio_stream.codec_context.bit_rate = 192_000
        self._channels = audio_channels
        if size_px is not None:
            self._open_video(size_px)
        self._thread.start()

    @property
    def has_audio(self) -> bool:
        """True when the file has an audio stream (audio_sample_rate was given)."""
        return self._audio_stream is not None

    def add_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        """Append live audio, float32 (n, channels) in -1..1, from any thread; resampled to the stream's rate."""
        if self._audio_stream is None:
            raise ValueError("this recording has no audio stream: pass audio_sample_rate= when creating it")
        super().add_audio(samples, sample_rate)

    def _open_video(self, size_px: tuple[int, int]) -> None:
        w, h = (max(2, int(v) - int(v) % 2) for v in size_px)  # yuv420p needs even sizes
        stream = self._container.add_stream(self.codec_name, rate=self._rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = max(1, round(self._rate))  # a keyframe, hence a fragment, every second
        if self.codec_name == "libx264":
            stream.options = {"preset": "veryfast", "crf": str(self._crf)}
        else:
            stream.codec_context.bit_rate = max(2_000_000, int(w * h * float(self._rate) * 0.3))
        self._video = stream

    def _frame(self, index: int, repeats: int, frame: np.ndarray) -> None:
        if self._video is None:
            self._open_video((frame.shape[1], frame.shape[0]))
        assert self._video is not None
        if self._last_video_frame is not None:
            for pts in range(index - repeats, index):  # the timeline had a gap: hold the previous picture
                self._encode(self._last_video_frame, pts)
        picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
        picture = picture.reformat(width=self._video.width, height=self._video.height, format="yuv420p")
        self._encode(picture, index)
        self._last_video_frame = picture

    def _encode(self, picture: av.VideoFrame, pts: int) -> None:
        assert self._video is not None
        picture.pts = pts
        for packet in self._video.encode(picture):
            self._container.mux(packet)
        self.frames_written += 1

    def _audio_chunks(self, chunks: list[np.ndarray]) -> None:
        stream = self._audio_stream
        if stream is None or not chunks or self._video is None:  # audio waits for the first frame to fix the start
            if chunks and stream is not None:
                with self._audio_lock:
                    self._audio.extendleft(reversed(chunks))
            return
        data = np.concatenate(chunks)
        if data.shape[1] != self._channels:
            if self._channels == 1:
                data = data.mean(axis=1, keepdims=True)
            else:
                data = data[:, :2] if data.shape[1] > 2 else np.repeat(data, 2, axis=1)
        layout = "stereo" if self._channels == 2 else "mono"
        audio = av.AudioFrame.from_ndarray(np.ascontiguousarray(data).reshape(1, -1), format="flt", layout=layout)
        audio.sample_rate = self._audio_rate or stream.rate
        audio.pts = self._audio_pts
        audio.time_base = Fraction(1, audio.sample_rate)
        self._audio_pts += data.shape[0]
        for packet in stream.encode(audio):
            self._container.mux(packet)

    def _finish(self) -> None:
        for stream in (self._video, self._audio_stream):
            if stream is not None and self.error is None:
                for packet in stream.encode(None):
                    self._container.mux(packet)
        self._container.close()


class PngSequenceWriter(_WriterThread):
    """Frames at a fixed fps as frame_000000.png, frame_000001.png, ... in a folder (audio, if any, to audio.wav)."""

    def __init__(self, folder: str | os.PathLike, fps: float = 30.0, size_px: tuple[int, int] | None = None, *,
                 compress_level: int = 1, max_queue: int = 16, drop_when_behind: bool = True) -> None:
        self.path = Path(folder)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"{self.path} is a file; PNG frames need a folder (or use a .mp4 path for video)")
        if self.path.is_dir() and any(self.path.glob("frame_*.png")):
            raise ValueError(f"{self.path} already holds frame_*.png files: choose an empty or new folder")
        super().__init__(f"png:{self.path.name}", float(_check_fps(fps)), max_queue, drop_when_behind)
        self.path.mkdir(parents=True, exist_ok=True)
        self._size_px = size_px
        self._level = compress_level
        self._previous: bytes | None = None
        self._wav: wave.Wave_write | None = None
        self._thread.start()

    def _frame(self, index: int, repeats: int, frame: np.ndarray) -> None:
        if self._previous is not None:
            for _ in range(repeats):
                self._put(self._previous)
        if self._size_px is not None and (frame.shape[1], frame.shape[0]) != tuple(self._size_px):
            frame = _resize_nearest(frame, self._size_px)
        self._previous = encode_png(frame, self._level)
        self._put(self._previous)

    def _put(self, data: bytes) -> None:
        (self.path / f"frame_{self.frames_written:06d}.png").write_bytes(data)
        self.frames_written += 1

    def _audio_chunks(self, chunks: list[np.ndarray]) -> None:
        if not chunks:
            return
        data = np.concatenate(chunks)
        if self._wav is None:
            self._wav = wave.open(str(self.path / "audio.wav"), "wb")
            self._wav.setnchannels(data.shape[1])
            self._wav.setsampwidth(2)
            self._wav.setframerate(self._audio_rate or 48000)
        pcm = (np.clip(data, -1.0, 1.0) * 32767.0).astype("<i2")
        self._wav.writeframes(pcm[:, : self._wav.getnchannels()].tobytes())

    def _finish(self) -> None:
        if self._wav is not None:
            self._wav.close()


def _pick_codec(requested: str | None, candidates: tuple[str, ...], kind: str) -> str:
    for name in (requested,) if requested else candidates:
        try:
            av.codec.Codec(name, "w")
            return name
        except ValueError:
            continue
    raise ValueError(f"no {kind} encoder among {requested or ', '.join(candidates)} in PyAV's ffmpeg "
                     f"(PyAV {av.__version__}); reinstall the `av` wheel or pick another codec")


def _resize_nearest(frame: np.ndarray, size_px: tuple[int, int]) -> np.ndarray:
    w, h = size_px
    rows = np.minimum((np.arange(h) + 0.5) * frame.shape[0] / h, frame.shape[0] - 1).astype(np.intp)
    cols = np.minimum((np.arange(w) + 0.5) * frame.shape[1] / w, frame.shape[1] - 1).astype(np.intp)
    return frame[rows[:, None], cols[None, :]]


def open_frame_writer(path: str | os.PathLike, fps: float = 30.0, size_px: tuple[int, int] | None = None, *,
                      audio_sample_rate: int | None = None, drop_when_behind: bool = True,
                      ) -> VideoRecorder | PngSequenceWriter:
    """A writer chosen by path: .mp4/.mov/.mkv/.m4v records video, a folder (existing or suffix-less) PNG frames."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return VideoRecorder(target, fps, size_px, audio_sample_rate=audio_sample_rate,
                             drop_when_behind=drop_when_behind)
    if target.is_dir() or not suffix:
        return PngSequenceWriter(target, fps, size_px, drop_when_behind=drop_when_behind)
    raise ValueError(f"cannot record to {target.name!r}: use a {', '.join(VIDEO_SUFFIXES)} file for video "
                     "or a folder name (no suffix) for numbered PNG frames")
