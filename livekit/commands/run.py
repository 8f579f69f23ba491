"""`livekit run`: parsed arguments -> RunOptions -> one Show."""

from __future__ import annotations

import argparse
import logging

from livekit.commands.args import check_audio_in, check_host
from livekit.outputs.video import OutputSpec
from livekit.show.inputs import InputOptions
from livekit.show.loop import RunOptions, Show
from livekit.sketch import SketchError


def run_command(args: argparse.Namespace) -> int:
    """Run `livekit run` from parsed arguments."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.sketch.is_file():
        raise FileNotFoundError(f"no sketch at {args.sketch}")
    if args.osc_out:  # every argument is checked before anything loads: a typo costs one line, not a model load
        check_host(args.osc_out, "--osc-out")
    check_audio_in(args.audio_in)
    options = RunOptions(
        sketch=args.sketch, model=args.model, size=args.size, device=args.device, fullscreen=args.fullscreen,
        display=args.display, headless=args.headless, frames=args.frames, out=args.out,
        inputs=InputOptions(osc_port=args.osc_port, osc_host=args.osc_host, midi_in=args.midi_in,
                            audio_in=args.audio_in, osc_out=args.osc_out, midi_out=args.midi_out,
                            link=args.link, midi_backend=midi_backend(args.midi_api)),
        reload=not args.no_reload, hud=args.hud, outputs=output_specs(args),
    )
    try:
        return Show(options).run()
    except SketchError as exc:
        raise ValueError(str(exc)) from exc


def output_specs(args: argparse.Namespace) -> tuple[OutputSpec, ...]:
    """The video outputs asked for on the command line (--ndi-out / --syphon-out / --spout-out NAME)."""
    return tuple(OutputSpec(kind, name) for kind in ("ndi", "syphon", "spout")
                 for name in (getattr(args, f"{kind}_out", None) or ()))


def midi_backend(api: str | None) -> str | None:
    """The mido backend for --midi-api (None: auto, the first MIDI API that works here)."""
    if api is None:
        return None
    from controllers.midi import resolve_backend

    return resolve_backend(api)
