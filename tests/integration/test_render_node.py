"""A headless render node: no window, no files, frames out over NDI to a receiver in a second process."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("NDIlib", reason="the render node sends NDI (pip install ndi-python)")

from livekit.outputs.video import OutputSpec, VideoOutputs  # noqa: E402
from tests.integration.helpers import ShowThread  # noqa: E402
from tests.livekit.outputs.test_ndi import COLOUR_TOL, RECEIVER  # noqa: E402

SKETCH = "from livekit import Sketch\n\nclass Red(Sketch):\n    prompts = ['red']\n    size = (64, 64)\n    fps = 30\n"


def test_headless_without_out_sends_every_frame_over_ndi(tmp_path: Path) -> None:
    sketch = tmp_path / "red.py"
    sketch.write_text(SKETCH, encoding="utf-8")
    name = f"lk-node-{uuid.uuid4().hex[:6]}"
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, name, "40"], stdout=subprocess.PIPE, text=True)
    run = ShowThread(sketch, out=None, outputs=(OutputSpec("ndi", name),)).start()
    try:
        out, _ = receiver.communicate(timeout=40)
    finally:
        run.stop()
    assert not list(tmp_path.glob("*.png")) and run.show.frames_out > 0  # frames made, no files written
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert rows and "error" not in rows[0], out
    assert len(rows) == 40 and rows[-1]["shape"] == [64, 64, 3]
    sent = np.mean(run.means[-20:], axis=0)
    got = np.mean([r["mean"] for r in rows[-10:]], axis=0)
    assert got[0] > got[1] + 40 and got[0] > got[2] + 40  # red arrives red
    assert np.abs(got - sent).max() < 3 * COLOUR_TOL  # the picture livekit rendered, within NDI's codec loss


def test_an_unknown_output_kind_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown video output 'hdmi'"):
        OutputSpec("hdmi", "x")
    with pytest.raises(ValueError, match="non-empty name"):
        VideoOutputs([OutputSpec("ndi", " ")])


def test_a_failing_output_is_counted_and_never_raises() -> None:
    class Broken:
        name, problem = "broken", None

        def send(self, frame: np.ndarray) -> bool:
            raise RuntimeError("receiver gone")

        def close(self) -> None:
            pass

    outputs = VideoOutputs([])
    outputs.outputs.append(Broken())
    for _ in range(3):
        outputs.send(np.zeros((8, 8, 3), np.uint8))
    assert outputs.errors == 3
