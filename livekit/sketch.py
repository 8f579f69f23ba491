"""The Sketch base class, its validation into a SketchSpec, the per-tick SketchRunner, and `load_sketch`.

A sketch declares settings as class attributes; any mappable setting may hold a Source instead of a constant::

    class Show(Sketch):
        prompts = ["neon magenta rings", "deep blue ocean waves"]
        morph = midi.cc(1)                       # a knob morphs across the prompts
        glow = Param(0.5, range=(0, 1))          # a declared parameter, readable in update()
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import logging
import math
import re
import sys
import traceback
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controllers.base import TempoState
from livekit.mappings import (
    BUILTIN_TARGETS,
    ConditioningBuilder,
    ConditioningSettings,
    MappingSpec,
    SceneSpec,
    Target,
    apply_overrides,
    build_conditioning,
    weight_target,
)
from livekit.params import Param, ParamBus
from livekit.sources import KeyInput, RelativeInput, Source
from livekit.suggest import closest, did_you_mean
from pipeline.conditioning import BLEND_MODES, Conditioning

if TYPE_CHECKING:
    from controllers.midi import MidiDecoderConfig

log = logging.getLogger(__name__)

SAMPLERS = ("turbo", "lcm", "ddim", "dpmpp_2m")  # the engine's samplers (pipeline.samplers)
CFG_MODES = ("none", "full", "self", "onetime")  # the engine's guidance modes
ENGINE_SETTINGS = ("model", "size", "steps", "sampler", "cfg", "fps")  # a change rebuilds the engine
CONDITIONING_SETTINGS = ("prompts", "negative_prompt", "seeds", "prompt_blend")  # constants, scenes may change them
SETTINGS = ENGINE_SETTINGS + CONDITIONING_SETTINGS + ("scenes",)
TARGETS = tuple(BUILTIN_TARGETS) + ("weights",)  # may hold a Source; plus weight_<i> for each prompt
HOOKS = ("setup", "update")
_WEIGHT = re.compile(r"weight_(\d+)$")


class SketchError(ValueError):
    """A sketch that cannot load: a misspelled or invalid setting, a syntax error, no Sketch class."""

    def __init__(self, message: str, attribute: str | None = None) -> None:
        super().__init__(message)
        self.attribute = attribute  # the offending class attribute, when there is one


class Sketch:
    """Base class of a sketch: settings as class attributes, Params and mappings, and the setup/update hooks."""

    model: str = "builtin"  # "builtin" (offline, any CPU), a diffusers model id, or a local path
    size: tuple[int, int] = (512, 512)  # output (width, height) in pixels, multiples of 8
    prompts: Any = [""]  # list of str, or of (str, weight)
    negative_prompt: str = ""  # for cfg "full" and "onetime"
    seeds: Any = [0]  # seed list; seed_morph / seed_step move through it
    steps: int | None = None  # denoising steps (None = the model's default)
    sampler: str | None = None  # turbo | lcm | ddim | dpmpp_2m (None = the model's default)
    cfg: str | None = None  # none | full | self | onetime (None = the model's default)
    guidance: Any = 1.0  # CFG scale
    delta: Any = 1.0  # residual-CFG delta
    strength: Any = 0.5  # img2img strength 0..1
    noise_walk: Any = 0.0  # noise-walk speed in radians per second (motion while nothing else moves)
    prompt_blend: str = "slerp"  # lerp | slerp
    fps: float = 30  # display and generation cap
    scenes: Any = None  # list of {setting: value} overrides, or {name: overrides}; keys 1-9 select them
    morph: Any = None  # 0..1 across the prompt list (None = the declared weights)
    seed_morph: Any = None  # 0..1 across the seed list (None = one seed at a time)
    seed_step: Any = None  # a trigger source: each event steps to the next seed
    weights: Any = None  # per-prompt weight multipliers (numbers or sources); same as weight_<i>
    scene: Any = None  # a source selecting the scene by index (e.g. midi.program())

    def setup(self) -> None:
        """Called once after the sketch loads (and after each hot reload)."""

    def update(self, p: TickValues, t: float) -> None:
        """Called every tick with this tick's values (p.glow, p["guidance"] = 1.5) and t seconds since start."""

    @classmethod
    def spec(cls) -> SketchSpec:
        """The validated sketch (cached per class); raises SketchError with a suggestion for misspelled names."""
        cached = cls.__dict__.get("_livekit_spec")
        if cached is None:
            cached = compile_sketch(cls)
            cls._livekit_spec = cached
        return cached

    @classmethod
    def required_sources(cls) -> set[str]:
        """Controller prefixes the sketch reads, e.g. {"midi", "audio", "tempo"}."""
        return cls.spec().required_sources()

    @classmethod
    def source_keys(cls) -> frozenset[str]:
        """Every controller key the sketch's mappings read."""
        return cls.spec().source_keys()


@dataclass(frozen=True)
class EngineSettings:
    """Settings that shape the engine: a change rebuilds it; a change of model or size reloads the model."""

    model: str = "builtin"
    size: tuple[int, int] = (512, 512)  # (width, height)
    steps: int | None = None
    sampler: str | None = None
    cfg: str | None = None
    fps: float = 30.0

    @property
    def model_key(self) -> tuple[str, tuple[int, int]]:
        """What decides whether the model must reload."""
        return self.model, self.size


@dataclass(frozen=True)
class SketchSpec:
    """A validated sketch: engine settings, conditioning settings, targets and scenes."""

    name: str
    engine: EngineSettings
    conditioning: ConditioningSettings
    mapping: MappingSpec
    params: Mapping[str, Param]
    scene_settings: tuple[ConditioningSettings, ...] = ()

    @property
    def model_key(self) -> tuple[str, tuple[int, int]]:
        """(model, size): hot reload reloads the model only when this changes."""
        return self.engine.model_key

    @property
    def model_hash(self) -> str:
        """A short stable hash of model_key."""
        return hashlib.sha1(repr(self.model_key).encode()).hexdigest()[:12]

    def settings_for(self, scene: int | None) -> ConditioningSettings:
        """The conditioning settings of a scene (None = the sketch's own)."""
        return self.conditioning if scene is None else self.scene_settings[scene]

    def _sources(self) -> list[Source]:
        return [t.source for t in self.mapping.all_targets() if t.source is not None]

    def required_sources(self) -> set[str]:
        """Controller prefixes the sketch reads, e.g. {"midi", "audio", "tempo"}."""
        return {need for s in self._sources() for need in s.needs}

    def source_keys(self) -> frozenset[str]:
        """Every controller key the sketch's mappings read."""
        return frozenset(k for s in self._sources() for k in s.keys)

    def midi_decoder_config(self) -> MidiDecoderConfig:
        """What the MIDI decoder must know for this sketch: its 14-bit CC pairs and relative encoders."""
        from controllers.midi import MidiDecoderConfig

        origins = [s.origin for s in self._sources()]
        cc14 = {(int(o.key.split("/")[2]), int(o.key.split("/")[3])) for o in origins
                if isinstance(o, KeyInput) and o.key.startswith("midi/cc14/")}
        relative = {(o.channel, o.num): o.encoding for o in origins if isinstance(o, RelativeInput)}
        return MidiDecoderConfig(cc14=frozenset(cc14), relative=relative)

    def osc_params(self) -> dict[str, tuple[float, float] | None]:
        """Names `/livekit/<name>` may set, with their ranges (for controllers.osc.OscRouter.set_params)."""
        out: dict[str, tuple[float, float] | None] = {}
        for t in self.mapping.all_targets():
            finite = t.clamp is not None and all(math.isfinite(x) for x in t.clamp)
            out[t.name] = t.clamp if finite else None
        return out


# --- validation ---------------------------------------------------------------------------------------------------


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


def _setting(owner: str, name: str, value: Any) -> Any:
    """Validate and normalise one constant setting."""
    if isinstance(value, Source):
        hint = " (map 'morph' or 'weight_<i>' to move prompts)" if name == "prompts" else ""
        raise SketchError(f"{owner}: setting {name!r} takes a constant, not a source like {value!r}{hint}", name)
    if name == "model" and (not isinstance(value, str) or not value):
        raise SketchError(f"{owner}: model must be 'builtin', a diffusers model id or a path, got {value!r}", name)
    if name == "size":
        ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % 8 == 0 for v in value)
        if not ok:
            raise SketchError(f"{owner}: size must be (width, height) in pixels, multiples of 8, got {value!r}", name)
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


def _target_value(owner: str, name: str, value: Any, params: Mapping[str, Param]) -> Any:
    """Validate a target's constant or source; returns it unchanged."""
    if value is None or isinstance(value, Source):
        if value is None and name in ("guidance", "delta", "strength", "noise_walk"):
            raise SketchError(f"{owner}: {name} needs a number or a source, got None", name)
        return value
    if name in ("seed_step", "scene"):
        raise SketchError(f"{owner}: {name} takes a source such as audio.beat or midi.note(36), got {value!r}", name)
    if name in params:
        rng = params[name].range or (-math.inf, math.inf)
        return _number(owner, name, value, *rng)
    lo, hi = {"morph": (0, 1), "seed_morph": (0, 1), "strength": (0, 1)}.get(name, (-math.inf, math.inf))
    if _WEIGHT.match(name):
        lo = 0.0
    return _number(owner, name, value, lo, hi)


def _expand_weights(owner: str, values: dict[str, Any], n_prompts: int) -> None:
    weights = values.pop("weights", None)
    if weights is None:
        return
    if not isinstance(weights, (list, tuple)) or len(weights) != n_prompts:
        raise SketchError(f"{owner}: weights must be a list with one entry per prompt ({n_prompts}), got {weights!r}",
                          "weights")
    for i, w in enumerate(weights):
        values[f"weight_{i}"] = w


def _check_name(owner: str, name: str, n_prompts: int, params: Mapping[str, Param], value: Any) -> None:
    match = _WEIGHT.match(name)
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


def _target_table(values: Mapping[str, Any], params: Mapping[str, Param], n_prompts: int) -> dict[str, Target]:
    table: dict[str, Target] = {}
    templates = list(BUILTIN_TARGETS.values()) + [weight_target(i) for i in range(n_prompts)]
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
        conditioning[key] = _setting(where, key, overrides.pop(key))
    n = len(conditioning["prompts"])
    _expand_weights(where, overrides, n)
    values, sets = dict(base), {}
    for key, value in overrides.items():
        if key in ENGINE_SETTINGS or key == "scenes":
            raise SketchError(f"{where} sets {key!r}, which scenes cannot change; scenes may set "
                              f"{', '.join(CONDITIONING_SETTINGS)}, targets and Params", "scenes")
        _check_name(where, key, n, params, value)
        values[key] = _target_value(where, key, value, params)
        if not isinstance(value, Source) and value is not None:
            sets[key] = float(value)
    scene_params = {k: replace(p, source=values[k] if isinstance(values.get(k), Source) else
                               (None if k in sets else p.source)) for k, p in params.items()}
    table = _target_table(values, scene_params, n)
    return SceneSpec(name, table, sets), ConditioningSettings(**conditioning)


def compile_sketch(cls: type[Sketch]) -> SketchSpec:
    """Validate a Sketch subclass into a SketchSpec; SketchError names the attribute and suggests a fix."""
    owner = cls.__name__
    attrs: dict[str, Any] = {}
    params: dict[str, Param] = {}
    for klass in reversed(cls.__mro__):
        if klass in (Sketch, object):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name.isupper():
                continue
            if isinstance(value, (types.FunctionType, staticmethod, classmethod, property, type)):
                near = closest(name, HOOKS)
                if name not in HOOKS and near and abs(len(near) - len(name)) <= 1:
                    raise SketchError(f"{owner}: method {name!r} looks like the hook {near!r}; rename it "
                                      f"(or start a helper's name with '_')", name)
                continue
            if isinstance(value, Param):
                if name in SETTINGS or name in TARGETS or name in HOOKS or _WEIGHT.match(name):
                    raise SketchError(f"{owner}: Param {name!r} reuses a built-in name; choose another name", name)
                params[name] = value
            attrs[name] = value
    for hook, arity in (("setup", 1), ("update", 3)):
        try:
            inspect.signature(getattr(cls, hook)).bind(*([None] * arity))
        except TypeError:
            args = "(self)" if arity == 1 else "(self, p, t)"
            raise SketchError(f"{owner}: {hook} must take {args}", hook) from None
    settings = {name: _setting(owner, name, getattr(cls, name)) for name in SETTINGS if name != "scenes"}
    n = len(settings["prompts"])
    values: dict[str, Any] = {name: getattr(cls, name) for name in TARGETS}
    for name, value in attrs.items():
        _check_name(owner, name, n, params, value)
        if name in params and not isinstance(value, Param):
            if isinstance(value, Source):
                params[name] = replace(params[name], source=value)
            else:
                params[name] = replace(params[name], default=_target_value(owner, name, value, params))
        elif _WEIGHT.match(name):
            values[name] = value
    _expand_weights(owner, values, n)
    for name in list(values):
        values[name] = _target_value(owner, name, values[name], params)
    conditioning = ConditioningSettings(settings["prompts"], settings["negative_prompt"], settings["seeds"],
                                        settings["prompt_blend"])
    scenes, scene_settings = _scenes(owner, cls.scenes, values, params, conditioning)
    engine = EngineSettings(settings["model"], settings["size"], settings["steps"], settings["sampler"],
                            settings["cfg"], settings["fps"])
    mapping = MappingSpec(_target_table(values, params, n), scenes)
    return SketchSpec(owner, engine, conditioning, mapping, types.MappingProxyType(params), scene_settings)


def _scenes(owner: str, scenes: Any, values: dict[str, Any], params: Mapping[str, Param],
            conditioning: ConditioningSettings) -> tuple[tuple[SceneSpec, ...], tuple[ConditioningSettings, ...]]:
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


# --- the tick -------------------------------------------------------------------------------------------------------


class TickValues:
    """This tick's values for update(): read and write by attribute or item (p.glow, p["guidance"] = 1.5)."""

    __slots__ = ("_values", "_names")

    def __init__(self, values: dict[str, float], names: frozenset[str]) -> None:
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_names", names)

    def _unknown(self, name: str) -> str:
        return f"unknown parameter {name!r}{did_you_mean(name, self._names)}"

    def __getitem__(self, name: str) -> float | None:
        if name in self._values:
            return self._values[name]
        if name in self._names:
            return None  # a target that is inactive this tick (e.g. morph when nothing maps it)
        raise KeyError(self._unknown(name))

    def __getattr__(self, name: str) -> float | None:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(self._unknown(name)) from None

    def __setitem__(self, name: str, value: float) -> None:
        if name not in self._names:
            raise KeyError(self._unknown(name))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"p.{name} must be a finite number, got {value!r}")
        self._values[name] = float(value)

    def __setattr__(self, name: str, value: float) -> None:
        try:
            self[name] = value
        except KeyError:
            raise AttributeError(self._unknown(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, name: str, default: float | None = None) -> float | None:
        """The value of name, or default when it is inactive."""
        value = self[name]
        return default if value is None else value


@dataclass(frozen=True)
class TickResult:
    """One tick's output: the engine's conditioning, every target's value, and the scene."""

    conditioning: Conditioning
    values: Mapping[str, float]
    scene: int | None
    t_s: float  # seconds since the first tick
    ok: bool = True  # False: this tick failed and repeats the previous result


@dataclass(frozen=True)
class SketchErrors:
    """Errors the live loop absorbed (for the HUD)."""

    count: int = 0
    last: str | None = None  # "ZeroDivisionError: division by zero (show.py:14 in update)"


class SketchRunner:
    """Runs a sketch tick by tick: bus snapshot -> update(p, t) -> Conditioning; nothing in a tick is fatal.

    Call `tick` and `reload` from one thread (the one that feeds the engine); controllers push into `bus` from theirs.
    """

    LOG_EVERY_S = 10.0  # a repeating error is logged again at most this often

    def __init__(self, sketch_cls: type[Sketch], bus: ParamBus | None = None) -> None:
        self.bus = bus if bus is not None else ParamBus()
        self._builder = ConditioningBuilder()
        self._errors = SketchErrors()
        self._logged: tuple[str, float] | None = None
        self._previous: TickResult | None = None
        self._start_s: float | None = None
        self._load(sketch_cls)

    def _load(self, sketch_cls: type[Sketch]) -> None:
        spec = sketch_cls.spec()
        try:
            sketch = sketch_cls()
        except Exception as exc:
            raise SketchError(f"{sketch_cls.__name__}() failed: {type(exc).__name__}: {exc}") from exc
        self.bus.configure(spec.mapping)
        self.sketch_cls, self.spec, self.sketch = sketch_cls, spec, sketch
        self._names = frozenset(self.bus.names)
        self._has_update = sketch_cls.update is not Sketch.update
        try:
            self.sketch.setup()
        except Exception as exc:  # the show goes on; update() may still work
            self._record(exc, "setup", None)

    def reload(self, sketch_cls: type[Sketch]) -> bool:
        """Switch to a new version of the sketch (bus, phase, seed, smoothing go on); True if the model must reload."""
        old = self.spec.model_key
        self._load(sketch_cls)
        return self.spec.model_key != old

    @property
    def errors(self) -> SketchErrors:
        """How many tick errors were absorbed, and the last one."""
        return self._errors

    def _record(self, exc: Exception, where: str, now_s: float | None) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        path = getattr(self.sketch_cls, "__livekit_path__", None)
        mine = [f for f in frames if path is not None and f.filename == str(path)] or frames[-1:]
        at = f" ({Path(mine[-1].filename).name}:{mine[-1].lineno} in {mine[-1].name})" if mine else ""
        message = f"{type(exc).__name__} in {where}: {exc}{at}"
        self._errors = SketchErrors(self._errors.count + 1, message)
        last = self._logged
        if last is None or last[0] != message or now_s is None or now_s - last[1] >= self.LOG_EVERY_S:
            log.error("sketch error (%d so far): %s", self._errors.count, message, exc_info=last is None)
            self._logged = (message, now_s if now_s is not None else -math.inf)

    def tick(self, now_s: float, tempo: TempoState | None = None) -> TickResult:
        """Evaluate one tick at now_s (time.monotonic()); on any error the previous result repeats with ok=False."""
        if self._start_s is None:
            self._start_s = now_s
        t_s = now_s - self._start_s
        stage = "mappings"
        try:
            snap = self.bus.snapshot(now_s, tempo)
            values = dict(snap.values)
            if self._has_update:
                stage = "update"
                self.sketch.update(TickValues(values, self._names), t_s)
                if values.get("scene") is not None and values.get("scene") != snap.get("scene"):
                    self.bus.set("scene", values["scene"])  # applies from the next tick
            stage = "conditioning"
            settings = apply_overrides(self.spec.settings_for(snap.scene), snap.overrides)
            conditioning = self._builder.build(settings, values, now_s)
        except Exception as exc:  # nothing is fatal in the live loop: count, log (rate-limited), keep the last
            self._builder.skip(now_s)
            self._record(exc, stage, now_s)
            if self._previous is not None:
                return replace(self._previous, t_s=t_s, ok=False)
            fallback = build_conditioning(self.spec.conditioning, {})
            return TickResult(fallback, types.MappingProxyType({}), None, t_s, ok=False)
        self._previous = TickResult(conditioning, types.MappingProxyType(values), snap.scene, t_s)
        return self._previous


# --- loading --------------------------------------------------------------------------------------------------------

_module_ids = itertools.count()


def _line_of(source: str, attribute: str | None) -> int | None:
    if not attribute:
        return None
    pattern = re.compile(rf"^\s*(def\s+)?{re.escape(attribute)}\b")
    return next((i for i, line in enumerate(source.splitlines(), 1) if pattern.match(line)), None)


def load_sketch(path: str | Path) -> type[Sketch]:
    """Execute a sketch file as a fresh module and return its validated Sketch subclass."""
    path = Path(path).resolve()
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SketchError(f"cannot read sketch {path}: {exc.strerror or exc}") from exc
    # compile ourselves instead of importlib's file loader: its bytecode cache is keyed on whole-second mtimes and
    # could hand a hot reload the previous version of a file saved twice within one second.
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise SketchError(f"{path.name}:{exc.lineno}: syntax error: {exc.msg}") from exc
    stem = re.sub(r"\W", "_", path.stem)
    name = f"livekit_sketch_{next(_module_ids)}_{stem}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # while executing, for dataclasses and the like
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
        line = f":{frames[-1].lineno}" if frames else ""
        raise SketchError(f"{path.name}{line}: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.modules.pop(name, None)
    cls = _find_sketch_class(module, path)
    try:
        cls.spec()
    except SketchError as exc:
        line = _line_of(source, exc.attribute)
        raise SketchError(f"{path.name}{f':{line}' if line else ''}: {exc}", exc.attribute) from exc
    cls.__livekit_path__ = path
    return cls


def _find_sketch_class(module: types.ModuleType, path: Path) -> type[Sketch]:
    chosen = module.__dict__.get("__sketch__")
    classes = {k: v for k, v in vars(module).items()
               if isinstance(v, type) and issubclass(v, Sketch) and v is not Sketch and v.__module__ == module.__name__}
    if chosen is not None:
        if isinstance(chosen, type) and issubclass(chosen, Sketch):
            return chosen
        if isinstance(chosen, str) and chosen in classes:
            return classes[chosen]
        raise SketchError(f"{path.name}: __sketch__ = {chosen!r} names no Sketch class in the file"
                          f"{did_you_mean(str(chosen), classes)}")
    if not classes:
        raise SketchError(f"{path.name}: no Sketch subclass found; define one: "
                          "`from livekit import Sketch` and `class Show(Sketch): ...`")
    if len(classes) > 1:
        raise SketchError(f"{path.name}: {len(classes)} Sketch classes ({', '.join(classes)}); "
                          f"say which one runs with __sketch__ = {next(iter(classes))!r}")
    return next(iter(classes.values()))
