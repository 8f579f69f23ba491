"""`livekit run` end to end: example sketches headless, OSC and MIDI moving the picture, hot reload, shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from livekit.cli import main
from livekit.show.inputs import InputOptions
from tests.integration.helpers import ShowThread, free_udp_port, probe_sketch

ROOT = Path(__file__).resolve().parents[2]
SKETCHES = ["hello", "audio_reactive", "midi_knobs", "touchdesigner_osc", "sd_turbo", "feedback"]


@pytest.mark.parametrize("name", SKETCHES)
def test_example_sketch_runs_headless_and_writes_60_frames(name: str, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    args = ["run", str(ROOT / "sketches" / f"{name}.py"), "--headless", "--frames", "60", "--out", str(out),
            "--osc-port", "0", "--size", "64x64", "--no-reload"]
    if name == "sd_turbo":  # the real model needs a GPU and a download: run its mappings on the tiny random SD
        args += ["--model", "random-sd:tiny"]
    if name == "audio_reactive":  # rehearsal mode: a click track from a file instead of the live input
        args += ["--audio-in", str(_click_track(tmp_path / "clicks.wav"))]
    if name == "midi_knobs":
        args += ["--midi-in", "virtual"]
    assert main(args) == 0
    frames = sorted(out.glob("*.png"))
    assert len(frames) == 60


def _click_track(path: Path, bpm: float = 120.0, seconds: float = 4.0, rate: int = 48000) -> Path:
    import soundfile

    n = int(seconds * rate)
    audio = np.zeros(n, dtype=np.float32)
    period = int(rate * 60 / bpm)
    burst = (0.8 * np.sin(2 * np.pi * 60 * np.arange(2400) / rate) * np.exp(-np.arange(2400) / 600)).astype(np.float32)
    for start in range(0, n - len(burst), period):
        audio[start : start + len(burst)] += burst
    soundfile.write(str(path), audio, rate)
    return path


def _sketch(path: Path, prompts: list[str], extra: str = "") -> Path:
    return probe_sketch(path, prompts, extra)


def _colour(mean: np.ndarray) -> str:
    return "red" if mean[0] > mean[2] + 20 else "blue" if mean[2] > mean[0] + 20 else "neither"


def test_osc_prompt_switch_changes_the_colour_within_the_documented_latency(tmp_path: Path) -> None:
    from pythonosc.udp_client import SimpleUDPClient

    port = free_udp_port()
    run = ShowThread(_sketch(tmp_path / "probe.py", ["red"]), tmp_path / "out",
                     inputs=InputOptions(osc_port=port)).start()
    try:
        run.wait_frames(10)
        assert _colour(run.means[-1]) == "red"
        sent_at = len(run.means)
        SimpleUDPClient("127.0.0.1", port).send_message("/livekit/prompt", "blue")
        latency = run.show.engine.latency_frames + 3  # documented: steps + 3 frames (tick, post, pacing)
        run.wait_frames(sent_at + latency + 1)
        assert _colour(run.means[sent_at + latency]) == "blue", [m.round() for m in run.means[sent_at:]]
    finally:
        run.stop()


def test_midi_cc_through_a_real_jack_port_moves_a_parameter(jack, tmp_path: Path) -> None:
    import mido

    sketch = _sketch(tmp_path / "probe.py", ["red"], "    glow = Param(0.0, range=(0.0, 1.0), source=midi.cc(7))\n")
    backend_name = "mido.backends.rtmidi/UNIX_JACK"
    run = ShowThread(sketch, tmp_path / "out", inputs=InputOptions(osc_port=0, midi_in="virtual",
                                                                   midi_backend=backend_name)).start()
    try:
        run.wait_frames(3)
        with mido.Backend(backend_name).open_output("kontrol", virtual=True) as port:
            jack.connect("RtMidiOut Client:kontrol", "RtMidiIn Client:livekit")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and run.show.last_values["glow"] < 0.99:
                port.send(mido.Message("control_change", channel=0, control=7, value=127))  # a knob held at the top
                time.sleep(0.05)
        assert run.show.last_values["glow"] == pytest.approx(1.0, abs=0.01)
    finally:
        run.stop()


def test_hot_reload_applies_within_a_second_without_reloading_the_model(tmp_path: Path) -> None:
    sketch = _sketch(tmp_path / "probe.py", ["red"])
    run = ShowThread(sketch, tmp_path / "out").start()
    try:
        run.wait_frames(5)
        model = run.show.engine.model
        assert _colour(run.means[-1]) == "red"
        time.sleep(0.05)
        _sketch(sketch, ["blue"])
        os.utime(sketch, (time.time() + 1, time.time() + 1))  # a distinct mtime even on coarse filesystems
        t0, before = time.monotonic(), len(run.means)
        while time.monotonic() - t0 < 3.0 and _colour(run.means[-1]) != "blue":
            time.sleep(0.02)
        assert _colour(run.means[-1]) == "blue"
        assert time.monotonic() - t0 < 1.0 + 0.5  # within 1 s, plus the stream's latency at 30 fps
        assert run.show.worker.engine.model is model  # same model object: not reloaded ...
        assert sum("loading model" in line for line in run.lines) == 1  # ... and no second load was started
        sketch.write_text("from livekit import Sketch\nclass Broken(Sketch:\n", encoding="utf-8")
        os.utime(sketch, (time.time() + 2, time.time() + 2))
        time.sleep(0.6)
        assert "syntax error" in (run.show.last_error or "")
        count = len(run.means)
        run.wait_frames(count + 5)
        assert _colour(run.means[-1]) == "blue" and len(run.means) > before  # the old sketch keeps running
    finally:
        run.stop()


def test_shutdown_joins_every_thread_and_releases_the_osc_port(tmp_path: Path) -> None:
    import socket

    before = {t.ident for t in threading.enumerate()}
    port = free_udp_port()
    run = ShowThread(_sketch(tmp_path / "probe.py", ["red"]), tmp_path / "out",
                     inputs=InputOptions(osc_port=port)).start()
    run.wait_frames(5)
    assert run.stop() < 2.0
    time.sleep(0.1)
    left = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert not left, left
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))  # the port is free again


def test_sigterm_stops_livekit_run_within_two_seconds(tmp_path: Path) -> None:
    sketch = _sketch(tmp_path / "probe.py", ["red"])
    proc = subprocess.Popen([sys.executable, "-m", "livekit.cli", "run", str(sketch), "--headless", "--out",
                             str(tmp_path / "out"), "--osc-port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list((tmp_path / "out").glob("*.png")):
            time.sleep(0.1)
        assert list((tmp_path / "out").glob("*.png")), proc.stdout.read() if proc.poll() is not None else "no frames"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 2.0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_window_run_under_sdl_dummy_records_the_displayed_frames(tmp_path: Path) -> None:
    import av

    out = tmp_path / "show.mp4"
    args = ["run", str(ROOT / "sketches" / "hello.py"), "--frames", "40", "--size", "64x64", "--osc-port", "0",
            "--out", str(out), "--no-reload"]
    assert main(args) == 0
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) >= 10  # 40 generated frames at up to 30 frames/s, sampled at 30 frames/s
    assert frames[0].shape[2] == 3 and frames[-1].mean() > 10  # a picture, not a black screen


def test_devices_lists_displays_and_says_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["devices", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["displays"] and found["displays"][0]["size"][0] > 0
    assert {"midi_inputs", "midi_outputs", "audio_inputs", "problems"} <= set(found)


def test_osc_out_sends_state_and_parameter_values(tmp_path: Path) -> None:
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer

    got: dict[str, float] = {}
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda address, *args: got.setdefault(address, args[0] if args else None))
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sketch = _sketch(tmp_path / "probe.py", ["red"], "    glow = Param(0.25, range=(0.0, 1.0))\n")
    run = ShowThread(sketch, tmp_path / "out",
                     inputs=InputOptions(osc_port=0, osc_out=f"127.0.0.1:{server.server_address[1]}")).start()
    try:
        run.wait_frames(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not {"/livekit/glow", "/livekit/state/bpm"} <= set(got):
            time.sleep(0.05)
    finally:
        run.stop()
        server.shutdown()
        server.server_close()
    assert got["/livekit/glow"] == pytest.approx(0.25)
    assert got["/livekit/state/bpm"] > 0


def test_recording_carries_the_live_audio_when_audio_is_active(tmp_path: Path) -> None:
    import av

    out = tmp_path / "show.mp4"
    args = ["run", str(ROOT / "sketches" / "audio_reactive.py"), "--frames", "40", "--size", "64x64",
            "--osc-port", "0", "--audio-in", str(_click_track(tmp_path / "clicks.wav")), "--out", str(out),
            "--no-reload"]
    assert main(args) == 0
    with av.open(str(out)) as container:
        assert container.streams.video and container.streams.audio
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert samples > 0


def test_keys_reach_the_sketch_and_t_taps_the_tempo(tmp_path: Path) -> None:
    run = ShowThread(ROOT / "sketches" / "hello.py", tmp_path / "out", size=(64, 64)).start()
    try:
        run.wait_frames(3)

        def active_seed() -> int:
            return max(run.show.last_conditioning.seeds, key=lambda sw: sw[1])[0]

        first = active_seed()
        run.show._action("key:n")  # what the stage reports for N; hello.py steps the seed on it
        run.show._action("keyup:n")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and active_seed() == first:
            time.sleep(0.02)
        assert (first, active_seed()) == (7, 42)
        t0 = time.monotonic()
        for k in range(4):  # taps at 120 BPM
            run.show.inputs.tap.tap(t0 + 0.5 * k)
        assert run.show.inputs.tempo(t0 + 1.6).bpm == pytest.approx(120.0, abs=0.5)
    finally:
        run.stop()


def test_midi_out_echoes_a_value_set_over_osc_to_the_knob_that_maps_it(jack, tmp_path: Path) -> None:
    import mido
    from pythonosc.udp_client import SimpleUDPClient

    from controllers.midi_ports import open_input

    backend_name = "mido.backends.rtmidi/UNIX_JACK"
    seen: list[mido.Message] = []
    got = threading.Event()

    def on_led(msg: mido.Message) -> None:
        seen.append(msg)
        if msg.type == "control_change" and msg.control == 2 and msg.value == 64:
            got.set()

    sketch = _sketch(tmp_path / "probe.py", ["red"], "    guidance = midi.cc(2).range(1.0, 3.0)\n")
    port = free_udp_port()
    with open_input(mido.Backend(backend_name), "leds", on_led, virtual=True):
        run = ShowThread(sketch, tmp_path / "out", inputs=InputOptions(
            osc_port=port, midi_out="virtual", midi_backend=backend_name)).start()
        try:
            run.wait_frames(3)
            jack.connect("RtMidiOut Client:livekit", "RtMidiIn Client:leds")
            client = SimpleUDPClient("127.0.0.1", port)
            for _ in range(40):  # the motor fader follows guidance 2.0, the middle of the knob's 1..3 range
                client.send_message("/livekit/guidance", 2.0)
                if got.wait(0.1):
                    break
        finally:
            run.stop()
    assert got.is_set(), seen[-5:]


def test_img2img_sketch_reimagines_its_picture(tmp_path: Path) -> None:
    from livekit.outputs.recording import save_png

    picture = np.zeros((64, 64, 3), dtype=np.uint8)
    picture[..., 0] = 220  # a red picture ...
    save_png(tmp_path / "pic.png", picture)
    sketch = _sketch(tmp_path / "probe.py", ["blue"], "    mode = 'img2img'\n    image = 'pic.png'\n"
                                                      "    strength = 0.15\n")  # ... lightly re-imagined as "blue"
    run = ShowThread(sketch, tmp_path / "out").start()
    try:
        run.wait_frames(6)
        assert _colour(run.means[-1]) == "red"
    finally:
        run.stop()
    missing = _sketch(tmp_path / "broken.py", ["blue"], "    mode = 'img2img'\n    image = 'nope.png'\n")
    with pytest.raises(ValueError, match="nope.png"):
        ShowThread(missing, tmp_path / "out2").show.run()


def test_bad_option_fails_clearly_and_leaves_no_port_open(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    port = free_udp_port()
    args = ["run", str(_sketch(tmp_path / "probe.py", ["red"])), "--headless", "--out", str(tmp_path / "out"),
            "--osc-port", str(port), "--osc-out", "nowhere.invalid:9001"]
    assert main(args) == 2
    assert "--osc-out nowhere.invalid:9001: cannot resolve host" in capsys.readouterr().err
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))  # the OSC server that had started was closed again


def test_cc14_and_encoder_entries_of_a_mapping_file_drive_their_params_through_jack(jack, tmp_path: Path) -> None:
    import mido

    from controllers.learn import MidiMapping, save_mappings

    sketch = _sketch(tmp_path / "probe.py", ["red"], "    glow = Param(0.0, range=(0.0, 1.0))\n"
                     "    spin = Param(0.5, range=(0.0, 1.0))\n")
    mapping_file = tmp_path / "probe.midi.json"
    save_mappings(mapping_file, [MidiMapping("glow", "midi/cc14/0/1", soft_takeover=False),
                                 MidiMapping("spin", "midi/rel/0/20", "twos_complement", soft_takeover=False)])
    written = mapping_file.read_bytes()
    backend_name = "mido.backends.rtmidi/UNIX_JACK"
    run = ShowThread(sketch, tmp_path / "out", inputs=InputOptions(osc_port=0, midi_in="virtual",
                                                                   midi_backend=backend_name)).start()
    try:
        run.wait_frames(3)
        assert any("2 learned MIDI mappings loaded" in line for line in run.lines)
        with mido.Backend(backend_name).open_output("kontrol14", virtual=True) as port:
            jack.connect("RtMidiOut Client:kontrol14", "RtMidiIn Client:livekit")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and run.show.last_values["glow"] < 0.99:
                port.send(mido.Message("control_change", channel=0, control=1, value=127))  # MSB
                port.send(mido.Message("control_change", channel=0, control=33, value=127))  # LSB
                time.sleep(0.05)
            assert run.show.last_values["glow"] == pytest.approx(1.0, abs=0.01)
            start = run.show.last_values["spin"]
            for _ in range(10):
                port.send(mido.Message("control_change", channel=0, control=20, value=1))  # one step clockwise
                time.sleep(0.02)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and run.show.last_values["spin"] <= start:
                time.sleep(0.05)
            assert run.show.last_values["spin"] > start
    finally:
        run.stop()
    assert mapping_file.read_bytes() == written  # nothing was learned: the file is left exactly as it was


def test_a_video_file_drives_an_img2img_run_and_the_frames_follow_it(tmp_path: Path) -> None:
    from tests.livekit.picture.test_sources import make_clip

    make_clip(tmp_path / "clip.mp4", [(230, 0, 0)] * 2 + [(0, 0, 230)] * 2, seconds_each=0.5)  # 1 s red, 1 s blue
    sketch = tmp_path / "live.py"
    sketch.write_text("from livekit import Sketch, video\n\nclass Live(Sketch):\n    prompts = ['green']\n"
                      "    size = (64, 64)\n    sampler = 'lcm'\n    steps = 2\n    fps = 30\n"
                      "    mode = 'img2img'\n    image = video('clip.mp4', loop=True)\n    strength = 0.15\n",
                      encoding="utf-8")
    run = ShowThread(sketch, tmp_path / "out").start()
    try:
        run.wait_frames(5)
        source = run.show.pictures.live
        assert source is not None and source.kind == "video file"
        deadline = time.monotonic() + 8
        seen: list[str] = []
        while time.monotonic() < deadline and not {"red", "blue"} <= set(seen[-40:]):
            run.wait_frames(len(run.means) + 1, timeout_s=1.0)
            seen.append(_colour(run.means[-1]))
        assert "red" in seen and "blue" in seen[seen.index("red"):]  # the frames follow the clip: red, then blue
    finally:
        run.stop()
    assert run.show.pictures.live is None and not source._thread.is_alive()  # the show closed the source


def test_a_headless_recording_with_audio_carries_it_and_keeps_real_time(tmp_path: Path) -> None:
    import av

    out = tmp_path / "show.mp4"
    sketch = _sketch(tmp_path / "probe.py", ["red"], "    glow = Param(0.0, range=(0.0, 1.0))\n")
    run = ShowThread(sketch, out, inputs=InputOptions(osc_port=0, audio_in=str(_click_track(tmp_path / "c.wav",
                                                                                             seconds=30.0))))
    run.start()
    run.wait_frames(3)
    t0 = time.monotonic()
    time.sleep(3.0)
    wall = time.monotonic() - t0
    run.stop()
    with av.open(str(out)) as container:
        assert container.streams.video and container.streams.audio  # the audio is in the file
        video = [f.time for f in container.decode(video=0)]
        container.seek(0)
        audio_frames = list(container.decode(audio=0))
    fps = 30.0
    video_s = video[-1] + 1 / fps
    audio_s = sum(f.samples for f in audio_frames) / audio_frames[0].sample_rate
    assert abs(video_s - audio_s) <= 1 / fps + 1024 / audio_frames[0].sample_rate  # one frame (plus one AAC block)
    assert video_s >= 0.9 * wall  # frames sit on their timestamps: seconds of show are seconds of video
