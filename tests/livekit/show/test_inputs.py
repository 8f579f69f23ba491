"""The show's inputs: tempo confidence as OSC out sends it, and a missing MIDI port is not reported as connected."""

from __future__ import annotations

from types import SimpleNamespace

from livekit.show.inputs import InputOptions, Inputs


def _inputs() -> Inputs:
    return Inputs(lambda event: None, InputOptions(osc_port=0), set(), status=lambda text: None)


def test_confidence_is_zero_while_free_running_and_follows_the_leading_source() -> None:
    inputs = _inputs()
    inputs.clock = SimpleNamespace(active=None)
    assert inputs.tempo_confidence() == 0.0  # the 120 BPM default is not a measurement
    inputs.clock = SimpleNamespace(active="midi")
    assert inputs.tempo_confidence() == 1.0
    inputs.clock = SimpleNamespace(active="audio")
    inputs.audio = SimpleNamespace(analyzer=SimpleNamespace(beat_confidence=0.25))
    assert inputs.tempo_confidence() == 0.25


def test_a_midi_port_that_is_not_there_is_reported_not_claimed(jack) -> None:
    said: list[str] = []
    inputs = Inputs(lambda event: None, InputOptions(osc_port=0, midi_in="no-such-port-xyz",
                                                    midi_backend="mido.backends.rtmidi/UNIX_JACK"),
                    set(), status=said.append)
    inputs._start_midi()
    try:
        text = " ".join(said)
        assert "no port matches 'no-such-port-xyz'" in text
        assert "MIDI in: no-such-port-xyz +" not in text
    finally:
        inputs.close()


def test_link_leads_the_show_tempo_and_a_tap_reaches_the_peer() -> None:
    import time

    import pytest

    pytest.importorskip("aalink")
    from tests.controllers.test_link import Peer

    peer = Peer(133.0, 30.0)
    inputs = Inputs(lambda event: None, InputOptions(osc_port=0, link=True), set(), status=lambda text: None)
    try:
        assert peer.wait_for(lambda r: True, 10.0), "the Link peer process did not start"
        inputs.start()
        # livekit and the peer agree on the session tempo (the 133 +/- 0.1 within 3 s lock is tested with
        # LinkClock alone in tests/controllers/test_link.py; here: the show's clock follows Link)
        deadline = time.monotonic() + 6.0
        agreed = False
        while time.monotonic() < deadline and not agreed:
            state = inputs.tempo()
            agreed = bool(inputs.clock.active == "link" and peer.reports
                          and abs(state.bpm - peer.reports[-1]["bpm"]) < 0.1)
            time.sleep(0.02)
        assert agreed, (inputs.tempo(), inputs.clock.active, peer.reports[-1:])
        assert inputs.tempo_confidence() == 1.0
        assert peer.wait_for(lambda r: r["peers"] >= 1, 5.0)
        taps = [inputs.tap_tempo(time_s=100.0 + 0.6 * i) for i in range(4)]  # T tapped at 100 BPM
        assert taps[-1] == pytest.approx(100.0, abs=0.5)
        assert peer.wait_for(lambda r: abs(r["bpm"] - 100.0) < 0.5, 3.0), "the tap never reached the peer"
    finally:
        inputs.close()
        peer.close()
