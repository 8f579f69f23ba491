"""Control-to-frame latency through OSC, measured the way a VJ sees it (a benchmark, not a timed test).

    python -m livekit.latency --steps 1 2 4 --trials 12

A headless show on the builtin model crossfades two prompts (`morph = osc("/morph")`); each trial sends /morph 0 or 1
through a real UDP socket and watches the frames that follow. For every frame after the message it computes how much
of the colour change has arrived (0 = the old picture, 1 = the new one) and reports, per step count, the median
frame number (1 = the first frame after the message) and milliseconds at which >= 1% and >= 90% of the change shows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pythonosc.udp_client import SimpleUDPClient

from controllers.osc import free_udp_port
from livekit.show.inputs import InputOptions
from livekit.show.loop import RunOptions, Show

_SKETCH = """from livekit import Sketch, osc

class Latency(Sketch):
    prompts = ["red", "blue"]
    size = ({w}, {h})
    steps = {steps}
    sampler = "lcm"
    fps = {fps}
    morph = osc("/morph")
"""


@dataclass(frozen=True)
class LatencyResult:
    """Medians over the trials of one step count."""

    steps: int
    trials: int
    first_frame: float  # frame number (1 = the first after the message) where >= 1% of the change shows
    first_ms: float
    most_frame: float  # frame number where >= 90% of the change shows
    most_ms: float
    worst_most_ms: float


def measure(steps: int, trials: int = 12, fps: float = 30.0, size: tuple[int, int] = (64, 64)) -> LatencyResult:
    """Run one headless show with `steps` denoising steps and time `trials` prompt switches through OSC."""
    folder = Path(tempfile.mkdtemp(prefix="livekit-latency-"))
    sketch = folder / "latency.py"
    sketch.write_text(_SKETCH.format(w=size[0], h=size[1], steps=steps, fps=fps), encoding="utf-8")
    frames: list[tuple[float, np.ndarray]] = []
    lock = threading.Lock()

    def hook(frame: np.ndarray, _info: object) -> None:
        with lock:
            frames.append((time.monotonic(), frame.reshape(-1, 3).mean(axis=0)))

    port = free_udp_port()
    show = Show(RunOptions(sketch=sketch, headless=True, reload=False, inputs=InputOptions(osc_port=port)),
                status=lambda _line: None, frame_hook=hook)
    runner = threading.Thread(target=show.run, name="latency-show", daemon=True)
    runner.start()
    first, most = [], []
    sender = SimpleUDPClient("127.0.0.1", port)
    try:
        deadline = time.monotonic() + 60
        while not frames and runner.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        sender.send_message("/morph", 0.0)
        time.sleep(1.0)  # the stream settles on the first prompt
        for trial in range(trials):
            target = 1.0 if trial % 2 == 0 else 0.0
            with lock:
                before = frames[-1][1]
            t0 = time.monotonic()
            sender.send_message("/morph", target)
            time.sleep(max(1.0, (steps + 6) / fps))  # long enough for the full effect
            with lock:
                after_frames = [(t, m) for t, m in frames if t > t0]
            if len(after_frames) < 2:
                continue
            change = after_frames[-1][1] - before
            norm = float(change @ change)
            if norm < 1.0:  # the two prompts' colours must differ visibly
                continue
            fractions = [float((m - before) @ change) / norm for _, m in after_frames]
            hit1 = next((i for i, f in enumerate(fractions) if f >= 0.01), None)
            hit90 = next((i for i, f in enumerate(fractions) if f >= 0.90), None)
            if hit1 is not None and hit90 is not None:
                first.append((hit1 + 1, (after_frames[hit1][0] - t0) * 1000.0))
                most.append((hit90 + 1, (after_frames[hit90][0] - t0) * 1000.0))
    finally:
        sender.close()
        show.stop_event.set()
        runner.join(5.0)
    if not first:
        raise RuntimeError("no trial saw the picture change: is the show producing frames?")
    return LatencyResult(
        steps=steps, trials=len(first), first_frame=statistics.median(f for f, _ in first),
        first_ms=round(statistics.median(ms for _, ms in first), 1), most_frame=statistics.median(f for f, _ in most),
        most_ms=round(statistics.median(ms for _, ms in most), 1), worst_most_ms=round(max(ms for _, ms in most), 1))


def main(argv: list[str] | None = None) -> int:
    """`python -m livekit.latency`: a table (or JSON lines) of control-to-frame latency per step count."""
    p = argparse.ArgumentParser(prog="python -m livekit.latency", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not args.json:
        print("| steps | trials | >=1% at frame | >=1% ms | >=90% at frame | >=90% ms | worst >=90% ms |")
        print("|---|---|---|---|---|---|---|")
    for steps in args.steps:
        r = measure(steps, args.trials, args.fps)
        if args.json:
            print(json.dumps(asdict(r)), flush=True)
        else:
            print(f"| {r.steps} | {r.trials} | {r.first_frame:g} | {r.first_ms:.0f} | {r.most_frame:g} | "
                  f"{r.most_ms:.0f} | {r.worst_most_ms:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
