"""livekit: live AI visuals. A sketch declares prompts, seeds, parameters and mappings; `livekit run` shows it."""

from livekit.params import Param, ParamBus
from livekit.runner import SketchRunner
from livekit.sketch import Sketch, SketchError, load_sketch
from livekit.sources import audio, key, lfo, midi, osc, tempo

__all__ = ["Param", "ParamBus", "Sketch", "SketchError", "SketchRunner", "audio", "key", "lfo", "load_sketch",
           "midi", "osc", "tempo"]
