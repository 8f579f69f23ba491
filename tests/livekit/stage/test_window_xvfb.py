"""The stage on a real X server (Xvfb): screenshot the X screen itself with the HUD on, windowed and fullscreen.

Xvfb's -fbdir keeps its framebuffer in an XWD file, so the screenshot is what X would send to a monitor, read with
nothing but numpy. The stage runs in a child process because SDL picks its video driver once per process.
Run this file directly (python tests/livekit/test_renderer_xvfb.py OUT.png) to get the screenshots for a look.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

SCREEN_PX = (1280, 720)
FRAME_PX = (512, 512)


def read_xwd(path: Path) -> np.ndarray:
    """An (H,W,3) uint8 RGB image from an XWD file of a 24/32-bit TrueColor screen (Xvfb's framebuffer)."""
    data = path.read_bytes()
    header = np.frombuffer(data[:100], dtype=">u4")
    header_size, width, height, byte_order = int(header[0]), int(header[4]), int(header[5]), int(header[7])
    bits_per_pixel, bytes_per_line, ncolors = int(header[11]), int(header[12]), int(header[19])
    masks = [int(m) for m in header[14:17]]
    assert bits_per_pixel == 32, f"expected a 32-bit framebuffer, got {bits_per_pixel} bits per pixel"
    start = header_size + 12 * ncolors
    rows = np.frombuffer(data, dtype="<u4" if byte_order == 0 else ">u4", count=height * bytes_per_line // 4,
                         offset=start).reshape(height, bytes_per_line // 4)[:, :width]
    channels = [(rows & m) >> ((m & -m).bit_length() - 1) for m in masks]  # shift each mask down to bit 0
    return np.stack(channels, axis=-1).astype(np.uint8)


def plasma(i: int) -> np.ndarray:
    """A colourful test frame that drifts with i."""
    w, h = FRAME_PX
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) / 64.0
    t = i * 0.35
    v = np.sin(x + t) + np.sin(0.7 * y - t) + np.sin(0.5 * (x + y) + 0.5 * t) + np.sin(np.hypot(x - 4, y - 4) - t)
    rgb = np.stack([np.sin(v * 1.3), np.sin(v * 1.3 + 2.1), np.sin(v * 1.3 + 4.2)], axis=-1)
    return ((rgb * 0.5 + 0.5) * 255).astype(np.uint8)


def child(out_dir: Path, fb_file: Path) -> None:
    """Run the stage on $DISPLAY with the HUD and a 10 frames/s generator; save X screenshots; print stats JSON."""
    import pygame

    from livekit.outputs.recording import save_png
    from livekit.stage.window import HudInfo, Stage, StageConfig

    stage = Stage(StageConfig(size_px=(1120, 630), show_hud=True, title="livekit xvfb test"))
    stop = threading.Event()
    frames = [plasma(i) for i in range(12)]

    def generate() -> None:
        i = 0
        while not stop.wait(0.1):
            stage.submit(frames[i % len(frames)], time.monotonic())
            i += 1

    def run_for(seconds: float, beat_start: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = time.monotonic()
            phase = ((now - beat_start) * 128 / 60) % 1.0
            stage.set_hud(HudInfo(latency_ms=96.0, model="builtin", sampler="dpmpp_2m", steps=4, scene="2",
                                  params={"prompt mix": 0.62, "seed walk": 0.25, "guidance": 0.8, "delta": 0.45,
                                          "noise speed": 0.1, "zoom": 1.0},
                                  bands={"sub": 0.8, "low": 0.65, "mid": 0.4, "high": 0.25, "air": 0.1},
                                  beat_phase=phase, bpm=128.0, midi_last_s=now - 0.05, osc_last_s=now - 3.0,
                                  recording=True, last_error="OSC /livekit/zoom: expected a float, got 'fast' "
                                                              "(reported once; the show goes on)"))
            stage.tick()

    with stage:
        producer = threading.Thread(target=generate, daemon=True)
        producer.start()
        start = time.monotonic()
        run_for(1.5, start)
        intervals = stage.display_intervals_s()[-60:]
        stats = {"pacing": stage.pacing, "display_hz": stage.display_hz, "displayed_fps": stage.displayed_fps,
                 "generated_fps": stage.generated_fps, "errors": stage.errors,
                 "p99_ratio": float(np.percentile(intervals, 99) * stage.display_hz)}
        save_png(out_dir / "windowed.png", read_xwd(fb_file))
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_f, mod=0))
        run_for(0.6, start)
        stats["fullscreen"] = stage.fullscreen
        save_png(out_dir / "fullscreen.png", read_xwd(fb_file))
        stop.set()
        producer.join()
    print(json.dumps(stats), flush=True)


def start_xvfb(fb_dir: Path) -> tuple[subprocess.Popen, str]:
    """Start Xvfb on a free display number (it picks one and reports it through -displayfd)."""
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{SCREEN_PX[0]}x{SCREEN_PX[1]}x24",
         "-fbdir", str(fb_dir), "-nolisten", "tcp"],
        pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    number = b""
    deadline = time.monotonic() + 10
    while not number.endswith(b"\n") and time.monotonic() < deadline:
        chunk = os.read(read_end, 16)
        if not chunk:
            break
        number += chunk
    os.close(read_end)
    if not number.strip():
        server.kill()
        raise RuntimeError("Xvfb did not report a display number")
    return server, f":{number.decode().strip()}"


def run_stage_on_xvfb(out_dir: Path) -> dict:
    """Start Xvfb, run child() against it, stop Xvfb; return the child's stats."""
    fb_dir = out_dir / "fb"
    fb_dir.mkdir(parents=True, exist_ok=True)
    server, display = start_xvfb(fb_dir)
    try:
        env = {**os.environ, "DISPLAY": display, "SDL_VIDEODRIVER": "x11", "SDL_AUDIODRIVER": "dummy"}
        result = subprocess.run([sys.executable, __file__, "--child", str(out_dir), str(fb_dir / "Xvfb_screen0")],
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"stage child failed:\n{result.stdout}\n{result.stderr}"
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(timeout=10)


def load_png(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_stage_on_a_real_x_server(tmp_path: Path) -> None:
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb not found: install Debian's xvfb (apt-get install xvfb); .ci/run does this", pytrace=False)
    stats = run_stage_on_xvfb(tmp_path)
    print(stats)
    shutil.copy(tmp_path / "windowed.png", Path("/tmp/livekit_stage_xvfb_windowed.png"))
    shutil.copy(tmp_path / "fullscreen.png", Path("/tmp/livekit_stage_xvfb_fullscreen.png"))
    assert stats["errors"] == 0 and stats["fullscreen"]
    assert stats["generated_fps"] > 5  # the generator thread keeps running while the stage presents
    assert stats["displayed_fps"] > 8  # llvmpipe composites on shared CI cores; test_renderer measures smoothness

    windowed = load_png(tmp_path / "windowed.png").astype(int)
    w, h = SCREEN_PX
    # a 1120x630 window centred on the 1280x720 screen (no window manager, so no decorations)
    x0, y0 = (w - 1120) // 2, (h - 630) // 2
    assert windowed[:y0 - 2].max() == 0 and windowed[h - y0 + 2:].max() == 0  # outside the window: bare screen
    frame_x0 = x0 + (1120 - 630) // 2  # fit: the square frame is pillarboxed inside the window
    assert windowed[y0 + 600, x0 + 50].max() == 0 and windowed[y0 + 600, frame_x0 + 10].max() > 0  # below the HUD
    right_half = windowed[y0 + 20:y0 + 610, frame_x0 + 330:frame_x0 + 620]
    assert right_half.std(axis=(0, 1)).min() > 30  # the colourful generated frame is on screen
    hud = windowed[y0 + 20:y0 + 200, x0 + 20:x0 + 300]
    assert hud.mean() < 90 and (hud.max(axis=-1) > 200).mean() > 0.02  # dark panel with bright text and bars

    fullscreen = load_png(tmp_path / "fullscreen.png").astype(int)
    fx0 = (w - h) // 2  # fullscreen at the display size: the square frame is h tall, centred
    assert fullscreen[:, fx0 + h // 2:fx0 + h - 4].std(axis=(0, 1)).min() > 30
    assert fullscreen[h // 2, 4].max() == 0 and fullscreen[h // 2, w - 4].max() == 0  # pillarbox bars


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) == 2:
        print(run_stage_on_xvfb(Path(sys.argv[1])))
    else:
        sys.exit("usage: python tests/livekit/test_renderer_xvfb.py OUT_DIR")
