"""Picture and sound in sync over a whole recording: `python -m livekit.av_sync [--seconds 60] [--window]`.

Plays a click track (120 BPM) into a show whose picture flashes bright on every click (`morph = audio.level`
between "dark" and "bright"; the builtin model gives "black" and "white" alike its white-on-black palette), records
it to an mp4 (headless, or with the window on SDL's dummy driver), then finds
the clicks in the file's audio track and the flashes in its video track and prints the click-to-flash offset at the
start and at the end of the file. The offset itself is the show's reaction time (analysis plus the frames in
flight); what must not happen is drift: start and end should agree within one frame.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from livekit.show.inputs import InputOptions
from livekit.show.loop import RunOptions, Show

SKETCH = '''from livekit import Sketch, audio


class Flash(Sketch):
    prompts = ["dark", "bright"]
    size = (64, 64)
    fps = {fps}
    morph = audio.level.range(0.0, 1.0)
'''


@dataclass(frozen=True)
class SyncReport:
    """Click-to-flash offsets (seconds) measured in one recording."""

    seconds: float  # length of the video track
    clicks: int
    matched: int
    offset_start_s: float  # median offset of the first five matched clicks
    offset_end_s: float  # median offset of the last five
    drift_s: float  # end - start
    frame_s: float  # one frame at the sketch's fps


def write_click_track(path: Path, seconds: float, bpm: float = 120.0, rate: int = 48000) -> Path:
    """A WAV of short 60 Hz bursts on every beat, silence between."""
    import soundfile

    n = int(seconds * rate)
    audio = np.zeros(n, dtype=np.float32)
    burst = (0.9 * np.sin(2 * np.pi * 60 * np.arange(2400) / rate) * np.exp(-np.arange(2400) / 900)).astype(np.float32)
    for start in range(0, n - len(burst), int(rate * 60 / bpm)):
        audio[start : start + len(burst)] += burst
    soundfile.write(str(path), audio, rate)
    return path


def record(folder: Path, seconds: float, window: bool = False, fps: float = 30.0) -> Path:
    """Run the flash sketch on the click track for `seconds` and return the recorded mp4."""
    sketch = folder / "flash.py"
    sketch.write_text(SKETCH.format(fps=fps))
    clicks = write_click_track(folder / "clicks.wav", seconds + 30.0)  # longer than the run: it never loops
    out = folder / "show.mp4"
    if window:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    show = Show(RunOptions(sketch=sketch, headless=not window, out=out, reload=False,
                           inputs=InputOptions(osc_port=0, audio_in=str(clicks))), status=lambda _: None)
    runner = threading.Thread(target=show.run, name="av-sync-show", daemon=True)
    runner.start()
    deadline = time.monotonic() + 60.0
    while show.frames_out < 3 and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(seconds)
    show.stop_event.set()
    runner.join(timeout=20.0)
    return out


def _rising(values: np.ndarray, times: np.ndarray, threshold: float, gap_s: float) -> list[float]:
    """Times where values cross above threshold, at least gap_s after the previous crossing."""
    above = values > threshold
    found: list[float] = []
    for i in np.flatnonzero(above[1:] & ~above[:-1]) + 1:
        if not found or times[i] - found[-1] >= gap_s:
            found.append(float(times[i]))
    return found


def analyse(path: Path, fps: float = 30.0) -> SyncReport:
    """Clicks in the audio track, flashes in the video track, and the offsets between them."""
    import av

    with av.open(str(path)) as container:
        frames = [(float(f.time), float(f.to_ndarray(format="gray").mean())) for f in container.decode(video=0)]
        container.seek(0)
        chunks = [f for f in container.decode(audio=0)]
    rate = chunks[0].sample_rate
    start_s = float(chunks[0].time or 0.0)
    samples = np.concatenate([np.abs(c.to_ndarray()).max(axis=0) for c in chunks])
    t_audio = start_s + np.arange(len(samples)) / rate
    clicks = _rising(samples, t_audio, 0.3, 0.25)
    t_video = np.array([t for t, _ in frames])
    bright = np.array([b for _, b in frames])
    mid = 0.5 * (float(np.percentile(bright, 5)) + float(np.percentile(bright, 95)))
    flashes = _rising(bright, t_video, mid, 0.25)
    offsets = []
    for c in clicks:
        later = [f - c for f in flashes if 0.0 <= f - c < 0.45]  # the flash this click caused (beats are 0.5 s apart)
        if later:
            offsets.append(later[0])
    if len(offsets) < 10:
        raise RuntimeError(f"only {len(offsets)} click/flash pairs found ({len(clicks)} clicks, {len(flashes)} flashes)")
    start, end = statistics.median(offsets[:5]), statistics.median(offsets[-5:])
    return SyncReport(seconds=float(t_video[-1] + 1 / fps), clicks=len(clicks), matched=len(offsets),
                      offset_start_s=round(start, 4), offset_end_s=round(end, 4), drift_s=round(end - start, 4),
                      frame_s=round(1 / fps, 4))


def main(argv: list[str] | None = None) -> int:
    """Record, analyse and print the offsets (one JSON line with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the recording")
    parser.add_argument("--window", action="store_true", help="record what the window shows (SDL dummy driver)")
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="livekit-av-sync-") as tmp:
        report = analyse(record(Path(tmp), args.seconds, window=args.window))
    if args.json:
        print(json.dumps(report.__dict__))
    else:
        print(f"{report.seconds:.1f} s recorded ({'window' if args.window else 'headless'}), {report.matched} of "
              f"{report.clicks} clicks matched to a flash: offset {1000 * report.offset_start_s:.0f} ms at the "
              f"start, {1000 * report.offset_end_s:.0f} ms at the end, drift {1000 * report.drift_s:+.0f} ms "
              f"(one frame = {1000 * report.frame_s:.0f} ms)")
    return 0 if abs(report.drift_s) <= report.frame_s else 1


if __name__ == "__main__":
    raise SystemExit(main())
