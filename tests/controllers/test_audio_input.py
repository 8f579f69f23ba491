"""Audio input: ring buffer, file source, missing PortAudio/device, reopen, and a real JACK device end to end (captured
in a child process that is killed and replaced when it wedges)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from controllers.audio import AudioConfig, AudioInput, FileSource, rescan
from controllers.base import ControlEvent
from controllers.ringbuffer import RingBuffer, SampleClock
from tests.controllers.test_beat import RATE, beat_track


class Collector:
    """A thread-safe ControlSink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[ControlEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: ControlEvent) -> None:
        with self._lock:
            self.events.append(event)

    def values(self, source: str, since_s: float = -np.inf) -> list[float]:
        """Values of one source that arrived at or after since_s."""
        with self._lock:
            return [float(e.value) for e in self.events if e.source == source and e.time_s >= since_s]


def wait_until(condition, timeout_s: float, step_s: float = 0.05) -> bool:
    """Poll condition() until it is true or timeout_s passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return bool(condition())


def test_ring_buffer_wraps_and_keeps_order() -> None:
    ring = RingBuffer(1000, 2)
    ramp = np.arange(5000, dtype=np.float32)
    out = np.zeros((256, 2), dtype=np.float32)
    collected = []
    for start in range(0, 5000, 300):
        block = np.stack([ramp[start : start + 300], -ramp[start : start + 300]], axis=1)
        ring.write(block, time_s=start / 1000.0)
        while ring.read_into(out):
            collected.append(out[:, 0].copy())
            assert np.array_equal(out[:, 1], -out[:, 0])
    flat = np.concatenate(collected)
    assert np.array_equal(flat, ramp[: len(flat)]) and ring.dropped == 0
    assert ring.latest_stamp() == (5000, 4.8)


def test_ring_buffer_skips_to_fresh_audio_when_the_reader_falls_behind() -> None:
    ring = RingBuffer(1000, 1)
    for start in range(0, 3000, 100):
        ring.write(np.arange(start, start + 100, dtype=np.float32)[:, None], 0.0)
    out = np.zeros((100, 1), dtype=np.float32)
    assert ring.read_into(out)
    assert ring.dropped > 0 and out[0, 0] >= 2000 and np.all(np.diff(out[:, 0]) == 1)


def test_sample_clock_trusts_the_earliest_looking_callback() -> None:
    clock = SampleClock(48000, latency_s=0.002)
    rng = np.random.default_rng(0)
    for k in range(1, 200):
        frames = k * 256
        clock.observe(frames, 50.0 + frames / 48000 + rng.uniform(0.0, 0.004))  # callbacks arrive 0-4 ms late
    assert clock.time_of(48000) == pytest.approx(50.0 + 1.0 - 0.002, abs=0.0005)


def test_file_source_analyses_a_wav_faster_than_real_time(tmp_path: Path) -> None:
    signal, _ = beat_track(128.0, 6.0)
    path = tmp_path / "clicks.wav"
    soundfile.write(path, np.stack([signal, signal], axis=1), RATE)  # stereo: mixed down
    sink = Collector()
    source = FileSource(path, sink, realtime=False)
    began = time.monotonic()
    with source:
        assert source.wait(20.0)
    assert time.monotonic() - began < 5.0
    state = source.tempo()
    assert state is not None and abs(state.bpm - 128.0) <= 1.0
    assert sink.values("audio/beat") and max(sink.values("audio/level")) > 0.5


def test_file_source_plays_a_flac_in_real_time(tmp_path: Path) -> None:
    path = tmp_path / "tone.flac"
    soundfile.write(path, 0.5 * np.sin(2 * np.pi * 100.0 * np.arange(RATE // 2) / RATE), RATE)
    sink = Collector()
    began = time.monotonic()
    with FileSource(path, sink) as source:
        assert source.wait(5.0)
    elapsed = time.monotonic() - began
    assert 0.4 <= elapsed < 2.0, elapsed
    times = [e.time_s for e in sink.events if e.source == "audio/rms"]
    assert times[-1] - times[0] == pytest.approx(0.5, abs=0.03)
    assert source.latest()["bass"] > 0.3


def test_file_source_rejects_an_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not audio")
    with pytest.raises(ValueError, match="cannot read audio file"):
        FileSource(tmp_path / "notes.txt")


def test_missing_portaudio_is_one_clear_message(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import sounddevice now fails, as without PortAudio
    audio = AudioInput(AudioConfig(reopen_s=0.05))
    with caplog.at_level(logging.WARNING, logger="controllers.audio"):
        assert audio.start() is False
        time.sleep(0.2)
        audio.stop()
    assert audio.error is not None and "libportaudio2" in audio.error
    assert len(caplog.records) == 1 and audio.tempo() is None and audio.latest() == {}


def test_unknown_device_is_reported_once_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    audio = AudioInput(AudioConfig(device="no-such-device-xyz", reopen_s=0.05, rescan_on_reopen=False))
    with caplog.at_level(logging.WARNING, logger="controllers.audio"):
        assert audio.start() is False
        time.sleep(0.4)  # several retries
        audio.stop()
    assert audio.error is not None and "audio input unavailable" in audio.error
    assert "TypeError" not in audio.error and "exited" not in audio.error, audio.error  # the child's own reason
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]


class FakeStream:
    """A stand-in device: a thread calls the callback with 256-frame blocks of a sine until it 'dies'."""

    def __init__(self, callback) -> None:
        self.samplerate, self.latency, self.active = float(RATE), 0.0, False
        self._callback, self._halt = callback, threading.Event()

    def start(self) -> None:
        """Start delivering audio."""
        self.active = True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        n = 0
        while not self._halt.is_set():
            block = (0.5 * np.sin(2 * np.pi * 440.0 * (n + np.arange(256)) / RATE)).astype(np.float32)[:, None]
            self._callback(block, 256, None, None)
            n += 256
            time.sleep(256 / RATE)

    def abort(self) -> None:
        """Stop delivering (the device died)."""
        self._halt.set()
        self.active = False

    close = abort


def test_a_device_that_dies_mid_show_is_reopened() -> None:
    streams: list[FakeStream] = []
    failures = [1]

    def open_stream(config: AudioConfig, callback) -> FakeStream:
        if len(streams) == 1 and failures[0]:  # the first reopen attempt fails, like a device still unplugged
            failures[0] -= 1
            raise OSError("device unavailable")
        streams.append(FakeStream(callback))
        return streams[-1]

    sink = Collector()
    audio = AudioInput(AudioConfig(reopen_s=0.1, rescan_on_reopen=False), sink, open_stream=open_stream)
    with audio:
        assert wait_until(lambda: len(sink.values("audio/rms")) > 20, 3.0)
        streams[0].abort()
        died_at = time.monotonic()
        assert wait_until(lambda: audio.reopens == 1, 3.0), audio.error
        assert wait_until(lambda: len(sink.values("audio/rms", since_s=died_at + 0.05)) > 20, 3.0)
    assert len(streams) == 2 and audio.error is None
    assert min(sink.values("audio/rms", since_s=died_at + 0.3)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def _connect_player(player, out_port) -> list[str]:
    inputs = [p.name for p in player.get_ports(is_audio=True, is_input=True) if not p.name.startswith("system:")]
    for name in inputs:
        player.connect(out_port, name)
    return inputs


def test_jack_click_track_reaches_the_tracker_end_to_end(jack) -> None:
    import jack as jackclient

    rescan()  # PortAudio scans JACK only at initialisation: this server started after import
    bpm = 128.0
    track, _ = beat_track(bpm, 60.0 / bpm * 16)  # four bars, looped: whole beats, so the loop keeps the tempo
    track = track.astype(np.float32)
    player = jackclient.Client("click-player", servername=jack.name, no_start_server=True)
    out_port = player.outports.register("out")
    position = [0]

    @player.set_process_callback
    def process(frames: int) -> None:
        index = (position[0] + np.arange(frames)) % len(track)
        out_port.get_array()[:] = track[index]
        position[0] += frames

    sink = Collector()
    audio = AudioInput(AudioConfig(device="jack", channels=1, block_size=256, reopen_s=0.2), sink)
    with player:
        assert audio.start(), audio.error
        try:
            assert _connect_player(player, out_port), f"no livekit input port on the JACK graph: {jack.ports()}"
            # running once the beat confidence has built up (about a second after the tempo is first read)
            found = wait_until(lambda: (s := audio.tempo()) is not None and abs(s.bpm - bpm) <= 1.0 and s.running,
                               8.0, 0.2)
            state = audio.tempo()
            assert found, f"tracker says {state}"
            assert state is not None and state.running
            assert wait_until(lambda: len(sink.values("audio/beat")) >= 2, 2.0)
            assert max(sink.values("audio/level")) > 0.5

            audio.stream.abort()  # the device dies mid-show
            died_at = time.monotonic()
            assert wait_until(lambda: audio.reopens == 1, 5.0), audio.error
            assert wait_until(lambda: bool(_connect_player(player, out_port)), 2.0)
            assert wait_until(lambda: max(sink.values("audio/peak", since_s=died_at + 0.1), default=0.0) > 0.5, 3.0)
        finally:
            audio.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_wedged_capture_process_is_killed_and_replaced_and_never_delays_stop(jack) -> None:
    sink = Collector()
    audio = AudioInput(AudioConfig(device="jack", channels=1, reopen_s=0.2), sink)
    assert audio.start(), audio.error
    try:
        assert wait_until(lambda: len(sink.values("audio/rms")) > 20, 5.0)  # JACK's silence, hop by hop
        first = audio.stream.pid
        os.kill(first, signal.SIGSTOP)  # stuck for good, as PortAudio is once its JACK server went away
        assert wait_until(lambda: audio.reopens == 1, 10.0), audio.error
        resumed = time.monotonic()
        assert audio.stream.pid != first
        assert wait_until(lambda: len(sink.values("audio/rms", since_s=resumed)) > 20, 5.0)
        assert wait_until(lambda: not _alive(first), 5.0)  # killed and reaped, not left behind
        second = audio.stream.pid
        os.kill(second, signal.SIGSTOP)
        began = time.monotonic()
        audio.stop()  # never waits on a wedged capture process
        assert time.monotonic() - began < 1.0
        assert wait_until(lambda: not _alive(second), 5.0)
    finally:
        audio.stop()
