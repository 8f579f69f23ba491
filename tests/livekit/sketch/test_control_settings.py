"""ControlNet settings: controlnet, control, control_mode validated at load; control_scale a finite, mappable target."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from controllers.base import ControlEvent
from livekit.sketch.base import Sketch, SketchError
from livekit.sketch.conditioning import ConditioningSettings, build_conditioning
from livekit.sketch.params import ParamBus
from livekit.sketch.runner import SketchRunner
from livekit.sketch.sources import lfo, midi
from livekit.show.control import check_controlnet, with_control
from pipeline.conditioning import CONTROL_MODES, Conditioning


def _spec(**attrs: object):
    attrs = {"model": "some/sd", "controlnet": "some/controlnet", "control": "edges.png", **attrs}
    return type("Show", (Sketch,), attrs).spec()


def test_the_settings_land_in_the_engine_settings_and_reload_the_model_when_the_controlnet_changes() -> None:
    spec = _spec(control_mode="none")
    engine = spec.engine
    assert (engine.controlnet, engine.control, engine.control_mode) == ("some/controlnet", "edges.png", "none")
    assert spec.model_key != _spec(controlnet="other/controlnet").model_key
    assert spec.model_key == _spec(control="other.png", control_mode="canny").model_key  # a new picture: no reload
    assert type("Plain", (Sketch,), {}).spec().engine.control_mode == "canny"


def test_an_unknown_control_mode_names_the_modes_and_suggests_the_nearest() -> None:
    with pytest.raises(SketchError, match=r"unknown control_mode 'cany'.*did you mean 'canny'.*\('canny', 'none'\)"):
        _spec(control_mode="cany")
    with pytest.raises(SketchError, match=r"control_mode.*\('canny', 'none'\)"):
        _spec(control_mode=None)


def test_controlnet_and_its_picture_need_each_other() -> None:
    with pytest.raises(SketchError, match="has no effect without a ControlNet"):
        type("Show", (Sketch,), {"control": "edges.png"}).spec()
    with pytest.raises(SketchError, match="controlnet needs a picture to follow"):
        type("Show", (Sketch,), {"model": "some/sd", "controlnet": "some/controlnet"}).spec()
    assert _spec(control=None, image="pic.png").engine.control is None  # the image is then the control picture
    with pytest.raises(SketchError, match="controlnet must be a diffusers ControlNet folder"):
        _spec(controlnet=3)
    with pytest.raises(SketchError, match="control must be a path to a picture"):
        _spec(control=42)
    with pytest.raises(SketchError, match="scenes cannot change"):
        _spec(scenes=[{"controlnet": "x"}])


def test_control_scale_is_a_finite_target_in_0_to_2_that_scenes_and_sources_may_set() -> None:
    target = _spec().mapping.targets["control_scale"]
    assert (target.default, target.span, target.clamp) == (1.0, (0.0, 2.0), (0.0, 2.0))
    for bad, message in ((3.0, r"in range 0\.\.2"), (-0.5, r"in range 0\.\.2"), (math.nan, "must be a number"),
                         (None, "needs a number or a source")):
        with pytest.raises(SketchError, match=message):
            _spec(control_scale=bad)
    assert _spec(control_scale=midi.cc(3)).mapping.targets["control_scale"].source is not None
    assert _spec(scenes=[{"control_scale": 0.5}]).mapping.scenes[0].sets == {"control_scale": 0.5}
    assert _spec().osc_params()["control_scale"] == (0.0, 2.0)  # /livekit/control_scale, range-checked


def test_a_knob_moves_control_scale_across_its_range_into_the_conditioning() -> None:
    cls = type("Show", (Sketch,), {"model": "some/sd", "controlnet": "c", "control": "p.png",
                                   "control_scale": midi.cc(1)})
    bus = ParamBus()
    runner = SketchRunner(cls, bus)
    assert runner.tick(0.0).conditioning.control_scale == 1.0  # the default until the knob speaks
    bus.push(ControlEvent("midi/cc/0/1", 1.0, 0.1))
    assert runner.tick(0.2).conditioning.control_scale == pytest.approx(2.0)  # a bare knob spans 0..2
    bus.push(ControlEvent("midi/cc/0/1", 0.0, 0.3))
    assert runner.tick(0.4).conditioning.control_scale == 0.0

    def update(self, p, t: float) -> None:
        p["control_scale"] = math.nan if t > 0.5 else 1.5

    bad = SketchRunner(type("Show", (Sketch,), {"model": "m", "controlnet": "c", "control": "p.png",
                                                "update": update}), ParamBus())
    assert bad.tick(0.0).conditioning.control_scale == 1.5
    failed = bad.tick(1.0)
    assert not failed.ok and failed.conditioning.control_scale == 1.5  # NaN refused: the last good tick repeats
    lfo_cls = type("Show", (Sketch,), {"model": "m", "controlnet": "c", "control": "p.png",
                                       "control_scale": lfo.sine(hz=1.0)})
    lfo_runner = SketchRunner(lfo_cls, ParamBus())
    scales = {round(lfo_runner.tick(t).conditioning.control_scale, 3) for t in np.arange(0.0, 1.0, 0.1)}
    assert len(scales) > 5 and min(scales) >= 0.0 and max(scales) <= 2.0


def test_the_conditioning_refuses_a_scale_that_is_not_finite_and_clamps_one_set_in_update() -> None:
    settings = ConditioningSettings()
    assert build_conditioning(settings, {"control_scale": 5.0}).control_scale == 2.0
    assert build_conditioning(settings, {"control_scale": math.inf}).control_scale == 2.0
    with pytest.raises(ValueError, match="control_scale must be finite"):  # the tick fails, the last one repeats
        build_conditioning(settings, {"control_scale": math.nan})
    with pytest.raises(ValueError, match="control_scale must be finite and >= 0"):
        Conditioning(control_scale=-1.0)
    with pytest.raises(ValueError, match=r"control_mode must be one of \('canny', 'none'\)"):
        Conditioning(control_mode="depth")
    assert CONTROL_MODES == ("canny", "none")


def test_each_tick_carries_the_control_source_or_else_the_image() -> None:
    image, control = np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3), np.uint8)
    cond = Conditioning()
    with_own = _spec(control_mode="none").engine
    assert with_control(cond, with_own, image, control).control_image is control
    assert with_control(cond, with_own, image, control).control_mode == "none"
    follows_image = _spec(control=None, image="pic.png").engine
    assert with_control(cond, follows_image, image, None).control_image is image
    assert with_control(cond, with_own, image, None).control_image is None  # a live source not started yet
    assert with_control(cond, type("Plain", (Sketch,), {}).spec().engine, image, control) is cond


def test_a_controlnet_on_the_builtin_model_or_a_missing_folder_is_refused_before_anything_loads(
        tmp_path: Path) -> None:
    for model in ("builtin", "folder:pics", ""):
        with pytest.raises(ValueError, match="has no UNet for a ControlNet to steer"):
            check_controlnet(model, "some/controlnet")
    missing = str(tmp_path / "nope")
    with pytest.raises(ValueError, match=f"cannot load controlnet '{missing}': ControlNet '{missing}' does not ex"):
        check_controlnet("random-sd:tiny", missing)
    check_controlnet("builtin", None)  # no ControlNet: nothing to check
    check_controlnet("random-sd:tiny", str(tmp_path))  # an existing folder passes (its weights load later)
