"""Capture of what the audience sees: R toggles a recording (with the live audio muxed in), S saves a screenshot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

RECORD_FPS = 30.0  # recordings of the stage (R, or --out with a window) sample the displayed picture at this rate


class Capture:
    """Recording toggles and screenshots of the stage's displayed picture."""

    def __init__(self, displayed: Callable[[], np.ndarray | None], notify: Callable[[str], None]) -> None:
        self._displayed = displayed  # the picture the stage shows now (no HUD)
        self._notify = notify
        self._recorder: Any = None
        self._audio: Any = None

    @property
    def recording(self) -> bool:
        """Whether a recording is running."""
        return self._recorder is not None

    def toggle_recording(self, audio: Any = None, path: Path | None = None) -> None:
        """Start a recording (to path, or a timestamped file in the working folder) or stop the running one."""
        from livekit.outputs.recording import open_frame_writer

        if self._recorder is None:
            path = path or Path.cwd() / time.strftime("livekit-%Y%m%d-%H%M%S.mp4")
            rate = audio_rate(audio)
            self._recorder = open_frame_writer(path, fps=RECORD_FPS, audio_sample_rate=rate)
            if rate is not None:  # the live input goes into the file beside the picture
                self._audio = audio
                audio.tap = self._recorder.add_audio
            self._notify(f"recording {path.name}")
        else:
            self.stop()
            self._notify("recording saved")

    def tick(self, now_s: float) -> None:
        """Give the running recording the displayed picture of this tick."""
        if self._recorder is not None:
            frame = self._displayed()
            if frame is not None:
                self._recorder.write(frame, now_s)

    def screenshot(self) -> Path | None:
        """Save the displayed picture as a PNG in the working folder; the path, or None when nothing shows yet."""
        from livekit.outputs.recording import save_png

        frame = self._displayed()
        if frame is None:
            return None
        path = Path.cwd() / time.strftime("livekit-%Y%m%d-%H%M%S.png")
        save_png(path, frame)
        self._notify(f"saved {path.name}")
        return path

    def stop(self) -> None:
        """Close the running recording, if any (the file stays playable)."""
        if self._audio is not None:
            self._audio.tap = None
            self._audio = None
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None


def audio_rate(audio: Any) -> int | None:
    """Sample rate of the running audio input, or None when there is no audio to record."""
    if audio is None:
        return None
    rate = getattr(audio, "sample_rate", None) or getattr(getattr(audio, "analyzer", None), "sample_rate", None)
    return int(rate) if rate else None
