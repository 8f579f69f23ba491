"""What the stage shows at a display instant: a crossfade between the last two generated frames, and scaling math.

No pygame here: the Stage feeds this from two threads (submit on the post-processing thread, advance on the main
thread) and draws what it returns, so the timing logic is tested with plain arrays and explicit clock values.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

SCALING_MODES = ("fit", "fill", "stretch")


def blend(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) * a + weight * b for two (H,W,3) uint8 frames, rounded, as uint8."""
    if weight <= 0.0:
        return a.copy()
    if weight >= 1.0:
        return b.copy()
    k = int(round(weight * 128))  # 7-bit fixed point: 255 * 128 fits int16, so a few int16 passes, no float32
    out = b.astype(np.int16)
    out -= a
    out *= k
    out += 64
    out >>= 7
    out += a
    return out.astype(np.uint8)


def scaled_rects(src_px: tuple[int, int], dst_px: tuple[int, int], mode: str,
                 ) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """(source crop, destination rect) as (x, y, w, h) to show a src_px (w, h) image in dst_px with fit/fill/stretch."""
    if mode not in SCALING_MODES:
        raise ValueError(f"scaling must be one of {', '.join(SCALING_MODES)}, got {mode!r}")
    sw, sh = src_px
    dw, dh = dst_px
    if min(sw, sh, dw, dh) <= 0:
        return (0, 0, max(sw, 0), max(sh, 0)), (0, 0, max(dw, 0), max(dh, 0))
    if mode == "stretch":
        return (0, 0, sw, sh), (0, 0, dw, dh)
    if mode == "fit":  # whole image visible, letterbox / pillarbox bars
        scale = min(dw / sw, dh / sh)
        w, h = max(1, round(sw * scale)), max(1, round(sh * scale))
        return (0, 0, sw, sh), ((dw - w) // 2, (dh - h) // 2, w, h)
    scale = max(dw / sw, dh / sh)  # fill: whole window covered, centre crop of the image
    cw, ch = min(sw, max(1, round(dw / scale))), min(sh, max(1, round(dh / scale)))
    return ((sw - cw) // 2, (sh - ch) // 2, cw, ch), (0, 0, dw, dh)


@dataclass(frozen=True)
class MixState:
    """What to draw now: `previous` under `current` at opacity `weight`; `version` changes when a frame changes."""

    previous: np.ndarray | None  # (H,W,3) uint8 the fade starts from; None = nothing under `current`
    current: np.ndarray | None  # (H,W,3) uint8 the fade goes to; None before the first frame
    weight: float  # opacity of `current` in 0..1
    version: int  # bumps whenever `previous` or `current` is a different array
    frozen: bool  # True while the shown frame is held by freeze()

    def frame(self) -> np.ndarray | None:
        """The mixed (H,W,3) uint8 frame this state shows, or None before the first frame."""
        if self.current is None:
            return None
        if self.previous is None or self.weight >= 1.0:
            return self.current
        return blend(self.previous, self.current, self.weight)


class FrameMixer:
    """Newest-wins frame slot plus the crossfade timeline; submit() from any thread, advance() from the display."""

    def __init__(self, crossfade_max_s: float = 0.5) -> None:
        if crossfade_max_s < 0:
            raise ValueError(f"crossfade_max_s must be >= 0 (0 disables crossfading), got {crossfade_max_s}")
        self._crossfade_max_s = crossfade_max_s
        self._lock = threading.Lock()
        self._pending: np.ndarray | None = None  # newest submitted frame not yet taken by advance()
        self._last_submit_s: float | None = None
        self._interval_s: float | None = None  # smoothed time between submitted frames
        self._submitted = 0
        # display-side state, touched only by advance()/freeze() on the display thread
        self._previous: np.ndarray | None = None
        self._current: np.ndarray | None = None
        self._fade_start_s = 0.0
        self._fade_s = 0.0
        self._frozen: np.ndarray | None = None
        self._version = 0

    def submit(self, frame: np.ndarray, now_s: float) -> None:
        """Offer a generated (H,W,3) uint8 frame that arrived at now_s (a monotonic clock); never blocks for long."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8, got shape {frame.shape} dtype {frame.dtype}")
        copy = np.array(frame, dtype=np.uint8, order="C", copy=True)  # the producer may reuse its buffer
        with self._lock:
            if self._last_submit_s is not None:
                gap = min(max(now_s - self._last_submit_s, 0.0), 2.0)
                self._interval_s = gap if self._interval_s is None else 0.8 * self._interval_s + 0.2 * gap
            self._last_submit_s = now_s
            self._pending = copy
            self._submitted += 1

    @property
    def submitted(self) -> int:
        """How many frames submit() has received."""
        return self._submitted

    @property
    def generated_fps(self) -> float:
        """Smoothed rate of submitted frames (0 before two frames)."""
        interval = self._interval_s
        return 1.0 / interval if interval else 0.0

    def stalled_s(self, now_s: float) -> float:
        """Seconds since the last submitted frame (0 before the first)."""
        last = self._last_submit_s
        return 0.0 if last is None else max(0.0, now_s - last)

    def advance(self, now_s: float) -> MixState:
        """Take the newest submitted frame if any and return what to draw at now_s (holds the last frame on stalls)."""
        with self._lock:
            pending, self._pending = self._pending, None
            interval = self._interval_s
        if self._frozen is not None:
            if pending is not None:
                self._current, self._previous = pending, None  # remembered for unfreeze, not shown
            return MixState(None, self._frozen, 1.0, self._version, True)
        if pending is not None:
            self._start_fade(self._shown(now_s), pending, now_s, interval)
        return MixState(self._previous, self._current, self._weight(now_s), self._version, False)

    def freeze(self, now_s: float) -> None:
        """Hold the frame shown at now_s until unfreeze(); new frames are still taken, just not shown."""
        if self._frozen is None:
            self._frozen = self._shown(now_s)
            self._version += 1

    def unfreeze(self, now_s: float) -> None:
        """Resume showing generated frames, crossfading from the held frame to the newest one."""
        if self._frozen is None:
            return
        held, self._frozen = self._frozen, None
        with self._lock:
            pending, self._pending = self._pending, None
            interval = self._interval_s
        target = pending if pending is not None else self._current
        self._current = None
        self._start_fade(held, target, now_s, interval)

    @property
    def frozen(self) -> bool:
        """True while freeze() holds the shown frame."""
        return self._frozen is not None

    def _weight(self, now_s: float) -> float:
        if self._previous is None or self._fade_s <= 0.0:
            return 1.0
        return float(min(1.0, max(0.0, (now_s - self._fade_start_s) / self._fade_s)))

    def _shown(self, now_s: float) -> np.ndarray | None:
        """The frame on screen at now_s, materialised (a blend only when a fade is in progress)."""
        return MixState(self._previous, self._current, self._weight(now_s), self._version, False).frame()

    def _start_fade(self, start: np.ndarray | None, target: np.ndarray | None, now_s: float,
                    interval_s: float | None) -> None:
        self._version += 1
        self._current = target
        same_shape = start is not None and target is not None and start.shape == target.shape
        self._previous = start if same_shape and self._crossfade_max_s > 0 else None  # a size change cuts
        self._fade_start_s = now_s
        # fade over about one generation interval, so the next frame lands as this fade ends
        self._fade_s = min(self._crossfade_max_s, interval_s) if interval_s else 0.0
