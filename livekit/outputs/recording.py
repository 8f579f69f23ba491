"""Recording the show: displayed frames at a fixed frame rate to MP4/MOV/MKV (PyAV, whose wheel ships ffmpeg) with the
live audio muxed in, numbered PNG frames, and PNG screenshots.

Writers never encode on the caller's thread: write() places the frame on a fixed-rate timeline and queues it, and a
writer thread encodes. MP4/MOV files are fragmented (a self-contained fragment about every second), so a show that is
killed outright still leaves a file that plays up to its last fragment; close() finalises everything.
"""

from __future__ import annotations

import logging
import os
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from livekit.outputs.png import encode_png, save_png
from livekit.outputs.writer import FixedRateTimeline, FrameWriter, WriterThread, check_fps

log = logging.getLogger(__name__)

MAX_ALIGN_S = 5.0  # audio that began further than this from frame 0 is not on the frames' clock: not aligned
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v")
_FRAGMENTED = (".mp4", ".mov", ".m4v")  # mov-family muxers take movflags
_VIDEO_CODECS = ("libx264", "libopenh264", "mpeg4")  # H.264 when the bundled ffmpeg has an encoder, else MPEG-4
_AUDIO_CODECS = ("aac", "libmp3lame")

__all__ = ["FixedRateTimeline", "FrameWriter", "PngSequenceWriter", "VideoRecorder", "encode_png", "open_frame_writer",
           "save_png"]


class VideoRecorder(WriterThread):
    """Frames at a fixed fps to an MP4/MOV/MKV file (H.264 or MPEG-4, yuv420p), with optional AAC audio."""

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, size_px: tuple[int, int] | None = None, *,
                 audio_sample_rate: int | None = None, audio_channels: int = 2, codec: str | None = None,
                 crf: int = 18, max_queue: int = 32, drop_when_behind: bool = True) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"video recordings need one of {', '.join(VIDEO_SUFFIXES)}, got {self.path.name!r}")
        rate = check_fps(fps)
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
        self._video_end_pts = 0  # one past the last video timestamp written (the picture's length in frames)
        self._audio_stream: av.AudioStream | None = None
        self._audio_pts = 0
        self._audio_skip: int | None = None  # set at the first audio write (see _align_start)
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

    def _match_lengths(self) -> None:
        """However the recording ends, picture and sound end together (within one frame): the last picture holds
        while audio goes on, silence fills when the picture ran longer."""
        rate = self._audio_rate or self._audio_stream.rate
        fps = float(self._rate)
        video_s, audio_s = self._video_end_pts / fps, self._audio_pts / rate  # by timestamps, not frame counts
        if audio_s > video_s + 1.0 / fps and self._last_video_frame is not None:
            for pts in range(self._video_end_pts, round(audio_s * fps)):
                self._encode(self._last_video_frame, pts)
        elif video_s > audio_s + 1.0 / fps and self._audio_pts > 0:
            self._encode_audio(np.zeros((round((video_s - audio_s) * rate), self._channels), np.float32))

    def _encode(self, picture: av.VideoFrame, pts: int) -> None:
        assert self._video is not None
        picture.pts = pts
        for packet in self._video.encode(picture):
            self._container.mux(packet)
        self.frames_written += 1
        self._video_end_pts = max(self._video_end_pts, pts + 1)

    def _audio_chunks(self, chunks: list[np.ndarray]) -> None:
        stream = self._audio_stream
        if stream is None or not chunks or self._video is None:  # audio waits for the first frame to fix the start
            if chunks and stream is not None:
                with self._audio_lock:
                    self._audio.extendleft(reversed(chunks))
            return
        data = self._align_start(np.concatenate(chunks))
        if data.shape[0] == 0:
            return
        self._encode_audio(data)

    def _align_start(self, data: np.ndarray) -> np.ndarray:
        """Before the first audio is written: drop what was heard before the first frame, or lead in with silence
        when the audio started later, so sample 0 of the file is the instant of frame 0."""
        if self._audio_skip is None:
            start = self.timeline.start_s
            rate = self._audio_rate or 48000
            offset = 0.0 if start is None or self.audio_start_s is None else start - self.audio_start_s
            if abs(offset) > MAX_ALIGN_S:  # frame times that are not time.monotonic() (a file render): no alignment
                offset = 0.0
            self._audio_skip = round(offset * rate)  # > 0: samples to drop; < 0: silence to prepend
        if self._audio_skip > 0:
            drop = min(self._audio_skip, data.shape[0])
            self._audio_skip -= drop
            return data[drop:]
        if self._audio_skip < 0:
            data = np.concatenate([np.zeros((-self._audio_skip, data.shape[1]), np.float32), data])
            self._audio_skip = 0
        return data

    def _encode_audio(self, data: np.ndarray) -> None:
        stream = self._audio_stream
        assert stream is not None
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
        if self.error is None and self._audio_stream is not None and self._video is not None:
            self._match_lengths()
        for stream in (self._video, self._audio_stream):
            if stream is not None and self.error is None:
                for packet in stream.encode(None):
                    self._container.mux(packet)
        self._container.close()


class PngSequenceWriter(WriterThread):
    """Frames at a fixed fps as frame_000000.png, frame_000001.png, ... in a folder (audio, if any, to audio.wav)."""

    def __init__(self, folder: str | os.PathLike, fps: float = 30.0, size_px: tuple[int, int] | None = None, *,
                 compress_level: int = 1, max_queue: int = 16, drop_when_behind: bool = True) -> None:
        self.path = Path(folder)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"{self.path} is a file; PNG frames need a folder (or use a .mp4 path for video)")
        if self.path.is_dir() and any(self.path.glob("frame_*.png")):
            raise ValueError(f"{self.path} already holds frame_*.png files: choose an empty or new folder")
        super().__init__(f"png:{self.path.name}", float(check_fps(fps)), max_queue, drop_when_behind)
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
