"""Display-loop smoothness: a thread generates frames at a low rate while the stage runs at the display rate.

`python -m livekit.stage.bench` prints the report; `livekit bench` can call measure_smoothness().
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass

import numpy as np

from livekit.stage.window import HudInfo, Stage, StageConfig


@dataclass(frozen=True)
class SmoothnessReport:
    """Displayed-frame intervals as multiples of the display period, and how often the picture moved."""

    display_hz: float  # the rate the stage paced to
    pacing: str  # "vsync" or "clock"
    p50_ratio: float  # median present interval / display period
    p99_ratio: float  # 99th percentile present interval / display period (smooth: <= 1.5)
    max_ratio: float  # longest present interval / display period
    displayed_fps: float  # presents per second over the run
    generated_fps: float  # frames per second the generator delivered
    moving_fraction: float  # share of display frames whose picture differed from the one before

    def summary(self) -> str:
        """One line for a terminal."""
        return (f"display {self.displayed_fps:.1f} fps ({self.pacing}, {self.display_hz:.0f} Hz), generation "
                f"{self.generated_fps:.1f} fps: interval/period p50 {self.p50_ratio:.3f} p99 {self.p99_ratio:.3f} "
                f"max {self.max_ratio:.3f}; picture moved on {100 * self.moving_fraction:.0f}% of display frames")


def _pattern(i: int, frame_px: tuple[int, int]) -> np.ndarray:
    """A colourful frame that drifts with i (diagonal bands)."""
    w, h = frame_px
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = (x + y) / 40.0 + i * 0.4
    rgb = np.stack([np.sin(phase), np.sin(phase + 2.1), np.sin(phase + 4.2)], axis=-1)
    return ((rgb * 0.5 + 0.5) * 255).astype(np.uint8)


def measure_smoothness(duration_s: float = 3.0, generated_fps: float = 10.0, display_hz: float = 60.0,
                       frame_px: tuple[int, int] = (256, 256), window_px: tuple[int, int] = (960, 540),
                       show_hud: bool = True, warmup_s: float = 0.5, vsync: bool = False,
                       ndi_out: str | None = None, fullscreen: bool = False) -> SmoothnessReport:
    """Run a Stage for duration_s with a generator thread at generated_fps and report the display intervals
    (with ndi_out, every displayed picture is also sent as that NDI source, as `livekit run --ndi-out` does)."""
    patterns = [_pattern(i, frame_px) for i in range(8)]
    stage = Stage(StageConfig(size_px=window_px, vsync=vsync, display_hz=display_hz, show_hud=show_hud,
                              fullscreen=fullscreen))
    outputs = None
    if ndi_out:
        from livekit.outputs.video import OutputSpec, VideoOutputs

        outputs = VideoOutputs([OutputSpec("ndi", ndi_out)], fps=display_hz)
    stop = threading.Event()

    def generate() -> None:
        i = 0
        next_s = time.monotonic()
        while not stop.is_set():
            stage.submit(patterns[i % len(patterns)], time.monotonic())
            i += 1
            next_s += 1.0 / generated_fps
            stop.wait(max(0.0, next_s - time.monotonic()))

    with stage:
        producer = threading.Thread(target=generate, name="bench-generator", daemon=True)
        producer.start()
        stage.set_hud(HudInfo(model="bench", sampler="none", steps=0, params={"a": 0.3, "b": 0.7},
                              bands={"low": 0.6, "mid": 0.4, "high": 0.2}, bpm=120.0))
        end_warmup = time.monotonic() + warmup_s
        while time.monotonic() < end_warmup:
            stage.tick()
        start = time.monotonic()
        moved, ticks, last = 0, 0, None
        while time.monotonic() - start < duration_s:
            stage.tick()
            frame = stage.displayed_frame()
            if outputs is not None and frame is not None:
                outputs.send(frame, key=id(frame))
            probe = None if frame is None else frame[::32, ::32].copy()
            moved += int(last is not None and probe is not None and not np.array_equal(probe, last))
            last, ticks = probe, ticks + 1
        elapsed = time.monotonic() - start
        stop.set()
        producer.join()
        if outputs is not None:
            outputs.close()
        ratios = stage.display_intervals_s()[-min(ticks, 599):] * stage.display_hz  # the measured presents only
        return SmoothnessReport(display_hz=stage.display_hz, pacing=stage.pacing,
                                p50_ratio=float(np.percentile(ratios, 50)), p99_ratio=float(np.percentile(ratios, 99)),
                                max_ratio=float(ratios.max()), displayed_fps=ticks / elapsed,
                                generated_fps=stage.generated_fps, moving_fraction=moved / max(1, ticks - 1))


def main() -> None:
    """Command line: python -m livekit.stage.bench [--seconds S] [--generated-fps F] [--display-hz H]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--generated-fps", type=float, default=10.0)
    parser.add_argument("--display-hz", type=float, default=60.0)
    parser.add_argument("--no-hud", action="store_true")
    parser.add_argument("--vsync", action="store_true", help="let presents wait for the refresh where possible")
    parser.add_argument("--frame", default="256x256", help="generated frame size WxH")
    parser.add_argument("--window", default="960x540", help="window size WxH (with --fullscreen: the display's)")
    parser.add_argument("--fullscreen", action="store_true")
    parser.add_argument("--ndi-out", default=None, metavar="NAME", help="also send every displayed picture over NDI")
    args = parser.parse_args()
    frame_px, window_px = (tuple(int(v) for v in a.lower().split("x")) for a in (args.frame, args.window))
    report = measure_smoothness(args.seconds, args.generated_fps, args.display_hz, frame_px=frame_px,
                                window_px=window_px, show_hud=not args.no_hud, vsync=args.vsync,
                                ndi_out=args.ndi_out, fullscreen=args.fullscreen)
    print(report.summary())


if __name__ == "__main__":
    main()
