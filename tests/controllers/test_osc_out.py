"""OSC out: state and parameter values reach a receiver over UDP, latest value wins, at a bounded rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

from controllers.base import ControlEvent
from controllers.osc_out import OscOutConfig, OscSender


class Received:
    def __init__(self) -> None:
        self.events: list[ControlEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: ControlEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, source: str, value: float, timeout_s: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: any(e.source == source and e.value == pytest.approx(value) for e in self.events), timeout_s)


@pytest.fixture
def receiver() -> Iterator[tuple[Received, int]]:
    """A plain python-osc server standing in for TouchDesigner's OSC In."""
    received = Received()
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda address, *args: received(ControlEvent("osc" + address, args[0], 0.0)))
    server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield received, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_state_and_params_reach_a_receiver_at_a_bounded_rate(receiver: tuple[Received, int]) -> None:
    received, port = receiver
    with OscSender(OscOutConfig(port=port, rate_hz=50.0)) as sender:
        for i in range(1000):  # a tight loop of changes, far faster than the send rate
            sender.set_param("speed", i / 1000)
        sender.set_state(fps=29.5, bpm=120.0, beat=3.25)
        assert received.wait_for("osc/livekit/speed", 0.999)
        assert received.wait_for("osc/livekit/state/beat", 3.25)
    speeds = [e.value for e in received.events if e.source == "osc/livekit/speed"]
    assert len(speeds) < 100  # latest value wins: most of the 1000 changes never went out
    assert speeds[-1] == pytest.approx(0.999)
    assert any(e.source == "osc/livekit/state/fps" and e.value == pytest.approx(29.5) for e in received.events)


def test_only_changes_are_sent_until_a_refresh_is_due() -> None:
    sender = OscSender(OscOutConfig(port=9, refresh_s=2.0))  # discard port: nobody listens, nothing fails
    t0 = time.monotonic()
    sender.set("/livekit/hue", 0.5)
    sender.set("/livekit/text", "hello")
    sender.set("/livekit/bad", float("nan"))  # dropped
    assert sender.flush(t0) == 2
    assert sender.flush(t0) == 0
    sender.set("/livekit/hue", 0.5)
    assert sender.flush(t0) == 0  # same value: nothing to send
    sender.set("/livekit/hue", 0.6)
    assert sender.flush(t0) == 1
    assert sender.flush(t0 + 2.5) == 2  # refresh: a receiver started later catches up


def test_config_and_address_validation() -> None:
    with pytest.raises(ValueError, match="rate_hz"):
        OscOutConfig(rate_hz=0)
    with pytest.raises(ValueError, match="port must be in range 1..65535"):
        OscOutConfig(port=0)
    with pytest.raises(ValueError, match="start with '/'"):
        OscSender().set("livekit/x", 1.0)
