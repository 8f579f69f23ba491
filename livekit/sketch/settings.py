"""A sketch's settings and targets: the names it may use, the values each accepts, and the target tables and scenes
built from them. Every check raises SketchError naming the attribute and, for a misspelling, suggesting the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from livekit.sketch.conditioning import ConditioningSettings
from livekit.sketch.mappings import BUILTIN_TARGETS, SceneSpec, Target, seed_weight_target, weight_target
from livekit.sketch.params import Param
from livekit.sketch.sources import Source
from livekit.sketch.suggest import did_you_mean
from pipeline.conditioning import BLEND_MODES, CONTROL_MODES

SAMPLERS = ("turbo", "lcm", "ddim", "dpmpp_2m")  # the engine's samplers (pipeline.samplers)
CFG_MODES = ("none", "full", "self", "onetime")  # the engine's guidance modes
MAX_SIDE = 2048  # pixels per side: beyond it no supported model is trained, and the latents outgrow most GPUs
# a change rebuilds the engine (or, for the control picture, swaps it); scenes cannot change these
ENGINE_SETTINGS = ("model", "size", "steps", "sampler", "cfg", "fps", "mode", "image", "controlnet", "control",
                   "control_mode")
MODES = ("txt2img", "img2img", "feedback")  # copied from pipeline.stream.MODES (kept torch-free; a test compares)
CONDITIONING_SETTINGS = ("prompts", "negative_prompt", "seeds", "prompt_blend")  # constants, scenes may change them
SETTINGS = ENGINE_SETTINGS + CONDITIONING_SETTINGS + ("outputs", "scenes")
TARGETS = tuple(BUILTIN_TARGETS) + ("weights",)  # may hold a Source; plus weight_<i> for each prompt
HOOKS = ("setup", "update")
WEIGHT_NAME = re.compile(r"weight_(\d+)$")


class SketchError(ValueError):
    """A sketch that cannot load: a misspelled or invalid setting, a syntax error, no Sketch class."""

    def __init__(self, message: str, attribute: str | None = None) -> None:
        super().__init__(message)
        self.attribute = attribute  # the offending class attribute, when there is one


def _number(owner: str, name: str, value: Any, lo: float = -math.inf, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SketchError(f"{owner}: {name} must be a number, got {value!r}", name)
    if not lo <= value <= hi:
        raise SketchError(f"{owner}: {name} must be in range {lo:g}..{hi:g}, got {value!r}", name)
    return float(value)


def _choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> str | None:
    if value is None or value in choices:
        return value
    hint = did_you_mean(value, choices) if isinstance(value, str) else ""
    raise SketchError(f"{owner}: unknown {name} {value!r}{hint}; choose one of {choices} (or None for the default)",
                      name)


def setting_value(owner: str, name: str, value: Any) -> Any:
    """Validate and normalise one constant setting."""
    if isinstance(value, Source):
        hint = " (map 'morph' or 'weight_<i>' to move prompts)" if name == "prompts" else ""
        raise SketchError(f"{owner}: setting {name!r} takes a constant, not a source like {value!r}{hint}", name)
    if name == "model" and (not isinstance(value, str) or not value):
        raise SketchError(f"{owner}: model must be 'builtin', a diffusers model id or a path, got {value!r}", name)
    if name == "mode" and value not in MODES:
        raise SketchError(f"{owner}: unknown mode {value!r}{did_you_mean(str(value), MODES)}; choose one of {MODES}",
                          name)
    live = all(hasattr(value, a) for a in ("start", "latest", "version", "close"))  # camera(), video(), ndi_in()
    if name in ("image", "control") and value is not None and not live and (not isinstance(value, str) or not value):
        raise SketchError(f"{owner}: {name} must be a path to a picture (relative to the sketch), a live source "
                          f"(camera(0), video('loop.mp4'), ndi_in('NAME')) or None, got {value!r}", name)
    if name == "controlnet" and value is not None and (not isinstance(value, str) or not value.strip()):
        raise SketchError(f"{owner}: controlnet must be a diffusers ControlNet folder or a cached hub id such as "
                          f"'lllyasviel/sd-controlnet-canny' (or None), got {value!r}", name)
    if name == "control_mode" and value not in CONTROL_MODES:
        hint = did_you_mean(value, CONTROL_MODES) if isinstance(value, str) else ""
        raise SketchError(f"{owner}: unknown control_mode {value!r}{hint}; choose one of {CONTROL_MODES} (canny: "
                          "the picture's edges; none: the picture as is, e.g. an edge or depth map)", name)
    if name == "outputs":
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if not (isinstance(getattr(item, "kind", None), str) and isinstance(getattr(item, "name", None), str)):
                raise SketchError(f"{owner}: outputs must be a list of ndi_out('NAME'), syphon_out('NAME') or "
                                  f"spout_out('NAME'), got {item!r}", name)
        return tuple(items)
    if name == "size":
        ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % 8 == 0 for v in value)
        if not ok:
            raise SketchError(f"{owner}: size must be (width, height) in pixels, multiples of 8, got {value!r}", name)
        if max(value) > MAX_SIDE:
            raise SketchError(f"{owner}: size {value[0]}x{value[1]} is too large: at most {MAX_SIDE} pixels per side "
                              "(render larger and upscale on the output side)", name)
        return tuple(value)
    if name == "prompts":
        items = [value] if isinstance(value, str) else value
        out = []
        for item in items if isinstance(items, (list, tuple)) else [None]:
            if isinstance(item, str):
                item = (item, 1.0)
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise SketchError(f"{owner}: prompts must be a list of strings or (string, weight) pairs, "
                                  f"got {value!r}", name)
            out.append((item[0], _number(owner, "a prompt weight", item[1], 0.0)))
        if not out:
            raise SketchError(f"{owner}: prompts is empty; give at least one prompt ('' for none)", name)
        return tuple(out)
    if name == "seeds":
        items = [value] if isinstance(value, int) else value
        if not isinstance(items, (list, tuple)) or not items or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in items):
            raise SketchError(f"{owner}: seeds must be a non-empty list of integers >= 0, got {value!r}", name)
        return tuple(items)
    if name == "negative_prompt" and not isinstance(value, str):
        raise SketchError(f"{owner}: negative_prompt must be a string, got {value!r}", name)
    if name == "steps" and value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise SketchError(f"{owner}: steps must be an integer 1..100 (or None), got {value!r}", name)
    if name in ("sampler", "cfg", "prompt_blend"):
        choices = {"sampler": SAMPLERS, "cfg": CFG_MODES, "prompt_blend": BLEND_MODES}[name]
        if name == "prompt_blend" and value is None:
            raise SketchError(f"{owner}: prompt_blend must be one of {BLEND_MODES}", name)
        return _choice(owner, name, value, choices)
    if name == "fps":
        return _number(owner, "fps", value, 1e-3)
    return value


def target_value(owner: str, name: str, value: Any, params: Mapping[str, Param]) -> Any:
    """Validate a target's constant or source; returns it unchanged."""
    if value is None or isinstance(value, Source):
        if value is None and name in ("guidance", "delta", "strength", "noise_walk", "motion", "control_scale"):
            raise SketchError(f"{owner}: {name} needs a number or a source, got None", name)
        return value
    if name in ("seed_step", "prompt_step", "scene"):
        raise SketchError(f"{owner}: {name} takes a source such as audio.beat or midi.note(36), got {value!r}", name)
    if name in params:
        rng = params[name].range or (-math.inf, math.inf)
        return _number(owner, name, value, *rng)
    lo, hi = {"morph": (0, 1), "seed_morph": (0, 1), "strength": (0, 1), "control_scale": (0, 2)}.get(
        name, (-math.inf, math.inf))
    if WEIGHT_NAME.match(name):
        lo = 0.0
    return _number(owner, name, value, lo, hi)


def check_control(owner: str, settings: Mapping[str, Any]) -> None:
    """A ControlNet needs a picture to follow, and a control picture needs a ControlNet: SketchError otherwise."""
    if settings["controlnet"] is None and settings["control"] is not None:
        raise SketchError(f"{owner}: control = {settings['control']!r} has no effect without a ControlNet; set "
                          "controlnet = 'path-or-id' (a diffusers ControlNetModel) or remove control", "control")
    if settings["controlnet"] is not None and settings["control"] is None and settings["image"] is None:
        raise SketchError(f"{owner}: controlnet needs a picture to follow: set control = camera(0), "
                          "video('loop.mp4'), ndi_in('NAME') or 'still.png' (or image, which it then follows)",
                          "controlnet")


def expand_weights(owner: str, values: dict[str, Any], n_prompts: int) -> None:
    """Replace a `weights` list in values by its weight_<i> entries, one per prompt."""
    weights = values.pop("weights", None)
    if weights is None:
        return
    if not isinstance(weights, (list, tuple)) or len(weights) != n_prompts:
        raise SketchError(f"{owner}: weights must be a list with one entry per prompt ({n_prompts}), got {weights!r}",
                          "weights")
    for i, w in enumerate(weights):
        values[f"weight_{i}"] = w


def check_name(owner: str, name: str, n_prompts: int, params: Mapping[str, Param], value: Any) -> None:
    """Raise SketchError, suggesting the nearest name, unless name is a setting, target, weight_<i> or Param."""
    match = WEIGHT_NAME.match(name)
    if match and int(match.group(1)) >= n_prompts:
        raise SketchError(f"{owner}: {name} but there are {n_prompts} prompts (weight_0..weight_{n_prompts - 1})", name)
    if match or name in SETTINGS or name in TARGETS or name in params:
        return
    known = [*SETTINGS, *TARGETS, *params, *(f"weight_{i}" for i in range(n_prompts))]
    hint = did_you_mean(name, known)
    if isinstance(value, Source):
        raise SketchError(f"{owner}: {name!r} = {value!r} maps to no target{hint}. Targets are the settings "
                          f"{', '.join(TARGETS)}, weight_<i>, and declared Params: name = Param(0.5, source=...)", name)
    raise SketchError(f"{owner}: unknown setting {name!r}{hint}. Settings are {', '.join(SETTINGS)}; "
                      "name helper constants _like_this or LIKE_THIS", name)


def target_table(values: Mapping[str, Any], params: Mapping[str, Param], n_prompts: int,
                 n_seeds: int = 0) -> dict[str, Target]:
    """The built-in targets, weight_<i> and seed_weight_<i> with their constants or sources, then the Params."""
    table: dict[str, Target] = {}
    templates = (list(BUILTIN_TARGETS.values()) + [weight_target(i) for i in range(n_prompts)]
                 + [seed_weight_target(i) for i in range(n_seeds)])
    for t in templates:
        v = values.get(t.name, t.default)
        table[t.name] = replace(t, source=v) if isinstance(v, Source) else replace(t, default=v)
    for name, p in params.items():
        table[name] = Target(name, p.default, p.source, p.range, p.range, p.smoothing_s)
    return table


def _scene(owner: str, name: str, overrides: Any, base: dict[str, Any], params: Mapping[str, Param],
           settings: ConditioningSettings) -> tuple[SceneSpec, ConditioningSettings]:
    where = f"{owner} scene {name!r}"
    if not isinstance(overrides, Mapping):
        raise SketchError(f"{where} must be a dict of setting overrides, got {overrides!r}", "scenes")
    overrides = dict(overrides)
    conditioning = {k: getattr(settings, k) for k in CONDITIONING_SETTINGS}
    for key in [k for k in overrides if k in CONDITIONING_SETTINGS]:
        conditioning[key] = setting_value(where, key, overrides.pop(key))
    n = len(conditioning["prompts"])
    expand_weights(where, overrides, n)
    values, sets = dict(base), {}
    for key, value in overrides.items():
        if key in ENGINE_SETTINGS or key == "scenes":
            raise SketchError(f"{where} sets {key!r}, which scenes cannot change; scenes may set "
                              f"{', '.join(CONDITIONING_SETTINGS)}, targets and Params", "scenes")
        check_name(where, key, n, params, value)
        values[key] = target_value(where, key, value, params)
        if not isinstance(value, Source) and value is not None:
            sets[key] = float(value)
    scene_params = {k: replace(p, source=values[k] if isinstance(values.get(k), Source) else
                               (None if k in sets else p.source)) for k, p in params.items()}
    table = target_table(values, scene_params, n, len(conditioning["seeds"]))
    return SceneSpec(name, table, sets), ConditioningSettings(**conditioning)


def build_scenes(owner: str, scenes: Any, values: dict[str, Any], params: Mapping[str, Param],
                 conditioning: ConditioningSettings) -> tuple[tuple[SceneSpec, ...], tuple[ConditioningSettings, ...]]:
    """Each scene's target table and conditioning settings, from a list of overrides or a dict name -> overrides."""
    if scenes is None:
        return (), ()
    if isinstance(scenes, Mapping):
        items = [(str(k), v) for k, v in scenes.items()]
    elif isinstance(scenes, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(scenes)]
    else:
        raise SketchError(f"{owner}: scenes must be a list of dicts or a dict of name -> dict, got {scenes!r}",
                          "scenes")
    built = [_scene(owner, name, overrides, values, params, conditioning) for name, overrides in items]
    return tuple(s for s, _ in built), tuple(c for _, c in built)
