"""When the stage presents: by vsync where the platform blocks presents on the refresh, else on a clock grid.

No pygame here: the pacer is told when presents happened and answers when the next one should, so its logic is
tested with explicit clock values.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import numpy as np

log = logging.getLogger(__name__)

VSYNC_PROBE_FRAMES = 30  # presents measured before deciding whether vsync really paces the loop
_MAX_WAKE_MARGIN_S = 0.004  # clock pacing wakes at most this early and yields until the present slot


class DisplayPacer:
    """Present timing at a display rate: "vsync" (presents block), "clock" (a sleep grid), or "probe" (measuring)."""

    def __init__(self, display_hz: float, vsync_requested: bool) -> None:
        if not 1.0 <= display_hz <= 1000.0:
            raise ValueError(f"display_hz must be in 1..1000, got {display_hz}")
        self.period_s = 1.0 / display_hz
        self.mode = "probe" if vsync_requested else "clock"
        self._deadline_s: float | None = None
        self._presents: deque[float] = deque(maxlen=600)
        self._overshoots: deque[float] = deque(maxlen=120)  # how late recent sleeps woke up, in s

    def slot(self, now_s: float) -> float:
        """The instant the next present should happen: now under vsync, else the next point of the clock grid."""
        if self.mode != "clock":
            return now_s
        if self._deadline_s is None or now_s - self._deadline_s > self.period_s:
            self._deadline_s = now_s  # first frame, or behind by more than a frame: restart, never burst to catch up
        return max(now_s, self._deadline_s)

    def presented(self, now_s: float) -> None:
        """Record a present that finished at now_s and move the grid on."""
        self._presents.append(now_s)
        if self.mode == "clock":
            base = now_s - self.period_s if self._deadline_s is None else max(self._deadline_s, now_s - self.period_s)
            self._deadline_s = base + self.period_s
        elif self.mode == "probe" and len(self._presents) > VSYNC_PROBE_FRAMES:
            median = float(np.median(self.intervals_s()[-VSYNC_PROBE_FRAMES:]))
            # presents held back to about the refresh period mean vsync paces us (slower ones: missed vblanks)
            self.mode = "vsync" if median >= 0.75 * self.period_s else "clock"
            self._deadline_s = now_s + self.period_s
            log.info("stage pacing: %s (%.1f Hz)", self.mode, 1.0 / self.period_s)

    def intervals_s(self) -> np.ndarray:
        """Seconds between the last (up to 600) presents, oldest first."""
        return np.diff(np.asarray(self._presents, dtype=np.float64))

    def presents_per_s(self) -> float:
        """Presents during the last second, per second."""
        if len(self._presents) < 2:
            return 0.0
        newest = self._presents[-1]
        recent = [t for t in self._presents if newest - t <= 1.0]
        return (len(recent) - 1) / max(newest - recent[0], 1e-6) if len(recent) > 1 else 0.0

    def wait_until(self, when_s: float) -> None:
        """Sleep until when_s (monotonic), waking early by the recently seen sleep overshoot and yielding after."""
        remaining = when_s - time.monotonic()
        if remaining <= 0:
            return
        margin = min(_MAX_WAKE_MARGIN_S, float(np.percentile(self._overshoots, 90))) if self._overshoots else 0.0
        if remaining > margin:
            wake_s = when_s - margin
            time.sleep(remaining - margin)
            self._overshoots.append(max(0.0, time.monotonic() - wake_s))
        while time.monotonic() < when_s:
            time.sleep(0)  # releases the GIL each turn while the last fraction of a millisecond runs out
