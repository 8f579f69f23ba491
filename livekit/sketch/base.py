"""The Sketch base class, its validation into a SketchSpec, and `load_sketch`.

A sketch declares settings as class attributes; any mappable setting may hold a Source instead of a constant::

    class Show(Sketch):
        prompts = ["neon magenta rings", "deep blue ocean waves"]
        morph = midi.cc(1)                       # a knob morphs across the prompts
        glow = Param(0.5, range=(0, 1))          # a declared parameter, readable in update()

The names a sketch may use and the checks on their values live in livekit.sketch.settings; livekit.sketch.runner runs a sketch.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import math
import re
import sys
import traceback
import types
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livekit.sketch.conditioning import ConditioningSettings
from livekit.sketch.mappings import MappingSpec
from livekit.sketch.params import Param
from livekit.sketch.settings import (
    HOOKS,
    SETTINGS,
    TARGETS,
    WEIGHT_NAME,
    SketchError,
    build_scenes,
    check_control,
    check_name,
    expand_weights,
    setting_value,
    target_table,
    target_value,
)
from livekit.sketch.sources import KeyInput, RelativeInput, Source
from livekit.sketch.suggest import closest, did_you_mean

if TYPE_CHECKING:
    from controllers.midi import MidiDecoderConfig
    from livekit.sketch.values import TickValues


class Sketch:
    """Base class of a sketch: settings as class attributes, Params and mappings, and the setup/update hooks."""

    model: str = "builtin"  # "builtin" (offline, any CPU), a diffusers model id, or a local path
    size: tuple[int, int] = (512, 512)  # output (width, height) in pixels, multiples of 8
    prompts: Any = [""]  # list of str, or of (str, weight)
    negative_prompt: str = ""  # for cfg "full" and "onetime"
    seeds: Any = [0]  # seed list; seed_morph / seed_step move through it
    steps: int | None = None  # denoising steps (None = the model's default)
    mode: str = "txt2img"  # txt2img | img2img (the `image` re-imagined) | feedback (each frame re-imagines the last)
    image: Any = None  # img2img input / feedback's first frame: a picture path (relative to the sketch) or a live
    # source: camera(0), video("loop.mp4"), ndi_in("NAME")
    controlnet: str | None = None  # a diffusers ControlNet folder or cached hub id (SD 1.x/2.x): frames follow the
    control: Any = None  # structure of this picture: camera(0), video(...), ndi_in(...) or a path (None: `image`)
    control_mode: str = "canny"  # canny (the control picture's edges) | none (the picture as is)
    control_scale: Any = 1.0  # ControlNet strength 0..2 (0 = no ControlNet; a knob fades the structure in and out)
    outputs: Any = ()  # video outputs beside the window: [ndi_out("livekit"), syphon_out(...), spout_out(...)]
    sampler: str | None = None  # turbo | lcm | ddim | dpmpp_2m (None = the model's default)
    cfg: str | None = None  # none | full | self | onetime (None = the model's default)
    guidance: Any = 1.0  # CFG scale
    delta: Any = 1.0  # residual-CFG delta
    strength: Any = 0.5  # img2img strength 0..1
    noise_walk: Any = 0.0  # noise-walk speed in radians per second (motion while nothing else moves)
    motion: Any = 0.0  # pattern animation speed in cycles per second (rings expand, waves roll; builtin model)
    prompt_blend: str = "slerp"  # lerp | slerp
    fps: float = 30  # display and generation cap
    scenes: Any = None  # list of {setting: value} overrides, or {name: overrides}; keys 1-9 select them
    morph: Any = None  # 0..1 across the prompt list (None = the declared weights)
    seed_morph: Any = None  # 0..1 across the seed list (None = one seed at a time)
    seed_step: Any = None  # a trigger source: each event steps to the next seed
    prompt_step: Any = None  # a trigger source: each event steps to the next prompt (morph moves around it)
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
    mode: str = "txt2img"
    image: Any = None  # a path or a live picture source
    controlnet: str | None = None  # loaded with the model
    control: Any = None  # the ControlNet's picture (None: the image)
    control_mode: str = "canny"

    @property
    def model_key(self) -> tuple[str, tuple[int, int], str | None]:
        """What decides whether the model (and its ControlNet) must reload."""
        return self.model, self.size, self.controlnet


@dataclass(frozen=True)
class SketchSpec:
    """A validated sketch: engine settings, conditioning settings, targets and scenes."""

    name: str
    engine: EngineSettings
    conditioning: ConditioningSettings
    mapping: MappingSpec
    params: Mapping[str, Param]
    scene_settings: tuple[ConditioningSettings, ...] = ()
    outputs: tuple = ()  # OutputSpec-like (kind, name) video outputs the sketch asks for

    @property
    def model_key(self) -> tuple[str, tuple[int, int], str | None]:
        """(model, size, controlnet): hot reload reloads the model only when this changes."""
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
                if name in SETTINGS or name in TARGETS or name in HOOKS or WEIGHT_NAME.match(name):
                    raise SketchError(f"{owner}: Param {name!r} reuses a built-in name; choose another name", name)
                params[name] = value
            attrs[name] = value
    for hook, arity in (("setup", 1), ("update", 3)):
        try:
            inspect.signature(getattr(cls, hook)).bind(*([None] * arity))
        except TypeError:
            args = "(self)" if arity == 1 else "(self, p, t)"
            raise SketchError(f"{owner}: {hook} must take {args}", hook) from None
    settings = {name: setting_value(owner, name, getattr(cls, name)) for name in SETTINGS if name != "scenes"}
    check_control(owner, settings)
    n = len(settings["prompts"])
    values: dict[str, Any] = {name: getattr(cls, name) for name in TARGETS}
    for name, value in attrs.items():
        check_name(owner, name, n, params, value)
        if name in params and not isinstance(value, Param):
            if isinstance(value, Source):
                params[name] = replace(params[name], source=value)
            else:
                params[name] = replace(params[name], default=target_value(owner, name, value, params))
        elif WEIGHT_NAME.match(name):
            values[name] = value
    expand_weights(owner, values, n)
    for name in list(values):
        values[name] = target_value(owner, name, values[name], params)
    conditioning = ConditioningSettings(settings["prompts"], settings["negative_prompt"], settings["seeds"],
                                        settings["prompt_blend"])
    scenes, scene_settings = build_scenes(owner, cls.scenes, values, params, conditioning)
    engine = EngineSettings(settings["model"], settings["size"], settings["steps"], settings["sampler"],
                            settings["cfg"], settings["fps"], settings["mode"], settings["image"],
                            settings["controlnet"], settings["control"], settings["control_mode"])
    mapping = MappingSpec(target_table(values, params, n, len(settings["seeds"])), scenes)
    return SketchSpec(owner, engine, conditioning, mapping, types.MappingProxyType(params), scene_settings,
                      settings["outputs"])


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
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise SketchError(f"{path.name}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                          f"{exc.start}); save the sketch as UTF-8") from exc
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
    folder = str(path.parent)
    sys.modules[name] = module  # while executing, for dataclasses and the like
    sys.path.insert(0, folder)  # while executing, so the sketch can import helper modules that sit next to it
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
        line = f":{frames[-1].lineno}" if frames else ""
        raise SketchError(f"{path.name}{line}: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.modules.pop(name, None)
        if folder in sys.path:  # removes the first entry, ours: sys.path is left as it was
            sys.path.remove(folder)
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
