"""livekit: live AI visuals. A sketch declares prompts, seeds, parameters and mappings; `livekit run` shows it.

Rooms: `livekit.sketch` (the sketch language), `livekit.show` (the run loop), `livekit.stage` (the window),
`livekit.outputs` (recording, NDI, Syphon, Spout), `livekit.commands` (the CLI's subcommands); `livekit.cli` is
the console entry point."""

from livekit.sketch import Param, ParamBus, Sketch, SketchError, SketchRunner, load_sketch
from livekit.sketch.sources import audio, key, lfo, midi, osc, tempo

__all__ = ["Param", "ParamBus", "Sketch", "SketchError", "SketchRunner", "audio", "key", "lfo", "load_sketch",
           "midi", "osc", "tempo"]
