"""OSC through real UDP on loopback: every documented address, TouchDesigner-style floats, AbletonOSC as a clock,
malformed input that changes nothing, and a 10,000 messages/s flood that keeps memory flat."""

from __future__ import annotations

import socket
import threading
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

from controllers.ableton import subscribe_ableton
from controllers.base import ControlEvent
from controllers.osc import MALFORMED, OscConfig, OscServer

TIMEOUT_S = 5.0


class Latest:
    """A ControlSink that keeps only the latest value per source (like the parameter bus) and can be waited on."""

    def __init__(self) -> None:
        self.values: dict[str, float | str] = {}
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self, event: ControlEvent) -> None:
        with self._cond:
            self.values[event.source] = event.value
            self.count += 1
            self._cond.notify_all()

    def wait(self, predicate: Callable[[dict[str, float | str]], bool], timeout_s: float = TIMEOUT_S) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.values), timeout_s)


def dgram(address: str, *args: object, types: str | None = None) -> bytes:
    builder = OscMessageBuilder(address)
    for i, arg in enumerate(args):
        builder.add_arg(arg, types[i] if types else None)
    return builder.build().dgram


@pytest.fixture
def served() -> Iterator[tuple[OscServer, Latest, socket.socket]]:
    sink = Latest()
    server = OscServer(sink, OscConfig(port=0), params={"speed": (0.0, 1.0), "zoom": None}).start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        yield server, sink, sender
    finally:
        sender.close()
        server.close()


def send(served: tuple[OscServer, Latest, socket.socket], *datagrams: bytes) -> None:
    server, _, sender = served
    for data in datagrams:
        sender.sendto(data, ("127.0.0.1", server.port))


def test_binds_loopback_by_default_on_the_documented_port() -> None:
    assert OscConfig().host == "127.0.0.1"
    assert OscConfig().port == 9000


def test_every_documented_address_over_udp(served) -> None:
    server, sink, _ = served
    client = SimpleUDPClient("127.0.0.1", server.port)
    client.send_message("/livekit/speed", 0.25)
    client.send_message("/livekit/prompt", "a red square")
    client.send_message("/livekit/prompt/1", "blue fog")
    client.send_message("/livekit/prompt/1/weight", 0.5)
    client.send_message("/livekit/seed", 42)
    client.send_message("/livekit/seed/1", 7)
    client.send_message("/livekit/seed/1/weight", 0.75)
    client.send_message("/livekit/guidance", 7.5)
    client.send_message("/livekit/scene", "drop")
    client.send_message("/speed", 0.5)  # TouchDesigner OSC Out CHOP: channel name as address, one float
    client.send_message("/tx", -1.25)
    client.send_message("/livekit/zoom", 2.0)  # sent last: once it is here, everything before it is too
    assert sink.wait(lambda v: "osc/livekit/zoom" in v), f"got {sink.values}; problems {server.problems()}"
    assert sink.values == {
        "osc/livekit/speed": 0.5, "osc/livekit/prompt": "a red square", "osc/livekit/prompt/1": "blue fog",
        "osc/livekit/prompt/1/weight": 0.5, "osc/livekit/seed": 42.0, "osc/livekit/seed/1": 7.0,
        "osc/livekit/seed/1/weight": 0.75, "osc/livekit/guidance": 7.5, "osc/livekit/scene": "drop",
        "osc/tx": -1.25, "osc/livekit/zoom": 2.0}
    assert server.problems() == {}


def test_malformed_input_is_ignored_counted_and_nothing_crashes(served) -> None:
    server, sink, _ = served
    send(served,
         b"",  # empty datagram
         b"\x00\xffnot osc at all",
         b"/livekit/speed\x00\x00,i\x00\x00\x00\x07",  # argument cut short
         b"/livekit/\xff\xfe\x00\x00",  # address is not UTF-8
         b"#bundle\x00\x00\x00",  # bundle cut short
         dgram("/livekit/speed", float("nan")),
         dgram("/livekit/speed", float("inf"), types="d"),
         dgram("/livekit/speed", "fast"),
         dgram("/livekit/speed", 1.5),  # declared range is 0..1
         dgram("/livekit/warp", 1.0),  # not a declared parameter
         dgram("/livekit/prompt", "x" * 5000),
         dgram("/livekit/seed", 0.5),
         dgram("/livekit/prompt/0/weight", -1.0),
         dgram("/livekit/speed", 0.1, 0.2),
         dgram("/livekit/zoom", 1.0))  # a good message after all that
    assert sink.wait(lambda v: "osc/livekit/zoom" in v), server.problems()
    assert "osc/livekit/speed" not in sink.values and "osc/livekit/prompt" not in sink.values
    problems = server.problems()
    assert problems[MALFORMED].count == 5
    assert problems["/livekit/speed"].count == 5
    assert {"/livekit/warp", "/livekit/prompt", "/livekit/seed", "/livekit/prompt/0/weight"} <= set(problems)
    assert "longer than 1000" in problems["/livekit/prompt"].reason
    send(served, dgram("/livekit/speed", 0.75))  # the server still works
    assert sink.wait(lambda v: v.get("osc/livekit/speed") == 0.75)


def test_a_flood_of_10000_messages_per_second_keeps_memory_flat(served) -> None:
    server, sink, _ = served
    warmup = [dgram("/livekit/speed", i / 20000) for i in range(2000)]
    flood = [dgram("/livekit/speed", 0.1 + i / 20000) for i in range(10000)]
    stop = threading.Event()

    def blast(datagrams: list[bytes], marker: float) -> None:
        for start in range(0, len(datagrams), 1000):  # 1000 every 0.1 s = 10,000 messages/s
            send(served, *datagrams[start:start + 1000])
            stop.wait(0.1)
        send(served, dgram("/livekit/zoom", marker))

    tracemalloc.start()
    try:
        blast(warmup, 1.0)
        assert sink.wait(lambda v: v.get("osc/livekit/zoom") == 1.0)
        before = tracemalloc.get_traced_memory()[0]
        blast(flood, 2.0)
        # another address sent after the flood still gets through
        assert sink.wait(lambda v: v.get("osc/livekit/zoom") == 2.0)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 256 * 1024, f"memory grew by {grown} bytes during the flood"
    assert sink.values["osc/livekit/speed"] >= 0.1  # the latest flood value won
    assert sink.count > 1000  # most of the flood really was handled, not dropped before the router
    assert server.problems() == {}


def test_abletonosc_beat_and_tempo_drive_the_clock(served) -> None:
    server, sink, _ = served
    assert server.tempo() is None
    send(served, dgram("/live/song/get/tempo", 124.0, types="f"), dgram("/live/song/get/signature_numerator", 3),
         dgram("/live/song/get/beat", 7), dgram("/livekit/zoom", 1.0))
    assert sink.wait(lambda v: "osc/livekit/zoom" in v)
    state = server.tempo()
    assert state.bpm == 124.0
    assert 7.0 <= state.beat <= 8.0 and state.running and state.beats_per_bar == 3
    send(served, dgram("/live/song/get/is_playing", False), dgram("/livekit/zoom", 2.0))
    assert sink.wait(lambda v: v.get("osc/livekit/zoom") == 2.0)
    assert not server.tempo().running
    send(served, dgram("/live/song/get/tempo", "fast"), dgram("/livekit/zoom", 3.0))
    assert sink.wait(lambda v: v.get("osc/livekit/zoom") == 3.0)
    assert "/live/song/get/tempo" in server.problems()


def test_subscribe_ableton_asks_for_the_clock_messages() -> None:
    fake_live = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fake_live.bind(("127.0.0.1", 0))
    fake_live.settimeout(TIMEOUT_S)
    try:
        subscribe_ableton("127.0.0.1", fake_live.getsockname()[1])
        addresses = {OscMessage(fake_live.recv(1024)).address for _ in range(7)}
    finally:
        fake_live.close()
    assert {"/live/song/start_listen/beat", "/live/song/start_listen/tempo", "/live/song/get/tempo"} <= addresses


def test_a_taken_port_is_explained(served) -> None:
    server, _, _ = served
    with pytest.raises(OSError, match="cannot listen for OSC on 127.0.0.1:.*pick another port"):
        OscServer(lambda e: None, OscConfig(port=server.port)).start()
