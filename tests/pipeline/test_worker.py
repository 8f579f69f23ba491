"""The pipelined worker: frames arrive on their own threads, the newest conditioning wins, errors are not fatal."""

from __future__ import annotations

import threading

import numpy as np

from pipeline import Conditioning, EngineConfig, StreamEngine
from pipeline.worker import Latest, StreamWorker
from tests.pipeline.gaussian import GaussianModel


def test_latest_keeps_only_the_newest_item() -> None:
    box: Latest[int] = Latest()
    for i in range(1000):
        box.put(i)
    assert box.take(0) == 999 and box.take(0) is None and box.replaced == 999


def test_worker_delivers_uint8_frames_and_follows_the_latest_conditioning() -> None:
    engine = StreamEngine(GaussianModel(), EngineConfig(size_px=(32, 32), sampler="lcm", steps=2))
    frames: list[np.ndarray] = []
    got = threading.Event()
    threads: set[str] = set()

    def on_frame(frame: np.ndarray, info) -> None:
        threads.add(threading.current_thread().name)
        frames.append(frame)
        if len(frames) >= 5:
            got.set()

    worker = StreamWorker(engine, on_frame)
    worker.start()
    for k in range(50):
        worker.submit(Conditioning(prompts=(("red", 1.0),), noise_walk=0.05 * k))
    assert got.wait(10.0)
    assert worker.stop(2.0)
    assert frames[0].dtype == np.uint8 and frames[0].shape == (32, 32, 3)
    assert threads == {"livekit-post"}
    assert worker.stats.errors == 0 and worker.stats.frames >= 5


def test_worker_survives_engine_errors() -> None:
    class Broken(GaussianModel):
        fail = True

        def __call__(self, x, t, cond):
            if Broken.fail:
                raise RuntimeError("GPU fell off the truck")
            return super().__call__(x, t, cond)

    engine = StreamEngine(Broken(), EngineConfig(size_px=(32, 32), sampler="lcm", steps=2))
    got = threading.Event()
    worker = StreamWorker(engine, lambda f, i: got.set())
    worker.start()
    worker.submit(Conditioning())
    for _ in range(100):
        if worker.stats.errors >= 2:
            break
        threading.Event().wait(0.02)
    assert worker.stats.errors >= 2 and "fell off" in worker.stats.last_error
    Broken.fail = False
    worker.submit(Conditioning(noise_walk=0.1))
    assert got.wait(5.0)  # the show goes on once the model works again
    assert worker.stop(2.0)


def test_input_images_are_prepared_on_the_pre_processing_thread() -> None:
    engine = StreamEngine(GaussianModel(), EngineConfig(size_px=(32, 32), sampler="ddim", steps=2, mode="img2img"))
    prepared_on: set[str] = set()
    original = engine.prepare_image

    def spy(image):
        prepared_on.add(threading.current_thread().name)
        return original(image)

    engine.prepare_image = spy
    got = threading.Event()
    worker = StreamWorker(engine, lambda f, i: got.set())
    worker.start()
    image = np.full((64, 48, 3), 200, dtype=np.uint8)  # another size: resized on the way in
    worker.submit(Conditioning(image=image, strength=0.5))
    assert got.wait(10.0)
    assert worker.stop(2.0)
    assert prepared_on == {"livekit-pre"} and worker.stats.errors == 0


def test_the_frame_rate_is_the_reciprocal_of_the_mean_interval_even_when_frames_jitter() -> None:
    from pipeline.worker import FrameRate

    rate = FrameRate()
    for i in range(400):
        fps = rate.tick(0.010 if i % 2 else 0.090)  # 10 ms, 90 ms, ...: 20 frames per second arrive
    assert abs(fps - 20.0) < 1.0  # a running mean of 1/interval would read about 55
