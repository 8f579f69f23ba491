"""Mappings: curves, ranges, smoothing, quantisation, triggers, and the Conditioning the engine receives."""

from __future__ import annotations

import math

import pytest

from controllers.base import ControlEvent, TempoState
from livekit.sketch.conditioning import (
    ConditioningBuilder,
    ConditioningSettings,
    apply_overrides,
    build_conditioning,
    neighbour_weights,
)
from livekit.sketch.mappings import MappingSpec, Target
from livekit.sketch.params import ParamBus
from livekit.sketch.sources import Source, audio, lfo, midi, tempo

THREE = ConditioningSettings(prompts=(("red", 1.0), ("green", 1.0), ("blue", 1.0)), seeds=(7, 42, 1234))


def bus_for(**sources: Source) -> ParamBus:
    """A bus whose targets are plain 0..1 targets driven by the given sources."""
    return ParamBus(MappingSpec({name: Target(name, 0.0, src) for name, src in sources.items()}))


def cc(num: int, value: float, t: float = 0.0, channel: int = 0) -> ControlEvent:
    return ControlEvent(f"midi/cc/{channel}/{num}", value, t)


def test_morph_weights_are_piecewise_linear_between_neighbours() -> None:
    assert neighbour_weights(3, 0.5) == (0.0, 1.0, 0.0)
    assert neighbour_weights(3, 0.25) == (0.5, 0.5, 0.0)
    assert neighbour_weights(3, 0.0) == (1.0, 0.0, 0.0)
    assert neighbour_weights(3, 1.0) == (0.0, 0.0, 1.0)
    assert neighbour_weights(3, 1.7) == (0.0, 0.0, 1.0)  # clamped
    assert neighbour_weights(1, 0.3) == (1.0,)


def test_conditioning_from_morph_weights_and_seeds() -> None:
    c = build_conditioning(THREE, {"morph": 0.25})
    assert [w for _, w in c.prompts] == [0.5, 0.5, 0.0]
    assert [t for t, _ in c.prompts] == ["red", "green", "blue"]
    c = build_conditioning(THREE, {"morph": 0.5, "weight_1": 0.5})
    assert [w for _, w in c.prompts] == [0.0, 0.5, 0.0]  # weights multiply the morph
    c = build_conditioning(THREE, {"weight_0": 0.0, "weight_1": 0.0, "weight_2": 0.0})
    assert c.prompts == (("", 1.0),)  # every fader down: the unconditional prompt
    assert build_conditioning(THREE, {}).seeds == ((7, 1.0), (42, 0.0), (1234, 0.0))
    assert build_conditioning(THREE, {}, seed_index=4).seeds == ((7, 0.0), (42, 1.0), (1234, 0.0))
    assert build_conditioning(THREE, {"seed_morph": 0.75}).seeds == ((7, 0.0), (42, 0.5), (1234, 0.5))
    c = build_conditioning(THREE, {"guidance": 1.5, "delta": 0.7, "strength": 1.3}, noise_phase=2.0)
    assert (c.guidance, c.delta, c.strength, c.noise_walk) == (1.5, 0.7, 1.0, 2.0)


def test_builder_integrates_noise_walk_speed_and_counts_seed_steps() -> None:
    builder = ConditioningBuilder()
    assert builder.build(THREE, {"noise_walk": 2.0}, now_s=10.0).noise_walk == 0.0
    assert builder.build(THREE, {"noise_walk": 2.0}, now_s=10.5).noise_walk == pytest.approx(1.0)
    assert builder.build(THREE, {"noise_walk": 0.0}, now_s=11.0).noise_walk == pytest.approx(1.0)  # still: holds
    assert builder.build(THREE, {"noise_walk": 1.0}, now_s=100.0).noise_walk == pytest.approx(2.0)  # stall capped
    c = builder.build(THREE, {"seed_step": 1.0}, now_s=100.1)
    assert c.seeds[1] == (42, 1.0)
    with pytest.raises(ValueError):
        builder.build(THREE, {"noise_walk": 1.0, "guidance": math.nan}, now_s=101.0)
    assert builder.noise_phase == pytest.approx(2.0)  # a failed build leaves the phase alone


def test_live_overrides_replace_prompts_and_seeds() -> None:
    s = apply_overrides(THREE, {"prompt_2": "deep blue", "seed_0": 5, "negative_prompt": "blurry"})
    assert s.prompts == (("red", 1.0), ("green", 1.0), ("deep blue", 1.0))
    assert s.seeds == (5, 42, 1234) and s.negative_prompt == "blurry"
    s = apply_overrides(THREE, {"prompt": "blue sky", "seed": 9, "prompt_7": "ignored"})
    assert s.prompts == (("blue sky", 1.0),) and s.seeds == (9,)


def test_a_cc_moves_its_target_through_range_and_curve() -> None:
    bus = bus_for(a=midi.cc(1).range(2.0, 4.0), b=midi.cc(1).curve(2.0).range(0.0, 10.0), c=midi.cc(1).invert())
    bus.push(cc(1, 0.5))
    snap = bus.snapshot(0.0)
    assert snap["a"] == pytest.approx(3.0)
    assert snap["b"] == pytest.approx(2.5)
    assert snap["c"] == pytest.approx(0.5)
    bus.push(cc(1, 1.0))
    snap = bus.snapshot(0.1)
    assert (snap["a"], snap["b"], snap["c"]) == pytest.approx((4.0, 10.0, 0.0))


def test_a_bare_source_spans_the_target_range_and_is_clamped() -> None:
    target = Target("glow", 5.0, midi.bend(), span=(0.0, 10.0), clamp=(0.0, 10.0))
    bus = ParamBus(MappingSpec({"glow": target}))
    assert bus.snapshot(0.0)["glow"] == 5.0  # no event yet: the default
    bus.push(ControlEvent("midi/bend/0", -1.0, 0.0))
    assert bus.snapshot(0.1)["glow"] == pytest.approx(0.0)
    bus.push(ControlEvent("midi/bend/0", 0.5, 0.0))
    assert bus.snapshot(0.2)["glow"] == pytest.approx(7.5)
    over = Target("glow", 5.0, midi.cc(2).range(0.0, 50.0), span=(0.0, 10.0), clamp=(0.0, 10.0))
    bus = ParamBus(MappingSpec({"glow": over}))
    bus.push(cc(2, 1.0))
    assert bus.snapshot(0.0)["glow"] == 10.0  # its own range is kept, then clamped


def test_smoothing_reaches_63_percent_after_one_attack_time_constant() -> None:
    bus = bus_for(x=audio.level.smooth(0.1, 0.5))
    bus.push(ControlEvent("audio/level", 0.0, 0.0))
    assert bus.snapshot(10.0)["x"] == 0.0
    bus.push(ControlEvent("audio/level", 1.0, 10.0))
    assert bus.snapshot(10.1)["x"] == pytest.approx(1 - math.exp(-1), abs=1e-9)
    for now in (10.2, 10.5, 11.0, 12.0, 14.0):
        bus.snapshot(now)
    assert bus.snapshot(16.0)["x"] == pytest.approx(1.0, abs=1e-3)
    bus.push(ControlEvent("audio/level", 0.0, 16.0))
    assert bus.snapshot(16.5)["x"] == pytest.approx(math.exp(-1), abs=1e-3)  # release: 63% of the fall in 0.5 s
    # the same time constant split into many small ticks gives the same answer (real elapsed time, not ticks)
    fine = bus_for(x=audio.level.smooth(0.1, 0.5))
    fine.push(ControlEvent("audio/level", 0.0, 0.0))
    fine.snapshot(0.0)
    fine.push(ControlEvent("audio/level", 1.0, 0.0))
    for i in range(1, 10):
        fine.snapshot(i * 0.01)
    assert fine.snapshot(0.1)["x"] == pytest.approx(1 - math.exp(-1), abs=1e-9)


def test_quantize_applies_a_change_on_the_next_beat() -> None:
    bus = bus_for(x=midi.cc(1).quantize("beat"))
    beat = TempoState(bpm=120.0, beat=0.0, time_s=0.0)  # one beat every 0.5 s
    bus.push(cc(1, 0.2))
    assert bus.snapshot(0.1, beat)["x"] == pytest.approx(0.2)  # the first value has nothing to wait for
    bus.push(cc(1, 0.9))
    assert bus.snapshot(0.2, beat)["x"] == pytest.approx(0.2)
    assert bus.snapshot(0.45, beat)["x"] == pytest.approx(0.2)  # beat 0.9: still waiting
    assert bus.snapshot(0.55, beat)["x"] == pytest.approx(0.9)  # beat 1.1: applied
    bar = bus_for(x=midi.cc(1).quantize("bar"))
    bar.push(cc(1, 0.2))
    bar.snapshot(0.1, beat)
    bar.push(cc(1, 0.9))
    assert bar.snapshot(1.9, beat)["x"] == pytest.approx(0.2)  # beat 3.8 of a 4-beat bar
    assert bar.snapshot(2.05, beat)["x"] == pytest.approx(0.9)


def test_quantized_triggers_fire_once_on_the_boundary() -> None:
    spec = MappingSpec({"seed_step": Target("seed_step", None, audio.onset.quantize("beat"), trigger=True)})
    bus = ParamBus(spec)
    beat = TempoState(bpm=60.0, beat=0.0, time_s=0.0)
    bus.snapshot(0.0, beat)
    for t in (0.1, 0.2, 0.3):
        bus.push(ControlEvent("audio/onset", 1.0, t))
        assert bus.snapshot(t + 0.01, beat)["seed_step"] == 0.0
    assert bus.snapshot(1.01, beat)["seed_step"] == 1.0
    assert bus.snapshot(1.2, beat)["seed_step"] == 0.0


def test_tempo_sources_follow_the_tempo_state() -> None:
    bus = bus_for(saw=lfo.saw(beats=4), bar=tempo.bar_phase, phase=tempo.beat_phase, free=lfo.saw(hz=0.5))
    state = TempoState(bpm=120.0, beat=2.0, time_s=10.0, beats_per_bar=4)
    snap = bus.snapshot(10.0, state)
    assert (snap["saw"], snap["bar"], snap["phase"]) == pytest.approx((0.5, 0.5, 0.0))
    snap = bus.snapshot(10.25, state)  # half a beat later
    assert (snap["saw"], snap["bar"], snap["phase"]) == pytest.approx((0.625, 0.625, 0.5))
    assert snap["free"] == pytest.approx(0.125)  # hz LFOs count seconds since the first tick
    no_tempo = bus_for(phase=tempo.beat_phase)
    no_tempo.snapshot(0.0)
    assert no_tempo.snapshot(0.25)["phase"] == pytest.approx(0.5)  # 120 bpm while no tempo runs


def test_pulse_sources_and_trigger_counting() -> None:
    spec = MappingSpec({
        "seed_step": Target("seed_step", None, midi.cc(64), trigger=True),
        "flash": Target("flash", 0.0, audio.onset),
    })
    bus = ParamBus(spec)
    bus.snapshot(0.0)
    for v in (0.9, 1.0, 0.8, 0.1, 0.7):  # a held sustain pedal re-sending high values is one press, then one more
        bus.push(cc(64, v))
    assert bus.snapshot(0.1)["seed_step"] == 2.0
    bus.push(ControlEvent("audio/onset", 0.2, 0.15))  # the analyzer sends the onset's strength: any strength counts
    assert bus.snapshot(0.2)["flash"] == 1.0  # a pulse for the tick the onset arrived in
    assert bus.snapshot(0.3)["flash"] == 0.0


def test_soft_note_on_steps_a_seed() -> None:
    bus = ParamBus(MappingSpec({"seed_step": Target("seed_step", None, midi.note(36, channel=9), trigger=True)}))
    bus.snapshot(0.0)
    for velocity in (0.3, 0.0, 0.2, 0.0):  # two soft hits with their note-offs
        bus.push(ControlEvent("midi/note/9/36", velocity, 0.0))
    assert bus.snapshot(0.1)["seed_step"] == 2.0


def test_relative_encoder_accumulates_steps() -> None:
    bus = ParamBus(MappingSpec({"x": Target("x", 0.5, midi.cc(16, relative="twos_complement"), span=(0.0, 1.0))}))
    assert bus.snapshot(0.0)["x"] == 0.5
    for _ in range(10):
        bus.push(ControlEvent("midi/rel/0/16", 1.0, 0.0))
    assert bus.snapshot(0.1)["x"] == pytest.approx(0.5 + 10 / 127)  # the encoder starts where the value was
    bus.push(ControlEvent("midi/rel/0/16", -200.0, 0.1))
    assert bus.snapshot(0.2)["x"] == 0.0


def test_prompt_step_walks_the_prompt_list_one_prompt_per_event() -> None:
    from livekit.sketch.conditioning import ConditioningBuilder, ConditioningSettings

    settings = ConditioningSettings((("a", 1.0), ("b", 1.0), ("c", 1.0)), "", (0,), "slerp")
    builder = ConditioningBuilder()
    shown = []
    for t, step in enumerate([0.0, 1.0, 0.0, 1.0, 1.0]):
        cond = builder.build(settings, {"prompt_step": step}, float(t))
        shown.append([text for text, w in cond.prompts if w > 0])
    assert shown == [["a"], ["b"], ["b"], ["c"], ["a"]]


def test_motion_speed_integrates_into_the_models_animation_phase() -> None:
    from livekit.sketch.conditioning import ConditioningBuilder, ConditioningSettings

    settings = ConditioningSettings((("rings", 1.0),), "", (1,), "slerp")
    builder = ConditioningBuilder()
    phases = [builder.build(settings, {"motion": 0.25}, t).motion_phase for t in (0.0, 0.1, 0.2, 0.3)]
    assert phases == pytest.approx([0.0, 0.025, 0.05, 0.075])  # cycles per second x seconds
    assert builder.build(settings, {"motion": float("inf")}, 0.4).motion_phase == pytest.approx(0.075)
    assert builder.build(settings, {"motion": 0.25}, 0.5).motion_phase == pytest.approx(0.1)
