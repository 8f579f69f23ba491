"""AbletonOSC as a clock: tempo and beat position from its listener messages.

AbletonOSC (github.com/ideoforms/AbletonOSC) listens on UDP 11000 and sends every reply and listener update to port
11001 of the host that last wrote to it. `subscribe_ableton` asks it for beats (``/live/song/get/beat <int>`` on each
beat), tempo, play state and time signature; an OscServer on port 11001 then feeds them to its `AbletonClock`.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from pythonosc.udp_client import SimpleUDPClient

from controllers.base import TempoState

ABLETON_OSC_PORT = 11000  # where AbletonOSC listens
ABLETON_REPLY_PORT = 11001  # where AbletonOSC always sends its replies and listener updates
ABLETON_ADDRESSES = frozenset({"/live/song/get/beat", "/live/song/beat", "/live/song/get/tempo",
                               "/live/song/get/is_playing", "/live/song/get/signature_numerator",
                               "/live/song/get/current_song_time"})
_LISTEN = ("beat", "tempo", "is_playing", "signature_numerator", "current_song_time")


def one_number(args: tuple[Any, ...]) -> float | str:
    """The one finite number in an OSC message's args, or why not (a str)."""
    if len(args) != 1:
        return f"expects one number, got {len(args)} arguments"
    value = args[0]
    if not isinstance(value, (int, float)):  # bool is an int: T/F arrive as 1/0
        return f"expects a number, got {type(value).__name__}"
    value = float(value)
    if not math.isfinite(value):
        return f"expects a finite number, got {value}"
    return value


def subscribe_ableton(host: str = "127.0.0.1", port: int = ABLETON_OSC_PORT) -> None:
    """Ask AbletonOSC to push beat, tempo, play state and time signature (replies go to this host, port 11001)."""
    client = SimpleUDPClient(host, port)
    for prop in _LISTEN:
        client.send_message(f"/live/song/start_listen/{prop}", [])
    for prop in _LISTEN[1:]:
        client.send_message(f"/live/song/get/{prop}", [])


class AbletonClock:
    """Tempo and beat from AbletonOSC listener messages (beat numbers on each beat, tempo on change)."""

    def __init__(self, lost_after_beats: float = 2.0) -> None:
        self._lock = threading.Lock()
        self._lost_after_beats = lost_after_beats  # no beat message for this many beats: running = False
        self._bpm: float | None = None
        self._beat: float | None = None
        self._beat_s = 0.0
        self._beat_interval_s: float | None = None
        self._playing = True
        self._beats_per_bar = 4

    def handle(self, address: str, args: tuple[Any, ...], time_s: float) -> str | None:
        """Take one AbletonOSC message; returns why it was rejected, or None."""
        value = one_number(args)
        if isinstance(value, str):
            return value
        with self._lock:
            if address.endswith("/tempo"):
                if not 1.0 <= value <= 999.0:  # Live's own tempo range is 20..999
                    return f"tempo {value} is out of range 1..999"
                self._bpm = value
            elif address.endswith("/is_playing"):
                self._playing = bool(value)
            elif address.endswith("/signature_numerator"):
                if not 1 <= value <= 99:
                    return f"signature numerator {value} is out of range 1..99"
                self._beats_per_bar = int(value)
            elif address.endswith("/current_song_time"):  # the song position in beats: follows a jump at once
                if value < 0:
                    return f"song time {value} must be >= 0 beats"
                self._beat, self._beat_s = value, time_s
            else:  # a beat message (a number that is not the next beat is a jump: taken as the new position)
                if self._beat is not None and value == math.floor(self._beat) + 1:
                    self._beat_interval_s = time_s - self._beat_s
                self._beat, self._beat_s, self._playing = value, time_s, True
        return None

    @property
    def stopped(self) -> bool:
        """True while Live reports it is not playing: the master clock holds the beat."""
        return not self._playing

    def tempo(self, now_s: float | None = None) -> TempoState | None:
        """Tempo and beat position at now_s (default now), or None before Ableton sent a tempo or two beats."""
        now = time.monotonic() if now_s is None else now_s
        with self._lock:
            bpm = self._bpm
            if bpm is None and self._beat_interval_s:
                bpm = 60.0 / self._beat_interval_s
            if bpm is None:
                return None
            if self._beat is None:
                return TempoState(bpm=bpm, beat=0.0, time_s=now, running=False, beats_per_bar=self._beats_per_bar)
            beats_since = max(0.0, now - self._beat_s) * bpm / 60.0
            running = self._playing and beats_since <= self._lost_after_beats
            beat = self._beat + (min(beats_since, 1.0) if running else 0.0)
            return TempoState(bpm=bpm, beat=beat, time_s=now, running=running, beats_per_bar=self._beats_per_bar)
