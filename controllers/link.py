"""Ableton Link as a tempo source: join the session, follow its tempo and beat phase, change its tempo.

aalink (https://pypi.org/project/aalink) wraps Ableton's Link library for asyncio. A Link object has to be created
inside a running event loop, so `LinkClock` runs a private loop on a daemon thread and creates Link there; tempo,
beat and peer count are then read directly (Link's session state is thread safe). Setting the tempo (tap tempo, a
sketch) commits it to the session, so every other peer follows.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import Any

from controllers.base import TempoState

log = logging.getLogger(__name__)

_JOIN_DELAY_S = 0.5  # wait between creating Link and enabling it; shorter lets a joining peer impose its own tempo


class LinkUnavailable(RuntimeError):
    """aalink is not installed or Link could not start."""


def _import_aalink() -> Any:
    try:
        import aalink
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LinkUnavailable("Ableton Link needs the aalink package: pip install aalink") from exc
    return aalink


class LinkClock:
    """Membership in an Ableton Link session; ``tempo()`` gives the session's tempo and beat as a TempoState."""

    def __init__(self, bpm: float = 120.0, quantum: float = 4.0, beats_per_bar: int = 4) -> None:
        if not (math.isfinite(bpm) and 20.0 <= bpm <= 999.0):
            raise ValueError(f"bpm must be between 20 and 999 (Link's range), got {bpm}")
        if not (math.isfinite(quantum) and quantum > 0):
            raise ValueError(f"quantum must be > 0 beats, got {quantum}")
        if beats_per_bar < 1:
            raise ValueError(f"beats_per_bar must be >= 1, got {beats_per_bar}")
        aalink = _import_aalink()
        self.beats_per_bar = beats_per_bar
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="livekit-link", daemon=True)
        self._thread.start()

        async def create() -> Any:
            link = aalink.Link(float(bpm))
            link.quantum = float(quantum)
            return link

        try:
            self._link = asyncio.run_coroutine_threadsafe(create(), self._loop).result(timeout=5.0)
        except Exception as exc:
            self._stop_loop()
            raise LinkUnavailable(f"Ableton Link did not start: {exc}") from exc
        time.sleep(_JOIN_DELAY_S)
        self._link.enabled = True

    @property
    def num_peers(self) -> int:
        """Number of other Link peers in the session (0 when alone)."""
        return 0 if self._closed else int(self._link.num_peers)

    @property
    def bpm(self) -> float:
        """The session tempo in beats per minute."""
        return float(self._link.tempo)

    def tempo(self) -> TempoState | None:
        """The session's tempo and beat count now (None once closed); beat phase = beat % 1."""
        if self._closed:
            return None
        link = self._link
        beat = float(link.beat)  # Link's beat at Link's clock "now" ...
        now_s = time.monotonic()  # ... read within microseconds of this
        bpm = float(link.tempo)
        if not (math.isfinite(beat) and math.isfinite(bpm) and bpm > 0):
            return None
        return TempoState(bpm=bpm, beat=beat, time_s=now_s, running=True, beats_per_bar=self.beats_per_bar)

    def phase(self) -> float:
        """Position within the quantum (0..quantum beats), equal on every peer using the same quantum."""
        return float(self._link.phase)

    def set_bpm(self, bpm: float) -> None:
        """Change the session tempo for every peer (tap tempo, a sketch); ValueError outside 20..999 BPM."""
        if not (math.isfinite(bpm) and 20.0 <= bpm <= 999.0):
            raise ValueError(f"bpm must be between 20 and 999 (Link's range), got {bpm}")
        if not self._closed:
            self._link.tempo = float(bpm)

    def close(self) -> None:
        """Leave the session and stop the loop thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._link.enabled = False
        except Exception as exc:  # leaving must never raise into shutdown
            log.warning("Ableton Link: could not leave the session cleanly: %s", exc)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=1.0)

    def __enter__(self) -> LinkClock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
