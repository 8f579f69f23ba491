"""The sketch language: what a performer writes. `Sketch` (settings as class attributes, hooks), `Param`, the
sources a target can take (`midi`, `osc`, `audio`, `lfo`, `key`, `tempo`) and their chainable transforms, the
mapping evaluator and the thread-safe `ParamBus` they feed, and the `SketchRunner` that turns one tick of bus values
into a `pipeline.Conditioning`. Nothing here opens a device, a window or a model: it is plain data and logic,
tested with plain data."""

from livekit.sketch.base import Sketch, SketchError, load_sketch
from livekit.sketch.params import Param, ParamBus
from livekit.sketch.runner import SketchRunner
from livekit.sketch.sources import audio, key, lfo, midi, osc, tempo
from livekit.sketch.values import TickValues

__all__ = ["Param", "ParamBus", "Sketch", "SketchError", "SketchRunner", "TickValues", "audio", "key", "lfo",
           "load_sketch", "midi", "osc", "tempo"]
