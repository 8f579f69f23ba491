"""OSC in: one UDP server thread, python-osc's Dispatcher with a default handler, validated routing to ControlEvents.

Addresses (source key = ``"osc" + address``, value as sent unless noted):

- ``/livekit/<param>`` one number: a declared parameter, in the parameter's own units.
- ``/livekit/prompt`` string; ``/livekit/prompt/<i>`` string; ``/livekit/prompt/<i>/weight`` number >= 0.
- ``/livekit/seed`` integer; ``/livekit/seed/<i>`` integer; ``/livekit/seed/<i>/weight`` number >= 0.
- ``/livekit/guidance`` number >= 0; ``/livekit/scene`` scene index (integer >= 0) or scene name (string).
- ``/<param>`` one number, where <param> is a declared parameter: the same as ``/livekit/<param>`` (TouchDesigner's
  OSC Out CHOP sends each channel as its name with one float, so a channel named like the parameter just works).
- Any other address with one number: passed through as ``osc<address>`` for sketch mappings (``passthrough``).
- AbletonOSC's ``/live/song/get/beat`` (or ``/live/song/beat``), ``/live/song/get/tempo``,
  ``/live/song/get/is_playing`` and ``/live/song/get/signature_numerator`` drive an `AbletonClock`.

Everything else (wrong types, NaN/inf, out-of-range values, unknown addresses, oversized strings, malformed
packets) is ignored and counted per address; each address's first problem is logged, at a bounded rate.
No queue sits between the socket and the sink, so a flood costs CPU, never memory; the latest value wins.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import pythonosc
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_packet import OscPacket, ParseError
from pythonosc.osc_server import BlockingOSCUDPServer

from controllers.ableton import ABLETON_ADDRESSES, AbletonClock, one_number
from controllers.base import ControlEvent, ControlSink, TempoState

log = logging.getLogger(__name__)

DEFAULT_OSC_PORT = 9000  # what livekit listens on unless told otherwise (TouchOSC, TouchDesigner, Max examples use it)
SEED_MAX = 2**32 - 1
MALFORMED = "<malformed>"  # problem key of packets that are not OSC at all
OTHER = "<other>"  # problem key once too many distinct addresses misbehaved

ParamSpec = Mapping[str, "tuple[float, float] | None"] | Iterable[str] | None  # names, or names -> (low, high)


@dataclass(frozen=True)
class OscConfig:
    """Where the OSC server listens and what it accepts."""

    host: str = "127.0.0.1"  # bind address; "0.0.0.0" accepts the network (phones, another computer)
    port: int = DEFAULT_OSC_PORT  # UDP port; 0 picks a free one (tests); AbletonOSC replies go to 11001
    max_string_chars: int = 1000  # longer prompts / scene names are rejected (CLIP reads 77 tokens anyway)
    max_address_chars: int = 200  # longer addresses are rejected
    max_slots: int = 16  # prompt and seed slots are 0..max_slots-1
    guidance_range: tuple[float, float] = (0.0, 50.0)  # /livekit/guidance outside this is rejected
    passthrough: bool = True  # other addresses with one number arrive as osc<address> (TouchDesigner channels)

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError('host must be an address to bind, e.g. "127.0.0.1" (this machine) or "0.0.0.0" (network)')
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in range 0..65535 (0 picks a free port), got {self.port}")
        if self.max_string_chars < 1 or self.max_address_chars < 10 or self.max_slots < 1:
            raise ValueError("max_string_chars and max_slots must be >= 1 and max_address_chars >= 10")
        low, high = self.guidance_range
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"guidance_range must be finite (low, high) with low <= high, got {self.guidance_range}")


class Problem(NamedTuple):
    """How often input on one address was rejected, and the latest reason."""

    count: int
    reason: str


class ProblemLog:
    """Counts rejected input per address; logs each address's first problem, at most `max_lines` per `window_s`."""

    def __init__(self, label: str = "osc", max_keys: int = 256, max_lines: int = 5, window_s: float = 10.0) -> None:
        self._label, self._max_keys, self._max_lines, self._window_s = label, max_keys, max_lines, window_s
        self._lock = threading.Lock()
        self._problems: dict[str, Problem] = {}
        self._total = 0
        self._lines: list[float] = []  # times of recent log lines
        self._unlogged = 0

    def report(self, key: str, reason: str) -> None:
        """Count one rejected message or packet under `key` (its address)."""
        with self._lock:
            self._total += 1
            if key not in self._problems and len(self._problems) >= self._max_keys:
                key = OTHER  # the table stays bounded under a flood of distinct bad addresses
            previous = self._problems.get(key)
            self._problems[key] = Problem(1 if previous is None else previous.count + 1, reason)
            if previous is not None:
                return
            now = time.monotonic()
            self._lines = [t for t in self._lines if now - t < self._window_s]
            if len(self._lines) >= self._max_lines:
                self._unlogged += 1
                return
            self._lines.append(now)
            unlogged, self._unlogged = self._unlogged, 0
        more = f" ({unlogged} more new problem addresses not logged)" if unlogged else ""
        log.warning("%s: ignoring %s: %s (counted; reported once per address)%s", self._label, key[:80], reason, more)

    @property
    def total(self) -> int:
        """All rejections so far."""
        return self._total

    def snapshot(self) -> dict[str, Problem]:
        """Problems per address, for a HUD or a test."""
        with self._lock:
            return dict(self._problems)


def _params(spec: ParamSpec) -> dict[str, tuple[float, float] | None] | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        raise ValueError("params must be a collection of names (or a mapping of names to ranges), not one string")
    out = dict(spec.items()) if isinstance(spec, Mapping) else {name: None for name in spec}
    for name, rng in out.items():
        if not name or "/" in name:
            raise ValueError(f"parameter names must be non-empty and contain no '/', got {name!r}")
        if rng is not None and not (len(rng) == 2 and rng[0] <= rng[1]):
            raise ValueError(f"range of parameter {name!r} must be (low, high) with low <= high, got {rng!r}")
    return out


class OscRouter:
    """Validates OSC messages and hands ControlEvents to a sink; no I/O (feed it datagrams via `dispatcher`)."""

    def __init__(self, sink: ControlSink, config: OscConfig | None = None, params: ParamSpec = None,
                 clock: AbletonClock | None = None) -> None:
        self.sink = sink
        self.config = config or OscConfig()
        self.clock = clock or AbletonClock()
        self.problems = ProblemLog("osc")
        self.received = 0  # messages accepted
        self._params = _params(params)
        self.dispatcher = _CountingDispatcher(self.malformed)
        self.dispatcher.set_default_handler(self.handle)

    def set_params(self, params: ParamSpec) -> None:
        """Which names `/livekit/<param>` accepts (names, or names -> (low, high)); None accepts every name."""
        self._params = _params(params)  # one reference swap: the server thread sees the old or the new table

    def malformed(self, reason: str) -> None:
        """Count a packet that could not be parsed at all."""
        self.problems.report(MALFORMED, reason)

    def handle(self, address: str, *args: Any) -> None:
        """Route one message (python-osc default-handler signature); bad input is counted, never raised."""
        now = time.monotonic()
        if len(address) > self.config.max_address_chars:
            self.problems.report(address[:40] + "...", f"address longer than {self.config.max_address_chars} chars")
            return
        if address in ABLETON_ADDRESSES:
            reason = self.clock.handle(address, args, now)
            if reason is None:
                self.received += 1
            else:
                self.problems.report(address, reason)
            return
        result = self._route(address, args)
        if isinstance(result, str):
            self.problems.report(address, result)
            return
        source, value = result
        self.received += 1
        self.sink(ControlEvent(source, value, now))

    def _route(self, address: str, args: tuple[Any, ...]) -> tuple[str, float | str] | str:
        """(source, value) for a valid message, else the reason it was rejected."""
        params = self._params
        if address.startswith("/livekit/"):
            parts = address[len("/livekit/"):].split("/")
            head = parts[0]
            if head in ("prompt", "seed"):
                return self._slot_message(head, parts[1:], args)
            if len(parts) != 1 or not head:
                return "unknown address (see docs/controls.md for the /livekit/ addresses)"
            if head == "guidance":
                return self._ranged("osc/livekit/guidance", args, self.config.guidance_range)
            if head == "scene":
                return self._scene(args)
            if params is not None and head not in params:
                return f"unknown parameter {head!r} (this sketch declares: {', '.join(sorted(params)) or 'none'})"
            return self._ranged(f"osc/livekit/{head}", args, None if params is None else params[head])
        name = address[1:]
        if params is not None and name in params:  # TouchDesigner: a CHOP channel named like the parameter
            return self._ranged(f"osc/livekit/{name}", args, params[name])
        if self.config.passthrough and address.startswith("/"):
            value = one_number(args)
            return value if isinstance(value, str) else ("osc" + address, value)
        return "unknown address"

    def _ranged(self, source: str, args: tuple[Any, ...], rng: tuple[float, float] | None) -> tuple[str, float] | str:
        value = one_number(args)
        if isinstance(value, str):
            return value
        if rng is not None and not rng[0] <= value <= rng[1]:
            return f"{value} is out of range {rng[0]}..{rng[1]}"
        return source, value

    def _slot_message(self, head: str, rest: list[str], args: tuple[Any, ...]) -> tuple[str, float | str] | str:
        if rest:
            if not (rest[0].isascii() and rest[0].isdigit()) or int(rest[0]) >= self.config.max_slots:
                return f"{head} slot must be an integer in range 0..{self.config.max_slots - 1}, got {rest[0]!r}"
            slot = f"/{int(rest[0])}"
            if len(rest) == 2 and rest[1] == "weight":
                return self._ranged(f"osc/livekit/{head}{slot}/weight", args, (0.0, math.inf))
            if len(rest) != 1:
                return "unknown address (see docs/controls.md for the /livekit/ addresses)"
        else:
            slot = ""
        source = f"osc/livekit/{head}{slot}"
        if head == "prompt":
            return self._string(source, args)
        value = one_number(args)
        if isinstance(value, str):
            return value
        if not value.is_integer() or not 0 <= value <= SEED_MAX:
            return f"seed must be an integer in range 0..{SEED_MAX}, got {value}"
        return source, value

    def _string(self, source: str, args: tuple[Any, ...]) -> tuple[str, str] | str:
        if len(args) != 1 or not isinstance(args[0], str):
            return f"expects one string, got {[type(a).__name__ for a in args]}"
        if len(args[0]) > self.config.max_string_chars:
            return f"string of {len(args[0])} chars is longer than {self.config.max_string_chars}"
        return source, args[0]

    def _scene(self, args: tuple[Any, ...]) -> tuple[str, float | str] | str:
        if len(args) == 1 and isinstance(args[0], str):
            return self._string("osc/livekit/scene", args)
        value = one_number(args)
        if isinstance(value, str):
            return "expects a scene index or a scene name"
        if not value.is_integer() or value < 0:
            return f"scene index must be an integer >= 0, got {value}"
        return "osc/livekit/scene", value


class _CountingDispatcher(Dispatcher):
    """python-osc's Dispatcher, but unparsable packets are counted and bundle timetags never make it sleep."""

    def __init__(self, on_malformed: Callable[[str], None]) -> None:
        super().__init__(strict_timing=False)
        self._on_malformed = on_malformed

    def call_handlers_for_packet(self, data: bytes, client_address: tuple[str, int]) -> list:
        """Dispatch every message of a packet now, in order; count a packet that does not parse."""
        try:
            packet = OscPacket(data)
        except (ParseError, ValueError, IndexError, OverflowError, struct.error) as exc:  # ValueError: bad UTF-8
            self._on_malformed(f"unparsable packet ({type(exc).__name__})")
            return []
        for timed in packet.messages:
            for handler in self.handlers_for_address(timed.message.address):
                handler.invoke(client_address, timed.message)
        return []


class _LibraryWarnings(logging.Filter):
    """python-osc logs its own warnings on the root logger, once per bad message: count them in the problem log."""

    _package = os.path.dirname(pythonosc.__file__)

    def __init__(self, problems: ProblemLog) -> None:
        super().__init__()
        self.problems = problems

    def filter(self, record: logging.LogRecord) -> bool:
        """Swallow python-osc's records (reported once, rate-limited, through the problem log); pass the rest."""
        if not record.pathname.startswith(self._package):
            return True
        self.problems.report("<python-osc>", record.getMessage()[:120])
        return False


class _Server(BlockingOSCUDPServer):
    max_packet_size = 65507  # the largest UDP payload: an oversized string is read whole and rejected as such

    def __init__(self, address: tuple[str, int], router: OscRouter) -> None:
        self.router = router
        super().__init__(address, router.dispatcher)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        ok = super().verify_request(request, client_address)
        if not ok:
            self.router.malformed("not an OSC message or bundle")
        return ok

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]  # the server thread goes on; the failure is counted instead of printed
        self.router.problems.report("<error>", f"{type(exc).__name__}: {exc}")


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nobody listens on right now (for a server that must be told its port before it starts)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class OscServer:
    """Listens for OSC on one UDP port on one thread and delivers ControlEvents to a sink (called on that thread)."""

    def __init__(self, sink: ControlSink, config: OscConfig | None = None, params: ParamSpec = None) -> None:
        self.config = config or OscConfig()
        self.router = OscRouter(sink, self.config, params)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._library_warnings = _LibraryWarnings(self.router.problems)

    def start(self) -> OscServer:
        """Bind the port and start the server thread; OSError with a hint if the port is taken."""
        if self._server is not None:
            return self
        host, port = self.config.host, self.config.port
        try:
            self._server = _Server((host, port), self.router)
        except OSError as exc:
            hint = "is another program (another livekit, an OSC In in TouchDesigner) using it? pick another port"
            raise OSError(exc.errno, f"cannot listen for OSC on {host}:{port} ({exc.strerror}); {hint}") from exc
        logging.getLogger().addFilter(self._library_warnings)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="livekit-osc", daemon=True)
        self._thread.start()
        log.info("OSC: listening on %s:%d", host, self.port)
        return self

    @property
    def port(self) -> int:
        """The bound UDP port (the real one when config.port is 0)."""
        return self.config.port if self._server is None else self._server.server_address[1]

    @property
    def clock(self) -> AbletonClock:
        """The AbletonOSC clock this server feeds."""
        return self.router.clock

    def tempo(self) -> TempoState | None:
        """Ableton's tempo and beat, if AbletonOSC messages arrive here."""
        return self.router.clock.tempo()

    def set_params(self, params: ParamSpec) -> None:
        """Which parameter names (and ranges) `/livekit/<param>` accepts; None accepts all."""
        self.router.set_params(params)

    def problems(self) -> dict[str, Problem]:
        """Rejected input per address (count, latest reason)."""
        return self.router.problems.snapshot()

    def close(self) -> None:
        """Stop the thread and release the port."""
        server, self._server = self._server, None
        logging.getLogger().removeFilter(self._library_warnings)
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> OscServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
