"""Param and ParamBus: latest values from controller threads, direct sets, soft takeover, MIDI learn."""

from __future__ import annotations

import json
import math
import threading

import pytest

from controllers.base import ControlEvent
from controllers.takeover import TakeoverBank
from livekit.sketch.mappings import MappingSpec, Target
from livekit.sketch.params import Param, ParamBus
from livekit.sketch.sources import midi


def glow_bus(source=None, smoothing_s: float = 0.0) -> ParamBus:
    """A bus with one Param-like target 'glow' in 0..10 and the built-in 'guidance'."""
    return ParamBus(MappingSpec({
        "glow": Target("glow", 5.0, source, span=(0.0, 10.0), clamp=(0.0, 10.0), smoothing_s=smoothing_s),
        "guidance": Target("guidance", 1.0, None, span=(1.0, 3.0)),
        "seed_step": Target("seed_step", None, None, trigger=True),
    }))


def ev(key: str, value: float | str, t: float = 0.0) -> ControlEvent:
    return ControlEvent(key, value, t)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"default": 2.0, "range": (0, 1)}, "outside its range"),
        ({"default": 0.0, "range": (1, 0)}, "lo < hi"),
        ({"default": math.nan}, "finite number"),
        ({"default": 0.0, "smoothing_s": -1}, "smoothing_s must be >= 0"),
        ({"default": 0.0, "source": 3}, "must be a source"),
    ],
)
def test_param_validates_at_declaration(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Param(**kwargs)


def test_param_normalises_its_range() -> None:
    assert Param(1, range=[0, 2]).range == (0.0, 2.0)


def test_latest_value_per_key_wins() -> None:
    bus = glow_bus(midi.cc(1))
    for v in (0.1, 0.7, 0.3):
        bus.push(ev("midi/cc/0/1", v))
    assert bus.snapshot(0.0)["glow"] == pytest.approx(3.0)
    assert bus.latest("midi/cc/0/1") == 0.3 and bus.latest("midi/cc/0/2") is None


def test_param_smoothing_reaches_63_percent_after_smoothing_s() -> None:
    bus = glow_bus(midi.cc(1), smoothing_s=0.2)
    bus.push(ev("midi/cc/0/1", 0.0))
    assert bus.snapshot(1.0)["glow"] == 0.0
    bus.push(ev("midi/cc/0/1", 1.0, 1.0))
    assert bus.snapshot(1.2)["glow"] == pytest.approx(10.0 * (1 - math.exp(-1)))


def test_direct_sets_and_sources_newest_word_wins() -> None:
    bus = glow_bus(midi.cc(1))
    bus.push(ev("midi/cc/0/1", 0.2))
    assert bus.snapshot(0.0)["glow"] == pytest.approx(2.0)
    bus.push(ev("osc/livekit/glow", 8.5))  # the OSC router's key for /livekit/glow, in the Param's units
    assert bus.snapshot(0.1)["glow"] == pytest.approx(8.5)
    assert bus.snapshot(0.2)["glow"] == pytest.approx(8.5)  # stays until the knob moves
    bus.push(ev("midi/cc/0/1", 0.3))
    assert bus.snapshot(0.3)["glow"] == pytest.approx(3.0)
    bus.set("guidance", 2.25)
    assert bus.snapshot(0.4)["guidance"] == 2.25
    bus.set("glow", 99.0)
    assert bus.snapshot(0.5)["glow"] == 10.0  # clamped to the range


def test_soft_takeover_holds_a_set_value_until_the_knob_reaches_it() -> None:
    bus = glow_bus(midi.cc(1))
    bus.takeover = TakeoverBank()
    bus.push(ev("midi/cc/0/1", 0.2))
    assert bus.snapshot(0.0)["glow"] == pytest.approx(2.0)
    bus.push(ev("osc/livekit/glow", 8.0))
    assert bus.snapshot(0.1)["glow"] == pytest.approx(8.0)
    bus.push(ev("midi/cc/0/1", 0.3))  # the knob is far from 0.8: no jump
    assert bus.snapshot(0.2)["glow"] == pytest.approx(8.0)
    assert bus.snapshot(0.3)["glow"] == pytest.approx(8.0)
    bus.push(ev("midi/cc/0/1", 0.81))  # crossed the value: picked up
    assert bus.snapshot(0.4)["glow"] == pytest.approx(8.1)
    bus.push(ev("midi/cc/0/1", 0.5))
    assert bus.snapshot(0.5)["glow"] == pytest.approx(5.0)


def test_routed_keys_prompts_seeds_scenes() -> None:
    bus = glow_bus()
    bus.push(ev("osc/livekit/prompt/1", "deep blue"))
    bus.push(ev("osc/livekit/seed", 42.0))
    bus.push(ev("osc/livekit/seed_step", 1.0))
    snap = bus.snapshot(0.0)
    assert snap.overrides == {"prompt_1": "deep blue", "seed": 42.0}
    assert snap["seed_step"] == 1.0 and bus.snapshot(0.1).get("seed_step") is None  # one step, once


def test_unknown_names_are_counted_from_controllers_and_raise_from_code() -> None:
    bus = glow_bus()
    bus.push(ev("osc/livekit/glwo", 1.0))  # a controller thread must never raise
    bus.push(ev("osc/livekit/glow", math.inf))
    assert bus.rejected.count == 2 and "glow" in bus.rejected.last
    with pytest.raises(ValueError, match="did you mean 'glow'"):
        bus.set("glwo", 1.0)
    with pytest.raises(ValueError, match="finite number"):
        bus.set("glow", math.nan)
    with pytest.raises(ValueError, match="did you mean 'guidance'"):
        bus.learn("guidence")


def test_push_from_many_threads_keeps_the_latest_value_of_each_key() -> None:
    bus = glow_bus()

    def play(n: int) -> None:
        for i in range(500):
            bus.push(ev(f"midi/cc/0/{n}", i / 499))

    threads = [threading.Thread(target=play, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [bus.latest(f"midi/cc/0/{n}") for n in range(4)] == [1.0] * 4


def test_midi_learn_binds_the_next_control_and_round_trips_through_a_file(tmp_path) -> None:
    bus = glow_bus()
    bus.learn("glow")
    assert bus.learning == "glow"
    bus.push(ev("midi/cc/0/21", 0.4))
    assert bus.learning is None and bus.learned == {"glow": "midi/cc/0/21"}
    assert bus.snapshot(0.0)["glow"] == pytest.approx(4.0)  # a learned knob spans the target's range
    bus.push(ev("midi/cc/0/21", 0.9))
    assert bus.snapshot(0.1)["glow"] == pytest.approx(9.0)
    path = tmp_path / "show.midi.json"
    bus.save_learned(path)
    assert json.loads(path.read_text())["mappings"] == [{"target": "glow", "source": "midi/cc/0/21"}]

    fresh = glow_bus()
    assert fresh.load_learned(path) == 1
    fresh.push(ev("midi/cc/0/21", 0.6))
    assert fresh.snapshot(0.0)["glow"] == pytest.approx(6.0)
    fresh.unlearn("glow")
    fresh.push(ev("midi/cc/0/21", 0.1))
    assert fresh.snapshot(0.1)["glow"] == 5.0  # back to the sketch's own (unmapped) default


def test_learned_bindings_for_targets_a_sketch_lost_are_skipped(tmp_path) -> None:
    path = tmp_path / "show.midi.json"
    path.write_text(json.dumps({"format": "livekit-midi-mappings", "version": 1, "mappings": [
        {"target": "glow", "source": "midi/cc/0/1"}, {"target": "gone", "source": "midi/cc/0/2"}]}))
    bus = glow_bus()
    assert bus.load_learned(path) == 1 and bus.learned == {"glow": "midi/cc/0/1"}


def test_learning_a_trigger_target_steps_on_each_pad_hit() -> None:
    bus = glow_bus()
    bus.learn("seed_step")
    bus.push(ev("midi/note/9/36", 0.8))  # the learning hit binds and counts
    bus.push(ev("midi/note/9/36", 0.0))
    bus.push(ev("midi/note/9/36", 0.7))
    assert bus.snapshot(0.0)["seed_step"] == 2.0


def test_osc_seed_weights_blend_the_seeds(tmp_path) -> None:
    from controllers.base import ControlEvent
    from livekit.sketch.runner import SketchRunner
    from livekit.sketch.base import load_sketch

    path = tmp_path / "seeds.py"
    path.write_text("from livekit import Sketch\nclass S(Sketch):\n    seeds = [5, 6, 7]\n", encoding="utf-8")
    runner = SketchRunner(load_sketch(path))
    assert runner.tick(0.0).conditioning.seeds == ((5, 1.0), (6, 0.0), (7, 0.0))
    runner.bus.push(ControlEvent("osc/livekit/seed/2/weight", 0.5, 0.0))
    runner.bus.push(ControlEvent("osc/livekit/seed/0/weight", 0.25, 0.0))
    assert runner.tick(0.1).conditioning.seeds == ((5, 0.25), (6, 0.0), (7, 0.5))
    assert runner.bus.rejected.count == 0
