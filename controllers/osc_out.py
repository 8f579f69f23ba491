"""OSC out: livekit's state (fps, bpm, beat, parameter values) sent to host:port at a bounded rate.

Callers `set` values whenever they like (any thread, never blocks on the network); one sender thread sends, at
most `rate_hz` times a second, each address whose value changed, one message per address. Every `refresh_s` it
sends everything again, so a receiver started later catches up. Parameters go to ``/livekit/<param>`` (the
address OscServer reads, so a TouchDesigner OSC In CHOP shows the names its OSC Out CHOP sends) and state to
``/livekit/state/fps``, ``/livekit/state/bpm``, ``/livekit/state/beat``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from pythonosc.udp_client import SimpleUDPClient

log = logging.getLogger(__name__)

DEFAULT_OSC_OUT_PORT = 9001  # where state goes unless told otherwise (one above the input port)
OscValue = float | int | str


@dataclass(frozen=True)
class OscOutConfig:
    """Where state goes and how often."""

    host: str = "127.0.0.1"  # receiver's address
    port: int = DEFAULT_OSC_OUT_PORT  # receiver's UDP port
    rate_hz: float = 30.0  # at most this many sends per address per second
    refresh_s: float = 2.0  # resend every value this often (0 = only changes)

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError('host must be the receiver\'s address, e.g. "127.0.0.1"')
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be in range 1..65535, got {self.port}")
        if not 0 < self.rate_hz <= 1000:
            raise ValueError(f"rate_hz must be in range (0, 1000], got {self.rate_hz}")
        if self.refresh_s < 0:
            raise ValueError(f"refresh_s must be >= 0 (0 = only changes), got {self.refresh_s}")


class OscSender:
    """Sends the latest value of each address to one receiver at a bounded rate, from its own thread."""

    def __init__(self, config: OscOutConfig | None = None) -> None:
        self.config = config or OscOutConfig()
        self._client = SimpleUDPClient(self.config.host, self.config.port)
        self._lock = threading.Lock()
        self._latest: dict[str, OscValue] = {}  # newest value per address
        self._sent: dict[str, OscValue] = {}  # what the receiver last got
        self._last_refresh_s = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.messages_sent = 0

    def set(self, address: str, value: OscValue) -> None:
        """Make `value` the latest for `address` (sent on the next tick if changed); NaN and inf are dropped."""
        if not address.startswith("/"):
            raise ValueError(f"OSC addresses start with '/', got {address!r}")
        if isinstance(value, float) and not (math.isfinite(value) and abs(value) <= _FLOAT32_MAX):
            return  # OSC floats are 32-bit: a value past that range cannot be sent (and would kill the sender)
        with self._lock:
            self._latest[address] = value

    def set_param(self, name: str, value: OscValue) -> None:
        """Send a parameter value as ``/livekit/<name>``."""
        self.set(f"/livekit/{name}", value)

    def set_state(self, *, fps: float | None = None, bpm: float | None = None, beat: float | None = None) -> None:
        """Send frame rate, tempo and beat position as ``/livekit/state/<name>`` (None = leave as is)."""
        for name, value in (("fps", fps), ("bpm", bpm), ("beat", beat)):
            if value is not None:
                self.set(f"/livekit/state/{name}", float(value))

    def flush(self, now_s: float | None = None) -> int:
        """Send what changed (everything, when a refresh is due) now; returns how many messages went out."""
        now = time.monotonic() if now_s is None else now_s
        with self._lock:
            refresh = self.config.refresh_s > 0 and now - self._last_refresh_s >= self.config.refresh_s
            if refresh:
                self._last_refresh_s = now
            due = [(a, v) for a, v in self._latest.items() if refresh or self._sent.get(a, _UNSENT) != v]
        count = 0
        for address, value in due:
            try:
                self._client.send_message(address, value)
            except (OverflowError, ValueError, TypeError) as exc:  # a value OSC cannot carry: drop it, never stop
                log.debug("OSC out: dropped %s %r (%s)", address, value, exc)
                self._sent[address] = value
                continue
            except OSError as exc:  # receiver not there yet (ICMP refused), network down: keep the value, retry later
                if not self._failing:
                    config = self.config
                    log.warning("OSC out to %s:%d failed: %s (retrying quietly)", config.host, config.port, exc)
                    self._failing = True
                return count
            self._sent[address] = value
            count += 1
        self._failing = False
        self.messages_sent += count
        return count

    def _run(self) -> None:
        period = 1.0 / self.config.rate_hz
        while not self._stop.wait(period):
            self.flush()

    def start(self) -> OscSender:
        """Start the sender thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="livekit-osc-out", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the sender thread (values not yet sent are dropped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> OscSender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


_FLOAT32_MAX = 3.4028234663852886e38  # the largest finite 32-bit float
_UNSENT = object()
