"""livekit: live AI visuals. A sketch declares prompts, seeds, parameters and mappings; `livekit run` shows it.

Rooms: `livekit.sketch` (the sketch language), `livekit.show` (the run loop), `livekit.stage` (the window),
`livekit.outputs` (recording, NDI, Syphon, Spout), `livekit.picture` (live pictures in: camera, video file, NDI),
`livekit.commands` (the CLI's subcommands); `livekit.cli` is the console entry point."""

from typing import Any

from livekit.outputs.video import ndi_out, spout_out, syphon_out
from livekit.sketch import Param, ParamBus, Sketch, SketchError, SketchRunner, load_sketch
from livekit.sketch.sources import audio, key, lfo, midi, osc, tempo

__all__ = ["Param", "ParamBus", "Sketch", "SketchError", "SketchRunner", "audio", "key", "lfo", "load_sketch",
           "midi", "osc", "tempo", "camera", "video", "ndi_in",
           "ndi_out", "syphon_out", "spout_out"]


def __getattr__(name: str) -> Any:
    """camera(), video() and ndi_in() load their libraries (PyAV, NDI) only when a sketch uses them."""
    if name in ("camera", "video", "ndi_in"):
        from livekit.picture import public

        return public(name)
    raise AttributeError(f"module 'livekit' has no attribute {name!r}")
