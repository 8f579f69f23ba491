"""ControlNet through `livekit run`: a tiny random SD model plus a tiny random ControlNet, headless, end to end."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from livekit.cli import main
from livekit.outputs.recording import save_png
from livekit.show.inputs import InputOptions
from livekit.show.picture_feed import read_still
from tests.integration.helpers import ShowThread, free_udp_port, probe_sketch


def _sketch(path: Path, model: Path, extra: str = "") -> Path:
    """A static sketch (nothing moves unless the control picture or control_scale does) on the tiny SD model."""
    return probe_sketch(path, ["red"], extra, imports="Sketch, video", model=model)


def _disc(path: Path) -> Path:
    """A bright disc on a dark ground: canny finds its rim."""
    yy, xx = np.mgrid[:64, :64]
    disc = (((yy - 32) ** 2 + (xx - 32) ** 2) < 15**2).astype(np.uint8) * 200 + 30
    save_png(path, np.repeat(disc[:, :, None], 3, axis=2))
    return path


def _frames(folder: Path) -> list[np.ndarray]:
    return [read_still(p, folder).astype(np.int16) for p in sorted(folder.glob("*.png"))]


def _run(sketch: Path, out: Path, frames: int = 6) -> list[np.ndarray]:
    args = ["run", str(sketch), "--headless", "--frames", str(frames), "--out", str(out), "--osc-port", "0",
            "--no-reload"]
    assert main(args) == 0
    return _frames(out)


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_scale_zero_is_no_controlnet_and_an_osc_knob_fades_the_structure_in(
        tiny_sd_model: Path, tiny_controlnet: Path, tmp_path: Path) -> None:
    from pythonosc.udp_client import SimpleUDPClient

    plain = _run(_sketch(tmp_path / "plain.py", tiny_sd_model), tmp_path / "plain")
    _disc(tmp_path / "disc.png")
    sketch = _sketch(tmp_path / "cn.py", tiny_sd_model, f"    controlnet = {str(tiny_controlnet)!r}\n"
                     "    control = 'disc.png'\n    control_mode = 'canny'\n    control_scale = 0.0\n")
    port = free_udp_port()
    run = ShowThread(sketch, tmp_path / "out", inputs=InputOptions(osc_port=port), keep_frames=True).start()
    try:
        run.wait_frames(len(plain))
        assert type(run.show.engine.model).__name__ == "ControlledModel"
        for ours, theirs in zip(run.frames, plain):  # scale 0: the frames of the model without a ControlNet
            assert np.abs(ours.astype(np.int16) - theirs).max() <= 1
        client = SimpleUDPClient("127.0.0.1", port)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and run.show.last_values["control_scale"] != pytest.approx(2.0):
            client.send_message("/livekit/control_scale", 2.0)  # a knob turned up over OSC
            time.sleep(0.05)
        assert run.show.last_values["control_scale"] == pytest.approx(2.0)
        turned = len(run.frames)
        run.wait_frames(turned + run.show.engine.latency_frames + 4)
    finally:
        run.stop()
    assert _diff(run.frames[-1], plain[-1]) > 2.0, "the ControlNet's structure faded in"
    assert _diff(run.frames[turned - 1], plain[-1]) <= 1.0


def test_the_frames_follow_a_live_control_picture(tiny_sd_model: Path, tiny_controlnet: Path,
                                                   tmp_path: Path) -> None:
    from tests.livekit.picture.test_sources import make_clip

    make_clip(tmp_path / "clip.mp4", [(230, 0, 0)] * 2 + [(0, 0, 230)] * 2, seconds_each=0.5)  # 1 s red, 1 s blue
    extra = f"    controlnet = {str(tiny_controlnet)!r}\n    control_mode = 'none'\n"
    still = tmp_path / "red.png"
    save_png(still, np.full((48, 64, 3), (230, 0, 0), np.uint8))
    red = _run(_sketch(tmp_path / "still.py", tiny_sd_model, extra + "    control = 'red.png'\n"), tmp_path / "s")
    assert _diff(red[-1], red[2]) == 0.0  # a still control picture: a still picture
    sketch = _sketch(tmp_path / "live.py", tiny_sd_model, extra + "    control = video('clip.mp4', loop=True)\n")
    run = ShowThread(sketch, tmp_path / "out", keep_frames=True).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (len(run.frames) < 10 or max(
                _diff(f, run.frames[2]) for f in run.frames[2:]) < 0.3):
            run.wait_frames(len(run.frames) + 1, timeout_s=1.0)
        source = run.show.control_pictures.live
        assert source is not None and source.kind == "video file"
    finally:
        run.stop()
    moved = max(_diff(f, run.frames[2]) for f in run.frames[2:])
    assert moved >= 0.3, "a new control picture must reach the model, never skipped as a static frame"
    assert min(_diff(f, red[-1]) for f in run.frames[2:]) <= 0.3, "the clip's red part looks like the red still"
    assert run.show.control_pictures.live is None and not source._thread.is_alive()  # closed at the end


def test_bad_controlnet_settings_fail_at_startup_in_one_line(tiny_sd_model: Path, tiny_controlnet: Path,
                                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_png(tmp_path / "pic.png", np.zeros((64, 64, 3), np.uint8))
    cases = {
        "    model = 'builtin'\n": "has no UNet",
        f"    controlnet = {str(tmp_path / 'nope')!r}\n": "cannot load controlnet",
        "    control_mode = 'depth'\n": "unknown control_mode 'depth'",
    }
    for i, (extra, message) in enumerate(cases.items()):
        if "controlnet =" not in extra:
            extra += f"    controlnet = {str(tiny_controlnet)!r}\n"
        sketch = _sketch(tmp_path / f"bad{i}.py", tiny_sd_model, extra + "    control = 'pic.png'\n")
        assert main(["run", str(sketch), "--headless", "--frames", "2", "--out", str(tmp_path / f"o{i}"),
                     "--osc-port", "0", "--no-reload"]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("livekit run:")]
        assert len(err) == 1 and message in err[0], err
    assert "('canny', 'none')" in err[0]
    assert not list(tmp_path.glob("o*/*.png")), "refused before the show started"


def test_hot_reload_to_a_missing_controlnet_keeps_the_model_and_a_good_one_loads_in_the_background(
        tiny_sd_model: Path, tiny_controlnet: Path, tmp_path: Path) -> None:
    save_png(tmp_path / "pic.png", np.full((64, 64, 3), 200, np.uint8))
    sketch = _sketch(tmp_path / "probe.py", tiny_sd_model)
    run = ShowThread(sketch, tmp_path / "out").start()
    try:
        run.wait_frames(3)
        model = run.show.worker.engine.model
        for k, controlnet in enumerate((tmp_path / "nope", tiny_controlnet), start=1):
            _sketch(sketch, tiny_sd_model, f"    controlnet = {str(controlnet)!r}\n    control = 'pic.png'\n")
            os.utime(sketch, (time.time() + k, time.time() + k))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not (
                    "cannot load controlnet" in (run.show.last_error or "") if k == 1
                    else type(run.show.worker.engine.model).__name__ == "ControlledModel"):
                time.sleep(0.05)
            if k == 1:
                assert "keeping the current model" in run.show.last_error
                count = len(run.means)
                run.wait_frames(count + 3)  # the show goes on with the model it had
                assert run.show.worker.engine.model is model
        assert type(run.show.worker.engine.model).__name__ == "ControlledModel"
        assert run.show.worker.engine.model.base is not model  # loaded afresh, beside the playing one
    finally:
        run.stop()
