"""NDI out and in against a second process that uses ndi-python directly (an independent sender/receiver).

NDI's codec is lossy: flat colours come back within a few levels (measured: (200, 50, 20) -> (197, 50, 20.5), pure
blue 255 -> 240 because of YUV range), so mean colours are compared within COLOUR_TOL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import numpy as np
import pytest

pytest.importorskip("NDIlib", reason="NDI tests need ndi-python (pip install ndi-python)")

from livekit.outputs.ndi import NdiOutput  # noqa: E402
from livekit.picture.ndi_in import NdiInput, list_ndi_sources  # noqa: E402

COLOUR_TOL = 8.0  # levels of 255, per channel, on the mean of a flat frame

RECEIVER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import NDIlib as ndi
    assert ndi.initialize()
    settings = ndi.FindCreate(); settings.extra_ips = "127.0.0.1"
    finder = ndi.find_create_v2(settings)
    deadline = time.monotonic() + 10
    source = None
    while source is None and time.monotonic() < deadline:
        ndi.find_wait_for_sources(finder, 200)
        source = next((s for s in ndi.find_get_current_sources(finder) if sys.argv[1] in s.ndi_name), None)
    if source is None:
        print(json.dumps({"error": "not found"}), flush=True); sys.exit(1)
    rc = ndi.RecvCreateV3(); rc.color_format = ndi.RECV_COLOR_FORMAT_RGBX_RGBA
    receiver = ndi.recv_create_v3(rc); ndi.recv_connect(receiver, source)
    got, first = 0, None
    while got < int(sys.argv[2]) and time.monotonic() < deadline + 10:
        kind, video, _a, _m = ndi.recv_capture_v2(receiver, 1000)
        if kind == ndi.FRAME_TYPE_VIDEO:
            data = np.array(video.data[..., :3], dtype=np.float64)
            ndi.recv_free_video_v2(receiver, video)
            now = time.monotonic(); first = first or now; got += 1
            print(json.dumps({"name": source.ndi_name, "shape": list(data.shape), "mean": data.mean((0, 1)).tolist(),
                              "t": now, "elapsed": now - first}), flush=True)
    """
)

SENDER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import NDIlib as ndi
    assert ndi.initialize()
    sc = ndi.SendCreate(); sc.ndi_name = sys.argv[1]; sc.clock_video = False
    sender = ndi.send_create(sc)
    frame = ndi.VideoFrameV2(); frame.FourCC = ndi.FOURCC_VIDEO_TYPE_RGBX
    colours = [tuple(int(c) for c in part.split(",")) for part in sys.argv[2].split("/")]
    seconds = float(sys.argv[3])
    for colour in colours:
        img = np.full((120, 160, 4), 255, np.uint8); img[..., :3] = colour
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            frame.data = img
            ndi.send_send_video_v2(sender, frame)
            time.sleep(1 / 30)
    ndi.send_destroy(sender)
    """
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_a_receiver_in_another_process_sees_livekit_frames() -> None:
    name = unique("lkout")
    colour = (200, 60, 30)
    frame = np.empty((240, 320, 3), np.uint8)
    frame[:] = colour
    with NdiOutput(name) as out:
        stop = threading.Event()

        def render() -> None:  # livekit's display loop, at ~30 frames/s
            while not stop.is_set():
                out.send(frame)
                time.sleep(1 / 30)

        sender = threading.Thread(target=render, daemon=True)
        started = time.monotonic()
        sender.start()
        try:
            receiver = subprocess.run([sys.executable, "-c", RECEIVER, name, "30"], capture_output=True, text=True,
                                      timeout=40)
        finally:
            stop.set()
            sender.join(2)
        sent_fps = out.frames_sent / (time.monotonic() - started)
        reports = [json.loads(line) for line in receiver.stdout.splitlines()]
        assert reports and "error" not in reports[0], receiver.stdout + receiver.stderr
        assert len(reports) == 30
        assert all(r["shape"] == [240, 320, 3] for r in reports)
        assert name in reports[0]["name"] and name in out.source_name
        for r in reports[1:]:
            assert np.allclose(r["mean"], colour, atol=COLOUR_TOL), r["mean"]
        # the receiver keeps up with what livekit sends (a ratio of rates, not a timing)
        received_fps = (len(reports) - 1) / reports[-1]["elapsed"]
        assert received_fps >= 0.9 * sent_fps, f"received {received_fps:.1f} frames/s of {sent_fps:.1f} sent"
        assert out.errors == 0


def test_a_bad_frame_is_counted_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    with NdiOutput(unique("lkbad")) as out:
        assert out.send(np.zeros((8, 8), np.uint8)) is False
        assert out.send(np.zeros((8, 8, 3), np.float32)) is False
        assert out.errors == 2
        assert out.problem is not None and "HxWx3 uint8" in out.problem
        assert sum("NDI output" in r.getMessage() for r in caplog.records) == 1  # reported once
        assert out.send(np.zeros((16, 24, 3), np.uint8)) is True  # and it keeps working
    assert out.send(np.zeros((16, 24, 3), np.uint8)) is False  # closed: no raise either


def test_ndi_in_follows_a_stream_that_turns_red_then_blue_and_reconnects() -> None:
    name = unique("lkin")
    first = subprocess.Popen([sys.executable, "-c", SENDER, name, "255,0,0/0,0,255", "2.0"])
    try:
        assert any(name in s for s in _wait_listed(name)), "list_ndi_sources did not show the sender"
        with NdiInput(name, stall_s=0.5, reconnect_s=0.2) as source:
            assert _wait_colour(source, (255, 0, 0), 8.0), f"never red: {_mean(source)}"
            assert _wait_colour(source, (0, 0, 255), 8.0), f"never blue: {_mean(source)}"
            assert source.latest().shape == (120, 160, 3)
            first.wait(10)
            time.sleep(1.0)  # the sender is gone: the last frame stays, the problem is reported
            assert np.allclose(_mean(source), (0, 0, 255), atol=20)
            assert source.problem is not None
            again = subprocess.Popen([sys.executable, "-c", SENDER, name, "0,255,0", "6.0"])
            try:
                assert _wait_colour(source, (0, 255, 0), 15.0), f"did not reconnect: {_mean(source)}"
            finally:
                again.terminate()
                again.wait(5)
            started = time.monotonic()
        assert time.monotonic() - started < 1.5  # close() joined promptly
    finally:
        first.kill()
        first.wait(5)


def _wait_listed(name: str, timeout_s: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        names = list_ndi_sources(0.5)
        if any(name in n for n in names):
            return names
    return []


def _mean(source: NdiInput) -> np.ndarray | None:
    frame = source.latest()
    return None if frame is None else frame.reshape(-1, 3).mean(0)


def _wait_colour(source: NdiInput, colour: tuple[int, int, int], timeout_s: float) -> bool:
    # pure primaries come back with up to ~15 levels of YUV range loss: compare within 20
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        mean = _mean(source)
        if mean is not None and np.allclose(mean, colour, atol=20):
            return True
        time.sleep(0.02)
    return False


def test_a_sketch_that_declares_an_ndi_output_is_received_by_another_process(tmp_path) -> None:
    from tests.integration.helpers import ShowThread

    name = unique("lksketch")
    sketch = tmp_path / "out.py"
    sketch.write_text("from livekit import Sketch, ndi_out\n\nclass Out(Sketch):\n    prompts = ['red']\n"
                      f"    size = (64, 64)\n    steps = 2\n    sampler = 'lcm'\n    outputs = [ndi_out({name!r})]\n",
                      encoding="utf-8")
    run = ShowThread(sketch, None).start()
    try:
        run.wait_frames(3)
        receiver = subprocess.run([sys.executable, "-c", RECEIVER, name, "5"], capture_output=True, text=True,
                                  timeout=40)
    finally:
        run.stop()
    reports = [json.loads(line) for line in receiver.stdout.splitlines()]
    assert reports and "error" not in reports[0], receiver.stdout + receiver.stderr
    assert reports[-1]["shape"] == [64, 64, 3]  # the generated frame at its real size
    assert any(f"video out: ndi {name!r}" in line for line in run.lines)


def test_an_img2img_run_follows_an_ndi_stream_from_another_process(tmp_path) -> None:
    from tests.integration.helpers import ShowThread

    name = unique("lkimg")
    sender = subprocess.Popen([sys.executable, "-c", SENDER, name, "230,0,0/0,0,230", "3.0"])
    sketch = tmp_path / "ndi_in.py"
    sketch.write_text("from livekit import Sketch, ndi_in\n\nclass In(Sketch):\n    prompts = ['green']\n"
                      "    size = (64, 64)\n    steps = 2\n    sampler = 'lcm'\n    mode = 'img2img'\n"
                      f"    image = ndi_in({name!r})\n    strength = 0.15\n", encoding="utf-8")
    run = ShowThread(sketch, None).start()
    seen: list[str] = []
    try:
        run.wait_frames(1, timeout_s=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not ("red" in seen and "blue" in seen[seen.index("red"):]):
            run.wait_frames(len(run.means) + 1, timeout_s=1.0)
            r, _g, b = run.means[-1]
            seen.append("red" if r > b + 40 else "blue" if b > r + 40 else "other")
    finally:
        run.stop()
        sender.kill()
        sender.wait(5)
    assert "red" in seen and "blue" in seen[seen.index("red"):], seen[-20:]  # red, then blue, as the sender sent
