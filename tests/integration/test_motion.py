"""Motion: with every knob still, a sketch's `motion` keeps the builtin model's patterns moving frame after frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.integration.helpers import ShowThread

SKETCH = """from livekit import Sketch

class Tunnel(Sketch):
    prompts = ["cosmic tunnel"]
    size = (128, 128)
    fps = 30
    motion = {motion}
"""


def _frames(tmp_path: Path, motion: float) -> list[np.ndarray]:
    sketch = tmp_path / f"m{motion}.py"
    sketch.write_text(SKETCH.format(motion=motion), encoding="utf-8")
    frames: list[np.ndarray] = []
    run = ShowThread(sketch, out=None)  # headless, no files: frames arrive through the hook
    run.show.frame_hook = lambda frame, info: frames.append(frame.astype(np.float64))
    run.start()
    try:
        run.show.stop_event.wait(3.0)
    finally:
        run.stop()
    return frames


def test_motion_moves_a_frozen_picture_and_no_motion_holds_it(tmp_path: Path) -> None:
    still = _frames(tmp_path, 0.0)
    moving = _frames(tmp_path, 0.2)
    assert len(still) > 12 and len(moving) > 12
    change = lambda fs: [np.abs(b - a).mean() for a, b in zip(fs[6:], fs[7:])]  # after the stream filled
    assert max(change(still)) < 0.01  # nothing moves the picture: it holds (and the static skip kicks in)
    assert min(change(moving)) > 0.02  # every new frame moved
    assert max(change(moving)) < 20.0  # ...smoothly, not in cuts
