"""A lock-free single-producer/single-consumer audio ring buffer, and the clock that dates its samples.

The producer is a PortAudio callback: `write` only copies into preallocated arrays (no array allocation, no lock,
no logging). The consumer is the analysis thread. Counters only grow and each is written by one side only, so under
the GIL the reader never sees a half-published block.
"""

from __future__ import annotations

import math

import numpy as np


class RingBuffer:
    """Preallocated float32 ring of frames x channels, plus a time stamp for every write."""

    STAMPS = 64  # write time stamps kept (the reader only needs the newest)

    def __init__(self, capacity_frames: int, channels: int) -> None:
        if capacity_frames <= 0 or channels <= 0:
            raise ValueError(f"capacity_frames and channels must be > 0, got {capacity_frames}, {channels}")
        self.capacity = capacity_frames
        self.channels = channels
        self._data = np.zeros((capacity_frames, channels), dtype=np.float32)
        self._stamp_frames = np.zeros(self.STAMPS, dtype=np.int64)
        self._stamp_times = np.zeros(self.STAMPS, dtype=np.float64)
        self._stamps = 0  # stamps published (writer only)
        self.written = 0  # frames published (writer only)
        self.read = 0  # frames consumed or skipped (reader only)
        self.dropped = 0  # frames the reader skipped because the writer lapped it (reader only)

    def write(self, block: np.ndarray, time_s: float) -> None:
        """Copy a (frames, channels) block in and stamp it with the time its last frame arrived; real-time safe."""
        n = len(block)
        base = self.written
        if n > self.capacity:  # keep only the newest capacity frames
            base += n - self.capacity
            block = block[n - self.capacity :]
            n = self.capacity
        start = base % self.capacity
        first = min(n, self.capacity - start)
        self._data[start : start + first] = block[:first]
        if first < n:
            self._data[: n - first] = block[first:]
        slot = self._stamps % self.STAMPS
        self._stamp_frames[slot] = base + n
        self._stamp_times[slot] = time_s
        self.written = base + n  # publish the frames...
        self._stamps += 1  # ...then the stamp that covers them

    def available(self) -> int:
        """Frames written but not yet read."""
        return self.written - self.read

    def latest_stamp(self) -> tuple[int, float] | None:
        """(frames written, time) of the newest write, or None before the first."""
        count = self._stamps
        if count == 0:
            return None
        slot = (count - 1) % self.STAMPS
        return int(self._stamp_frames[slot]), float(self._stamp_times[slot])

    def read_into(self, out: np.ndarray) -> bool:
        """Fill out (frames, channels) with the next frames; False (nothing read) if fewer are available."""
        n = len(out)
        if self.available() > self.capacity - n:  # the writer is about to lap us: skip to fresh audio
            skip = self.available() - self.capacity // 2
            self.read += skip
            self.dropped += skip
        if self.available() < n:
            return False
        start = self.read % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._data[start : start + first]
        if first < n:
            out[first:] = self._data[: n - first]
        self.read += n
        return True


class SampleClock:
    """Maps a frame index of the input to time.monotonic() using the callbacks' arrival stamps.

    A callback arrives at least a little after its last frame was captured, so the earliest-looking stamp is the most
    accurate: the offset follows new minimums at once and otherwise creeps up slowly (for clock drift).
    """

    def __init__(self, sample_rate: float, latency_s: float = 0.0, drift_per_stamp_s: float = 1e-5) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        self.sample_rate = float(sample_rate)
        self.latency_s = latency_s  # input latency reported by the device, subtracted from every time
        self._drift = drift_per_stamp_s
        self._offset = math.nan  # time of frame 0

    def observe(self, frames: int, time_s: float) -> None:
        """A stamp: the first `frames` frames had arrived by time_s."""
        offset = time_s - frames / self.sample_rate
        self._offset = offset if math.isnan(self._offset) else min(offset, self._offset + self._drift)

    def time_of(self, frame: int) -> float:
        """Capture time of a frame index (needs at least one observed stamp)."""
        return self._offset + frame / self.sample_rate - self.latency_s
