"""The show under hostile input: bad arguments fail before anything loads, overflowing controls and floods of
unique OSC addresses through a real UDP socket keep the picture moving and memory bounded, Ctrl-C exits 130."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pythonosc.osc_message_builder import OscMessageBuilder

from livekit.cli import main
from livekit.show.inputs import InputOptions
from livekit.sketch import SketchError, load_sketch
from livekit.sketch.params import MAX_KEYS
from tests.integration.helpers import ShowThread, free_udp_port

ROOT = Path(__file__).resolve().parents[2]


def _probe(path: Path, extra: str = "") -> Path:
    path.write_text("from livekit import Sketch, osc\n\nclass Probe(Sketch):\n    prompts = ['red', 'blue']\n"
                    "    size = (64, 64)\n    sampler = 'lcm'\n    steps = 2\n    fps = 30\n"
                    "    noise_walk = osc('/speed').range(0.0, 2.0)\n" + extra, encoding="utf-8")
    return path


def _send(port: int, address: str, *values: object, tags: str | None = None) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(_packet(address, *values, tags=tags), ("127.0.0.1", port))


def _packet(address: str, *values: object, tags: str | None = None) -> bytes:
    if tags == "d":  # a 64-bit double: python-osc's builder writes floats as 32-bit
        def pad(b: bytes) -> bytes:
            return b + b"\0" * (4 - len(b) % 4)
        return pad(address.encode()) + pad(b",d") + struct.pack(">d", values[0])
    b = OscMessageBuilder(address)
    for v in values:
        b.add_arg(v)
    return b.build().dgram


@pytest.mark.parametrize("extra, message", [
    (["--frames", "-1"], "--frames: must be 1 or more"),
    (["--frames", "0"], "--frames: must be 1 or more"),
    (["--osc-port", "99999"], "--osc-port: must be a port number 0..65535"),
    (["--osc-out", "nowhere"], "--osc-out: must look like 127.0.0.1:9001"),
    (["--size", "8192x8192"], "at most 2048 pixels per side"),
])
def test_bad_arguments_are_rejected_at_parse_time(extra: list[str], message: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(_probe(tmp_path / "probe.py")), "--headless", *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--osc-out", "no.such.host.invalid:9001"], "--osc-out no.such.host.invalid:9001: cannot resolve host"),
    (["--audio-in", "missing.wav"], "--audio-in missing.wav: no such audio file"),
])
def test_unusable_inputs_fail_in_one_line_before_the_model_loads(extra: list[str], message: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(_probe(tmp_path / "probe.py")), "--headless", "--frames", "3", *extra]) == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"livekit run: {message}"), out.err
    assert "ready" not in out.out  # nothing loaded


def test_a_sketch_that_is_not_utf8_names_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.py"
    path.write_bytes(b"from livekit import Sketch\n\nclass S(Sketch):\n    prompts = ['caf\xe9']\n")
    with pytest.raises(SketchError, match=r"latin\.py:4: not UTF-8"):
        load_sketch(path)


def test_a_size_no_model_can_take_is_rejected_with_the_limit(tmp_path: Path) -> None:
    with pytest.raises(SketchError, match="8192x8192 is too large: at most 2048"):
        load_sketch(_probe(tmp_path / "big.py", "    size = (8192, 8192)\n"))


def test_overflowing_osc_values_never_stop_the_noise_walk(tmp_path: Path) -> None:
    port = free_udp_port()
    run = ShowThread(_probe(tmp_path / "probe.py"), tmp_path / "out", inputs=InputOptions(osc_port=port)).start()
    try:
        run.wait_frames(3)
        for packet in (_packet("/speed", 3.4e38), _packet("/speed", 1e308, tags="d"),
                       _packet("/speed", float("inf")), _packet("/speed", float("nan"))):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(packet, ("127.0.0.1", port))
            time.sleep(0.15)
            phase = run.show.last_conditioning.noise_walk
            assert math.isfinite(phase) and 0.0 <= phase <= math.tau
            assert all(math.isfinite(v) for v in run.show.last_values.values() if isinstance(v, float))
        _send(port, "/speed", 0.5)  # .range(0, 2): 1 rad/s
        time.sleep(0.2)
        before = run.show.last_conditioning.noise_walk
        time.sleep(0.5)
        after = run.show.last_conditioning.noise_walk
        assert run.show.last_values["noise_walk"] == pytest.approx(1.0)
        assert 0.3 < (after - before) % math.tau < 0.8  # 1 rad/s for 0.5 s: the walk moves again
        assert run.show.bus.rejected.count >= 1
    finally:
        run.stop()


def test_osc_out_survives_values_beyond_float32(tmp_path: Path) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.2)
    port = free_udp_port()
    inputs = InputOptions(osc_port=port, osc_out=f"127.0.0.1:{receiver.getsockname()[1]}")
    run = ShowThread(_probe(tmp_path / "probe.py"), tmp_path / "out", inputs=inputs).start()
    try:
        run.wait_frames(3)
        _send(port, "/livekit/prompt/0/weight", 1e308, tags="d")
        _send(port, "/livekit/seed/0/weight", 3.4e38)
        time.sleep(0.5)  # the sender handles both values (or drops them) in this time
        got = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and len(got) < 5:
            try:
                got.append(receiver.recv(65536))
            except socket.timeout:
                pass
        assert len(got) >= 5  # the state thread still sends
        assert run.show.inputs.osc_out._thread.is_alive()
    finally:
        run.stop()
        receiver.close()


def test_a_flood_of_unique_addresses_keeps_the_tables_bounded(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    port = free_udp_port()
    run = ShowThread(_probe(tmp_path / "probe.py"), tmp_path / "out", inputs=InputOptions(osc_port=port)).start()
    try:
        run.wait_frames(3)
        _send(port, "/speed", 0.5)
        sent = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, caplog.at_level(logging.WARNING):
            for i in range(3 * MAX_KEYS):
                s.sendto(_packet(f"/flood/{i}", float(i)), ("127.0.0.1", port))
                sent += 1
                if i % 200 == 0:
                    time.sleep(0.01)  # let the server thread keep up: loopback drops what overflows its buffer
            # python-osc logs a warning per message with an unknown type tag: those are counted, never printed
            for _ in range(200):
                s.sendto(b"/weird\0\0,c\0\0\0\0\0A", ("127.0.0.1", port))
            time.sleep(0.5)
        bus = run.show.bus
        assert len(bus._latest) <= MAX_KEYS
        assert bus.rejected.forgotten > 0
        assert bus.latest("osc/speed") == pytest.approx(0.5)  # what the sketch maps is never forgotten
        time.sleep(0.2)
        assert run.show.last_values["noise_walk"] == pytest.approx(1.0)
        library_lines = [r for r in caplog.records if "pythonosc" in r.pathname]
        assert not library_lines
    finally:
        run.stop()


def test_ctrl_c_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "livekit.cli", "run", str(_probe(tmp_path / "probe.py")),
                             "--headless", "--out", str(out), "--osc-port", "0", "--no-reload"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(out.glob("*.png")) and proc.poll() is None:
            time.sleep(0.1)
        assert list(out.glob("*.png")), proc.stdout.read() if proc.poll() is not None else "no frames"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 130
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_reload_whose_update_fails_rolls_back_to_the_last_good_sketch(tmp_path: Path) -> None:
    sketch = _probe(tmp_path / "probe.py", "    motion = 0.5\n")
    run = ShowThread(sketch, tmp_path / "out").start()
    try:
        run.wait_frames(5)
        good = run.show.runner.sketch_cls
        sketch.write_text(sketch.read_text(encoding="utf-8") + "    def update(self, p, t):\n        1 / 0\n",
                          encoding="utf-8")
        os.utime(sketch, (time.time() + 1, time.time() + 1))
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and "rolled back" not in (run.show.last_error or ""):
            time.sleep(0.02)
        assert "ZeroDivisionError" in run.show.last_error and "rolled back" in run.show.last_error
        assert run.show.runner.sketch_cls is good
        errors = run.show.runner.errors.count
        phase = run.show.last_conditioning.motion_phase
        time.sleep(0.4)
        assert run.show.runner.errors.count == errors  # shown once: the good sketch ticks without errors
        assert run.show.last_conditioning.motion_phase != phase  # and the picture moves on
        assert sum("rolled back" in line for line in run.lines) == 1
    finally:
        run.stop()


def test_a_reload_naming_a_missing_model_keeps_the_current_one_playing(tmp_path: Path) -> None:
    sketch = _probe(tmp_path / "probe.py")
    run = ShowThread(sketch, tmp_path / "out").start()
    try:
        run.wait_frames(5)
        engine = run.show.worker.engine
        sketch.write_text(sketch.read_text(encoding="utf-8") + f"    model = {str(tmp_path / 'no-such-model')!r}\n",
                          encoding="utf-8")
        os.utime(sketch, (time.time() + 1, time.time() + 1))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "cannot load model" not in (run.show.last_error or ""):
            count = len(run.means)
            run.wait_frames(count + 1, timeout_s=1.0)  # frames keep coming while the new model is tried
        assert "keeping the current model" in run.show.last_error
        assert "\n" not in run.show.last_error
        count = len(run.means)
        assert run.wait_frames(count + 5) >= count + 5
        assert run.show.worker.engine is engine
    finally:
        run.stop()


def test_the_hud_says_which_clock_leads_its_confidence_and_what_input_was_dropped(tmp_path: Path) -> None:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    from livekit.show.hud_feed import hud_info
    from livekit.stage.hud import HudPainter, HudStatus

    port = free_udp_port()
    run = ShowThread(_probe(tmp_path / "probe.py"), tmp_path / "out", inputs=InputOptions(osc_port=port)).start()
    try:
        run.wait_frames(3)
        _send(port, "/livekit/prompt/0/weight", 1e308, tags="d")
        time.sleep(0.3)
        info = hud_info(run.show)
    finally:
        run.stop()
    assert info.notes[0] == "tempo: free-running 120 · confidence 0.00"
    assert any(n.startswith("input dropped: 1 bad values") for n in info.notes)
    import pygame

    pygame.init()
    try:
        status = HudStatus(generated_fps=30.0, displayed_fps=60.0, display_hz=60.0, frozen=False, stalled_s=0.0,
                           now_s=time.monotonic(), frame_px=(64, 64))
        with_notes = HudPainter().render(info, status, (1280, 720))
        without = HudPainter().render(dataclasses.replace(info, notes=()), status, (1280, 720))
        assert with_notes.get_height() > without.get_height()  # the lines are drawn
    finally:
        pygame.quit()


def _start_jackd(name: str, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "512"],
                            stdout=log.open("a"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if subprocess.run(["jack_lsp", "-s", name], capture_output=True, timeout=5).returncode == 0:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"jackd {name} did not start: {log.read_text(errors='replace')}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class _Tone:
    """jack_metro (a separate JACK client) plays 200 ms tones four times a second into the show's inputs; a thread
    keeps it connected, as a session manager would, so a stream the show reopens under load is fed again."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.metro = subprocess.Popen(["jack_metro", "-n", "feeder", "-b", "240", "-D", "200", "-f", "440", "-A",
                                       "0.8"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._connect, daemon=True)
        self._thread.start()
        if not self.connected.wait(30):
            self.stop()
            raise AssertionError(f"no feeder or no livekit input on the JACK graph: {self._graph()}")

    def _graph(self) -> dict[str, list[str]]:
        lines = subprocess.run(["jack_lsp", "-s", self.name, "-c"], capture_output=True, text=True, timeout=5,
                               check=False).stdout.splitlines()
        graph: dict[str, list[str]] = {}
        for line in lines:
            if line.startswith((" ", "\t")) and graph:
                graph[list(graph)[-1]].append(line.strip())
            elif line.strip():
                graph[line.strip()] = []
        return graph

    def _connect(self) -> None:
        while not self._stop.is_set():
            graph = self._graph()
            tone = [port for port in graph if port.startswith("feeder:")]
            inputs = [port for port in graph if port.startswith("PortAudio")]
            if tone and inputs:
                for port in inputs:
                    if tone[0] not in graph[port]:
                        subprocess.run(["jack_connect", "-s", self.name, tone[0], port], capture_output=True,
                                       timeout=5, check=False)
                self.connected.set()
            self._stop.wait(0.3)

    def stop(self) -> None:
        """Stop playing."""
        self._stop.set()
        self._thread.join(10)
        _stop(self.metro)


class _Lines:
    """Every line a process prints, collected on a thread so the test can wait for one."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    def count(self, text: str) -> int:
        """How many lines so far contain text."""
        return sum(text in line for line in list(self.lines))

    def text(self) -> str:
        """Everything so far (the whole output once the process ended)."""
        self._thread.join(2.0)
        return "".join(self.lines)


class _OscValues:
    """The values one OSC address receives on a UDP port, with their arrival times."""

    def __init__(self, address: str) -> None:
        from pythonosc.osc_message import OscMessage

        self.values: list[tuple[float, float]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]

        def receive() -> None:
            while self.sock.fileno() >= 0:
                try:
                    data = self.sock.recv(65536)
                except OSError:  # a timeout, or the socket closed
                    continue
                if data.startswith(address.encode() + b"\0"):
                    self.values.append((time.monotonic(), float(OscMessage(data).params[0])))

        threading.Thread(target=receive, daemon=True).start()

    def since(self, t0: float) -> list[float]:
        """Values that arrived at or after t0."""
        return [v for t, v in list(self.values) if t >= t0]


def _wait(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_a_jack_server_restart_under_the_show_brings_its_audio_back(tmp_path: Path) -> None:
    name = f"lkr{os.getpid() % 10000}"
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "PYTHONUNBUFFERED": "1"}
    server = _start_jackd(name, tmp_path / "jackd.log")
    out = tmp_path / "out"
    sketch = tmp_path / "a.py"
    sketch.write_text("from livekit import Sketch, audio\n\nclass A(Sketch):\n    prompts = ['red']\n"
                      "    size = (64, 64)\n    noise_walk = audio.level\n", encoding="utf-8")
    level = _OscValues("/livekit/noise_walk")  # audio.level as the show sends it on OSC out
    show = subprocess.Popen([sys.executable, "-m", "livekit.cli", "run", str(sketch), "--headless", "--out", str(out),
                             "--osc-port", "0", "--no-reload", "--audio-in", "jack",
                             "--osc-out", f"127.0.0.1:{level.port}"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    said = _Lines(show.stdout)
    feeder = None
    try:
        assert _wait(lambda: len(list(out.glob("*.png"))) >= 10 or show.poll() is not None, 90), said.text()
        feeder = _Tone(name, env)
        t0 = time.monotonic()
        assert _wait(lambda: max(level.since(t0), default=0.0) > 0.3, 30), (level.values[-5:], said.text())
        feeder.stop()  # silence first, so the level the show last sent before the restart is 0 ...
        t0 = time.monotonic()
        assert _wait(lambda: level.since(t0) and level.since(t0)[-1] < 0.05, 30), level.values[-5:]
        _stop(server)  # ... then the server goes away under the running show ...
        assert _wait(lambda: said.count("the JACK server went away") > 0, 30), said.text()
        server = _start_jackd(name, tmp_path / "jackd.log")  # ... and comes back
        back = time.monotonic()
        frames = len(list(out.glob("*.png")))
        feeder = _Tone(name, env)  # waits until the show's input is on the new server's graph
        assert _wait(lambda: max(level.since(back), default=0.0) > 0.3, 30), (level.values[-5:], said.text())
        came_back_s = time.monotonic() - back
        assert len(list(out.glob("*.png"))) > frames  # frames kept coming throughout
        t0 = time.monotonic()
        show.send_signal(signal.SIGTERM)
        assert show.wait(timeout=10) == 0  # no hang on the capture process, no abort at exit
        exit_s = time.monotonic() - t0
        text = said.text()
        assert exit_s < 2.0, text
        assert text.count("the JACK server went away") == 1, text  # said once, plainly
        assert "audio input reopened" in text
        print(f"audio back {came_back_s:.2f} s after the server restart; SIGTERM exit in {exit_s:.2f} s")
    finally:
        if show.poll() is None:
            show.kill()
        if feeder is not None:
            feeder.stop()
        _stop(server)
        level.sock.close()


def test_the_fps_sent_on_osc_out_is_the_rate_frames_really_arrive(tmp_path: Path) -> None:
    from pythonosc.osc_message import OscMessage

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.1)
    run = ShowThread(_probe(tmp_path / "probe.py"), tmp_path / "out",
                     inputs=InputOptions(osc_port=0, osc_out=f"127.0.0.1:{receiver.getsockname()[1]}")).start()
    try:
        run.wait_frames(10)
        t0, n0 = time.monotonic(), len(run.means)
        sent: list[float] = []
        while time.monotonic() - t0 < 3.0:
            try:
                data = receiver.recv(65536)
            except socket.timeout:
                continue
            if data.startswith(b"/livekit/state/fps"):
                sent.append(float(OscMessage(data).params[0]))
        delivered = (len(run.means) - n0) / (time.monotonic() - t0)
    finally:
        run.stop()
        receiver.close()
    assert sent and abs(sent[-1] - delivered) <= 0.15 * delivered, (sent[-5:], delivered)
