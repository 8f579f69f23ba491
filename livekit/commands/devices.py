"""`livekit devices`: what this machine offers a show: MIDI ports, audio inputs, displays, cameras, NDI sources."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _try(what: str, fn: Any) -> tuple[Any, str | None]:
    """Run a lister; a missing backend is a line in the listing, not a crash."""
    try:
        return fn(), None
    except Exception as exc:  # no MIDI API, no PortAudio, no video driver: say so and list the rest
        return [], f"{what} unavailable: {type(exc).__name__}: {exc}"


def list_devices() -> dict[str, Any]:
    """Everything `livekit devices` shows, as plain data."""
    from controllers.audio import list_input_devices
    from controllers.midi import list_input_ports, list_output_ports
    from livekit.picture.camera import list_cameras
    from livekit.picture.ndi_in import list_ndi_sources
    from livekit.stage.display import list_displays

    out: dict[str, Any] = {"problems": []}
    for key, what, fn in (("midi_inputs", "MIDI", list_input_ports), ("midi_outputs", "MIDI", list_output_ports),
                          ("audio_inputs", "audio", list_input_devices), ("displays", "displays", list_displays),
                          ("cameras", "cameras", list_cameras), ("ndi_sources", "NDI", lambda: list_ndi_sources(1.0))):
        out[key], problem = _try(what, fn)
        if problem and problem not in out["problems"]:
            out["problems"].append(problem)
    return out


def devices_command(args: argparse.Namespace) -> int:
    """Print the devices, as text or JSON."""
    found = list_devices()
    if args.json:
        print(json.dumps(found, default=list))
        return 0
    print("MIDI inputs:  " + (", ".join(found["midi_inputs"]) or "none"))
    print("MIDI outputs: " + (", ".join(found["midi_outputs"]) or "none"))
    print("Audio inputs:")
    for d in found["audio_inputs"] or []:
        print(f"  [{d['index']}] {d['name']} ({d['hostapi']}, {d['channels']} ch, {d['default_samplerate']:.0f} Hz)")
    if not found["audio_inputs"]:
        print("  none")
    print("Displays:")
    for d in found["displays"]:
        print(f"  [{d['index']}] {d['name']} {d['size'][0]}x{d['size'][1]} @ {d['refresh_hz'] or '?'} Hz")
    print("Cameras:      " + (", ".join(found["cameras"]) or "none"))
    print("NDI sources:  " + (", ".join(found["ndi_sources"]) or "none"))
    for problem in found["problems"]:
        print(f"note: {problem}")
    return 0
