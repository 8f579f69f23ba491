"""Pipelined IO: the engine on its own inference thread, post-processing (tensor -> uint8) on another.

Queues hold one item and the newest wins, so no thread ever waits on a slower one: the inference thread always
runs on the latest conditioning, and the consumer always gets the latest frame.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Generic, TypeVar

import numpy as np
import torch

from pipeline.conditioning import Conditioning
from pipeline.stream import EngineConfig, StreamEngine, to_uint8

log = logging.getLogger(__name__)
T = TypeVar("T")


class Latest(Generic[T]):
    """A one-item mailbox: put never blocks and replaces what is there; get waits up to a timeout."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._cond = threading.Condition()
        self.replaced = 0  # items overwritten before anyone took them

    def put(self, item: T) -> None:
        """Store item, replacing an untaken one."""
        with self._cond:
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self._cond.notify_all()

    def take(self, timeout_s: float | None = None) -> T | None:
        """Remove and return the item, waiting up to timeout_s; None if nothing came."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout_s)
            item, self._item = self._item, None
            return item

    def peek(self) -> T | None:
        """The item without removing it."""
        with self._cond:
            return self._item


@dataclass(frozen=True)
class FrameInfo:
    """What came with a finished frame."""

    index: int  # frames delivered so far, from 1
    control_time_s: float  # time.monotonic() of the conditioning the step ran on
    done_time_s: float  # time.monotonic() when the frame was ready
    skipped: bool  # answered by the similarity filter / static skip


@dataclass
class WorkerStats:
    """Counters the HUD shows."""

    frames: int = 0
    errors: int = 0
    last_error: str = ""
    generated_fps: float = 0.0
    latency_ms: float = 0.0  # control-to-frame latency of the latest frame (engine latency not included)


class FrameRate:
    """Frames per second from frame intervals: the reciprocal of their running mean. (A running mean of 1/interval
    overstates a jittery rate: intervals of 10 and 90 ms read 55 frames/s where 20 arrive.)"""

    def __init__(self, keep: float = 0.9) -> None:
        self.keep = keep
        self._mean_s: float | None = None

    def tick(self, interval_s: float) -> float:
        """Add one interval (seconds); returns the current frames per second."""
        interval_s = max(float(interval_s), 1e-6)
        self._mean_s = interval_s if self._mean_s is None else self.keep * self._mean_s + (1 - self.keep) * interval_s
        return 1.0 / self._mean_s


class StreamWorker:
    """Runs `engine.step` on an inference thread and post-processing on another; frames go to `on_frame`."""

    def __init__(self, engine: StreamEngine, on_frame: Callable[[np.ndarray, FrameInfo], None],
                 max_fps: float | None = None, on_error: Callable[[str], None] | None = None) -> None:
        self.engine = engine
        self.on_frame = on_frame
        self.on_error = on_error
        self.max_fps = max_fps
        self.stats = WorkerStats()
        self._pre: Latest[tuple[Conditioning, float]] = Latest()  # conditionings with a numpy image to prepare
        self._cond: Latest[tuple[Conditioning, float]] = Latest()
        self._frames: Latest[tuple[torch.Tensor, float, bool]] = Latest()
        self._swap: Latest[Callable[[], StreamEngine] | EngineConfig] = Latest()
        self._current: tuple[Conditioning, float] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._reported: set[str] = set()
        self._rate = FrameRate()
        self._control: tuple | None = None  # (picture, mode, size, model, tensor): the last control picture prepared

    def start(self) -> None:
        """Start the inference and post-processing threads."""
        self._stop.clear()
        self._threads = [threading.Thread(target=self._infer_loop, name="livekit-inference", daemon=True),
                         threading.Thread(target=self._post_loop, name="livekit-post", daemon=True),
                         threading.Thread(target=self._pre_loop, name="livekit-pre", daemon=True)]
        for t in self._threads:
            t.start()

    def submit(self, cond: Conditioning, control_time_s: float | None = None) -> None:
        """Hand the latest conditioning to the inference thread (never blocks); an input or control picture goes
        through the pre-processing thread first, so the model call is the only work on the inference thread."""
        item = (cond, time.monotonic() if control_time_s is None else control_time_s)
        pictures = isinstance(cond.image, np.ndarray) or isinstance(cond.control_image, np.ndarray)
        (self._pre if pictures else self._cond).put(item)

    def reconfigure(self, change: EngineConfig | Callable[[], StreamEngine]) -> None:
        """Apply a new EngineConfig, or swap in a new engine from a factory, on the inference thread."""
        self._swap.put(change)

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Stop and join both threads; True when they ended within the timeout."""
        self._stop.set()
        self._cond.put(self._current or (Conditioning(), 0.0))  # wake the inference thread
        self._frames.put((torch.zeros(0), 0.0, True))  # wake the post thread
        self._pre.put((Conditioning(), 0.0))  # wake the pre thread
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _error(self, where: str, exc: BaseException) -> None:
        """Count, log once per distinct message, tell the HUD; never raise."""
        self.stats.errors += 1
        msg = f"{where}: {type(exc).__name__}: {exc}"
        self.stats.last_error = msg
        if msg not in self._reported and len(self._reported) < 100:
            self._reported.add(msg)
            log.error("%s (further identical errors are counted, not logged)", msg, exc_info=exc)
        if self.on_error is not None:
            self.on_error(msg)

    def _infer_loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            latest = self._cond.take(0.0 if self._current else 0.1)
            if latest is not None:
                self._current = latest
            if self._current is None or self._stop.is_set():
                continue
            change = self._swap.take(0.0)
            try:
                if isinstance(change, EngineConfig):
                    self.engine.configure(change)
                elif change is not None:
                    self.engine = change()
                cond, stamp = self._current
                skipped_before = self.engine.stats.skipped
                image = self.engine.step(cond)
                self._frames.put((image, stamp, self.engine.stats.skipped > skipped_before))
            except Exception as exc:  # nothing is fatal in the live loop: the last good frame stays on screen
                self._error("inference", exc)
                time.sleep(0.05)
            period = 1.0 / self.max_fps if self.max_fps else 0.0  # read each step: a hot reload may change it
            if period:
                next_t = max(next_t + period, time.monotonic() - period)
                self._stop.wait(max(0.0, next_t - time.monotonic()))

    def _pre_loop(self) -> None:
        while not self._stop.is_set():
            item = self._pre.take(0.1)
            if item is None or self._stop.is_set():
                continue
            cond, stamp = item
            try:
                self._cond.put((self._prepare(cond), stamp))
            except Exception as exc:
                self._error("pre-processing", exc)

    def _prepare(self, cond: Conditioning) -> Conditioning:
        """Pre-processing thread: the input picture and the ControlNet picture as tensors at the engine's size."""
        engine = self.engine
        image = engine.prepare_image(cond.image) if isinstance(cond.image, np.ndarray) else cond.image
        control = cond.control_image
        if isinstance(control, np.ndarray):
            control = self._prepare_control(engine, control, cond.control_mode)
        return replace(cond, image=image, control_image=control)

    def _prepare_control(self, engine: StreamEngine, picture: np.ndarray, mode: str) -> torch.Tensor | None:
        """The control picture pre-processed (canny edges or as is) for a ControlNet model; None for other models.
        The same picture again (a still, or a live source between two frames) reuses the tensor: the engine then
        sees no new control picture, and the static skip and similarity filter keep working."""
        model = engine.model
        if getattr(model, "take_control", None) is None:
            self._control = None  # holds no model that was swapped out
            return None
        key = (mode, engine.config.size_px, model)
        last = self._control
        if last is not None and last[0] is picture and last[1:4] == key:
            return last[4]
        from pipeline.controlnet import preprocess_control

        tensor = preprocess_control(picture, engine.config.size_px, mode, model.device, model.dtype)
        self._control = (picture, *key, tensor)
        return tensor

    def _post_loop(self) -> None:
        last_done = None
        while not self._stop.is_set():
            item = self._frames.take(0.1)
            if item is None or self._stop.is_set():
                continue
            image, stamp, skipped = item
            try:
                frame = to_uint8(image)
                now = time.monotonic()
                self.stats.frames += 1
                if last_done is not None:
                    self.stats.generated_fps = self._rate.tick(now - last_done)
                last_done = now
                self.stats.latency_ms = (now - stamp) * 1000.0
                self.on_frame(frame, FrameInfo(self.stats.frames, stamp, now, skipped))
            except Exception as exc:
                self._error("post-processing", exc)
