"""OSC routing and validation without a socket: datagram bytes fed straight into the router's python-osc Dispatcher."""

from __future__ import annotations

import time

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from controllers.base import ControlEvent
from controllers.osc import MALFORMED, OTHER, OscConfig, OscRouter, ProblemLog


def msg(address: str, *args: object, types: str | None = None) -> bytes:
    builder = OscMessageBuilder(address)
    for i, arg in enumerate(args):
        builder.add_arg(arg, types[i] if types else None)
    return builder.build().dgram


class Sink:
    def __init__(self) -> None:
        self.events: list[ControlEvent] = []

    def __call__(self, event: ControlEvent) -> None:
        self.events.append(event)

    @property
    def latest(self) -> dict[str, float | str]:
        return {e.source: e.value for e in self.events}


def make(params=("speed", "zoom"), **config) -> tuple[OscRouter, Sink]:
    sink = Sink()
    return OscRouter(sink, OscConfig(port=0, **config), params), sink


def feed(router: OscRouter, *datagrams: bytes) -> None:
    for dgram in datagrams:
        router.dispatcher.call_handlers_for_packet(dgram, ("127.0.0.1", 50000))


def test_every_livekit_address_routes_to_its_source() -> None:
    router, sink = make()
    feed(router,
         msg("/livekit/speed", 0.25),
         msg("/livekit/zoom", 3),  # an int is a number too
         msg("/livekit/prompt", "a red square"),
         msg("/livekit/prompt/1", "blue fog"),
         msg("/livekit/prompt/1/weight", 0.5),
         msg("/livekit/seed", 42),
         msg("/livekit/seed/2", 7.0),  # TouchDesigner sends floats: an integral float is a seed
         msg("/livekit/seed/2/weight", 0.75),
         msg("/livekit/guidance", 7.5),
         msg("/livekit/scene", 2),
         msg("/livekit/scene", "drop"))
    assert sink.latest == {
        "osc/livekit/speed": 0.25, "osc/livekit/zoom": 3.0, "osc/livekit/prompt": "a red square",
        "osc/livekit/prompt/1": "blue fog", "osc/livekit/prompt/1/weight": 0.5, "osc/livekit/seed": 42.0,
        "osc/livekit/seed/2": 7.0, "osc/livekit/seed/2/weight": 0.75, "osc/livekit/guidance": 7.5,
        "osc/livekit/scene": "drop"}
    assert [e.value for e in sink.events if e.source == "osc/livekit/scene"] == [2.0, "drop"]
    assert router.problems.total == 0 and router.received == 11
    assert all(isinstance(e.value, float) for e in sink.events if not isinstance(e.value, str))


def test_touchdesigner_channels_work_without_configuration() -> None:
    router, sink = make()
    feed(router, msg("/speed", 0.5, types="f"),  # a CHOP channel named like a parameter
         msg("/tx", -1.25, types="f"),  # any other channel: passed through for sketch mappings
         msg("/1/fader3", 0.1, types="f"))  # TouchOSC-style paths as well
    assert sink.latest == {"osc/livekit/speed": 0.5, "osc/tx": -1.25, "osc/1/fader3": pytest.approx(0.1)}


def test_bundles_dispatch_at_once_in_order_even_with_future_timetags() -> None:
    router, sink = make()
    bundle = OscBundleBuilder(time.time() + 3600)  # an hour ahead: python-osc's default would sleep
    for value in (0.1, 0.2, 0.3):
        bundle.add_content(OscMessage(msg("/livekit/speed", value)))
    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(OscMessage(msg("/livekit/zoom", 1.0)))
    bundle.add_content(inner.build())
    started = time.monotonic()
    feed(router, bundle.build().dgram)
    assert time.monotonic() - started < 60  # i.e. it did not wait for the timetag
    assert [round(e.value, 3) for e in sink.events if e.source == "osc/livekit/speed"] == [0.1, 0.2, 0.3]
    assert sink.latest["osc/livekit/zoom"] == 1.0


@pytest.mark.parametrize(
    ("dgram", "key", "reason"),
    [
        (msg("/livekit/speed", "fast"), "/livekit/speed", "expects a number"),
        (msg("/livekit/speed", 0.1, 0.2), "/livekit/speed", "expects one number"),
        (msg("/livekit/speed"), "/livekit/speed", "expects one number"),
        (msg("/livekit/speed", float("nan")), "/livekit/speed", "finite"),
        (msg("/livekit/speed", float("inf"), types="d"), "/livekit/speed", "finite"),
        (msg("/livekit/speed", b"\x00\x01"), "/livekit/speed", "expects a number"),
        (msg("/livekit/warp", 1.0), "/livekit/warp", "unknown parameter 'warp'"),
        (msg("/livekit/speed/x", 1.0), "/livekit/speed/x", "unknown address"),
        (msg("/livekit/prompt", 3.0), "/livekit/prompt", "expects one string"),
        (msg("/livekit/prompt", "x" * 1001), "/livekit/prompt", "longer than 1000"),
        (msg("/livekit/prompt/99/weight", 1.0), "/livekit/prompt/99/weight", "slot must be an integer in range 0..15"),
        (msg("/livekit/prompt/-1/weight", 1.0), "/livekit/prompt/-1/weight", "slot must be"),
        (msg("/livekit/prompt/0/weight", -0.5), "/livekit/prompt/0/weight", "out of range"),
        (msg("/livekit/seed", 1.5), "/livekit/seed", "seed must be an integer"),
        (msg("/livekit/seed", -3), "/livekit/seed", "seed must be an integer"),
        (msg("/livekit/guidance", -1.0), "/livekit/guidance", "out of range"),
        (msg("/livekit/scene", 1.5), "/livekit/scene", "integer >= 0"),
        (msg("/livekit/scene", "x" * 2000), "/livekit/scene", "longer than"),
        (msg("/tx", "text"), "/tx", "expects a number"),
        (msg("/" + "a" * 300, 1.0), "/" + "a" * 39 + "...", "address longer than 200"),
        (b"\x00\x01garbage", MALFORMED, "unparsable"),
        (b"/livekit/speed\x00\x00,i\x00\x00\x00\x07", MALFORMED, "unparsable"),  # int32 cut short
        (b"/livekit/\xff\xfe\x00\x00", MALFORMED, "unparsable"),  # not UTF-8
        (b"#bundle\x00\x00\x00\x00", MALFORMED, "unparsable"),  # timetag cut short
    ],
)
def test_bad_input_is_ignored_and_counted_under_its_address(dgram: bytes, key: str, reason: str) -> None:
    router, sink = make()
    feed(router, dgram)
    feed(router, dgram)
    assert sink.events == []
    problems = router.problems.snapshot()
    assert list(problems) == [key]
    assert problems[key].count == 2
    assert reason in problems[key].reason


def test_declared_ranges_and_param_updates() -> None:
    router, sink = make(params={"speed": (0.0, 2.0), "zoom": None})
    feed(router, msg("/livekit/speed", 2.5), msg("/livekit/speed", 1.5), msg("/livekit/zoom", 1e6))
    assert sink.latest == {"osc/livekit/speed": 1.5, "osc/livekit/zoom": 1e6}
    assert "out of range 0.0..2.0" in router.problems.snapshot()["/livekit/speed"].reason
    router.set_params(["warp"])  # a reloaded sketch declares other parameters
    feed(router, msg("/livekit/warp", 0.3), msg("/livekit/zoom", 0.3))
    assert sink.latest["osc/livekit/warp"] == pytest.approx(0.3)
    assert "/livekit/zoom" in router.problems.snapshot()
    router.set_params(None)  # accept every name, let the consumer decide
    feed(router, msg("/livekit/anything", 1.0))
    assert sink.latest["osc/livekit/anything"] == 1.0
    with pytest.raises(ValueError, match="range of parameter"):
        router.set_params({"speed": (2.0, 1.0)})
    with pytest.raises(ValueError, match="not one string"):
        router.set_params("speed")


def test_passthrough_can_be_turned_off() -> None:
    router, sink = make(passthrough=False)
    feed(router, msg("/tx", 1.0), msg("/speed", 1.0))
    assert sink.latest == {"osc/livekit/speed": 1.0}
    assert router.problems.snapshot()["/tx"].reason == "unknown address"


def test_problem_log_reports_once_per_address_and_stays_bounded(caplog: pytest.LogCaptureFixture) -> None:
    problems = ProblemLog("osc", max_keys=3, max_lines=2, window_s=60.0)
    with caplog.at_level("WARNING", logger="controllers.osc"):
        for _ in range(100):
            problems.report("/a", "bad")
        for i in range(50):
            problems.report(f"/flood/{i}", "bad")
    snapshot = problems.snapshot()
    assert snapshot["/a"].count == 100
    assert len(snapshot) == 4 and snapshot[OTHER].count == 48  # /a, /flood/0, /flood/1, then one bucket
    assert problems.total == 150
    assert len(caplog.records) == 2  # rate-limited: not one line per bad message


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="port must be in range 0..65535"):
        OscConfig(port=70000)
    with pytest.raises(ValueError, match="host must be"):
        OscConfig(host="")
    with pytest.raises(ValueError, match="guidance_range"):
        OscConfig(guidance_range=(5.0, 1.0))
