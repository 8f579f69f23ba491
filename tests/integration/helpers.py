"""Run a Show in a background thread and watch its frames."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from controllers.osc import free_udp_port  # re-exported: tests import it from here
from livekit.show.inputs import InputOptions
from livekit.show.loop import RunOptions, Show

__all__ = ["ShowThread", "free_udp_port"]


class ShowThread:
    """A headless Show running in a thread; frames (mean RGB per frame, and the frames themselves with keep_frames)
    are recorded as they arrive."""

    def __init__(self, sketch: Path, out: Path, inputs: InputOptions = InputOptions(osc_port=0),
                 keep_frames: bool = False, **kw: Any) -> None:
        self.means: list[np.ndarray] = []
        self.frames: list[np.ndarray] | None = [] if keep_frames else None
        self.got = threading.Condition()
        self.lines: list[str] = []
        self.show = Show(RunOptions(sketch=sketch, headless=True, out=out, inputs=inputs, **kw),
                         status=self.lines.append, frame_hook=self._hook)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-show", daemon=True)

    def _hook(self, frame: np.ndarray, info: Any) -> None:
        with self.got:
            if self.frames is not None:
                self.frames.append(frame.copy())
            self.means.append(frame.reshape(-1, 3).mean(axis=0))
            self.got.notify_all()

    def _run(self) -> None:
        try:
            self.show.run()
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def start(self) -> "ShowThread":
        self.thread.start()
        return self

    def wait_frames(self, count: int, timeout_s: float = 30.0) -> int:
        """Wait until at least `count` frames arrived; returns how many."""
        deadline = time.monotonic() + timeout_s
        with self.got:
            while len(self.means) < count and time.monotonic() < deadline:
                if self.error is not None:
                    raise self.error
                self.got.wait(0.05)
            return len(self.means)

    def stop(self, timeout_s: float = 5.0) -> float:
        """Stop the show like Esc does; returns the seconds it took."""
        t0 = time.monotonic()
        self.show.stop_event.set()
        self.thread.join(timeout_s)
        if self.error is not None:
            raise self.error
        return time.monotonic() - t0


def probe_sketch(path: Path, prompts: list[str], extra: str = "", imports: str = "Sketch, Param, midi",
                 model: Path | None = None) -> Path:
    """A small probe sketch (64x64, lcm 2 steps, 30 fps) with `extra` class lines; model None = the builtin."""
    path.write_text(
        f"from livekit import {imports}\n\n"
        "class Probe(Sketch):\n"
        + (f"    model = {str(model)!r}\n" if model is not None else "")
        + f"    prompts = {prompts!r}\n"
        "    size = (64, 64)\n"
        "    sampler = 'lcm'\n"
        "    steps = 2\n"
        "    fps = 30\n"
        f"{extra}",
        encoding="utf-8",
    )
    return path
