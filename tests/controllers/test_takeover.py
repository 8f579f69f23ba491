"""Soft takeover: after a jump elsewhere, a knob changes nothing until it reaches (or sweeps past) the value."""

from __future__ import annotations

import pytest

from controllers.takeover import SoftTakeover, TakeoverBank, TakeoverConfig


def test_knob_rules_until_something_else_sets_the_value() -> None:
    takeover = SoftTakeover()
    assert takeover.engaged
    assert takeover.move(0.2) == 0.2
    assert takeover.move(0.25) == 0.25
    assert takeover.value == 0.25


def test_after_a_jump_the_knob_waits_until_it_reaches_the_value() -> None:
    takeover = SoftTakeover()
    takeover.move(0.2)
    takeover.jump(0.8)  # an OSC message or a scene change moved the parameter
    assert not takeover.engaged
    assert [takeover.move(k) for k in (0.3, 0.5, 0.7)] == [None, None, None]  # approaching: nothing happens
    assert takeover.value == 0.8
    assert takeover.move(0.78) == 0.78  # within the threshold: picked up
    assert takeover.engaged
    assert takeover.move(0.6) == 0.6  # and from then on it follows


def test_a_fast_sweep_past_the_value_picks_it_up() -> None:
    takeover = SoftTakeover()
    takeover.move(0.9)
    takeover.jump(0.5)
    assert takeover.move(0.95) is None  # moving away
    assert takeover.move(0.1) == 0.1  # jumped across 0.5 between two messages


def test_a_jump_to_where_the_knob_already_is_keeps_it_engaged() -> None:
    takeover = SoftTakeover()
    takeover.move(0.4)
    takeover.jump(0.41)
    assert takeover.engaged


def test_starting_value_requires_pickup_and_threshold_is_configurable() -> None:
    takeover = SoftTakeover(value=0.5, config=TakeoverConfig(threshold=0.0))
    assert takeover.move(0.49) is None
    assert takeover.move(0.5) == 0.5
    with pytest.raises(ValueError, match="threshold must be in range 0..1"):
        TakeoverConfig(threshold=1.5)


def test_bank_keeps_one_state_per_mapping() -> None:
    bank = TakeoverBank()
    assert bank.move("speed", 0.1) == 0.1
    assert bank.move("zoom", 0.9) == 0.9
    bank.jump("speed", 0.7)
    assert not bank.engaged("speed") and bank.engaged("zoom")
    assert bank.move("speed", 0.2) is None
    assert bank.move("zoom", 0.8) == 0.8
    assert bank.engaged("never-seen")
