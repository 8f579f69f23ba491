"""The `livekit` command: run, render, bench, devices."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from livekit.commands.args import engine_args, host_port, parse_size, port_number, positive_int


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livekit", description="Live AI visuals: run sketches, render, bench.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a sketch in the stage window (or --headless)")
    run.add_argument("sketch", type=Path)
    run.add_argument("--model", default=None, help="override the sketch's model")
    run.add_argument("--size", type=parse_size, default=None, help="override the sketch's size, WxH")
    run.add_argument("--device", default="auto")
    run.add_argument("--fullscreen", action="store_true")
    run.add_argument("--display", type=int, default=0, help="display index for fullscreen (see `livekit devices`)")
    run.add_argument("--headless", action="store_true", help="no window: frames go to --out and the video "
                     "outputs only (a render node: --headless --ndi-out NAME)")
    run.add_argument("--ndi-out", action="append", default=None, metavar="NAME",
                     help="send every displayed frame as an NDI source NAME (repeatable)")
    run.add_argument("--syphon-out", action="append", default=None, metavar="NAME", help="a Syphon server (macOS)")
    run.add_argument("--spout-out", action="append", default=None, metavar="NAME", help="a Spout sender (Windows)")
    run.add_argument("--frames", type=positive_int, default=None, help="stop after this many generated frames")
    run.add_argument("--out", type=Path, default=None, help="a folder (PNG frames) or a video file (.mp4)")
    run.add_argument("--osc-port", type=port_number, default=None, help="OSC input port (default 9000; 0 = off)")
    run.add_argument("--osc-host", default="127.0.0.1", help="OSC bind address (0.0.0.0 to accept the network)")
    run.add_argument("--osc-out", type=host_port, default=None, help="HOST:PORT that receives state (fps, bpm, beat, values)")
    run.add_argument("--midi-in", default=None, help="MIDI input port name or fragment ('virtual' = a livekit port)")
    run.add_argument("--midi-out", default=None, help="MIDI output port name or fragment ('virtual' = a livekit "
                     "port) that echoes mapped knob values to LED rings and motor faders")
    run.add_argument("--audio-in", default=None, help="audio input device (name or index) or a WAV/FLAC file")
    run.add_argument("--link", action="store_true", help="join the Ableton Link session (tempo, beat, tap out)")
    run.add_argument("--midi-api", default=None, help="MIDI backend: alsa, jack, coremidi, winmm (default: the "
                     "first that works, so JACK MIDI is found where there is no ALSA sequencer)")
    run.add_argument("--hud", action="store_true", help="start with the HUD visible (H toggles it)")
    run.add_argument("--no-reload", action="store_true", help="do not watch the sketch file for changes")

    render = sub.add_parser("render", help="render stills through the same engine")
    engine_args(render)
    render.add_argument("--prompt", action="append", default=None, help="repeat for several prompts")
    render.add_argument("--mix", type=float, default=None, help="with two prompts: weight of the second (0..1)")
    render.add_argument("--negative", default="", help="negative prompt (cfg full or onetime)")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--guidance", type=float, default=None)
    render.add_argument("--grid", type=Path, default=None, help="a text file with one prompt per line: contact sheet")
    render.add_argument("--seeds", type=int, default=4, help="with --grid: seeds per prompt (columns)")
    render.add_argument("--out", type=Path, required=True, help="output PNG")

    bench = sub.add_parser("bench", help="measure the stream against its floor and sequential sampling")
    engine_args(bench)
    bench.add_argument("--frames", type=positive_int, default=30)
    bench.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    bench.add_argument("--json", action="store_true", help="print one JSON object")

    devices = sub.add_parser("devices", help="list MIDI ports, audio inputs and displays")
    devices.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `livekit` console command."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "render":
            from livekit.commands.render import render_command

            return render_command(args)
        if args.command == "bench":
            from livekit.commands.bench import bench_command

            return bench_command(args)
        if args.command == "devices":
            from livekit.commands.devices import devices_command

            return devices_command(args)
        from livekit.commands.run import run_command

        return run_command(args)
    except (ValueError, FileNotFoundError) as exc:  # bad input at the edge: one clear line, no traceback
        print(f"livekit {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def console() -> None:
    """The `livekit` console script: main(); after `livekit run` has shut its show down (outputs closed, files
    written) the process ends at once, without the interpreter's teardown of torch and the device libraries, so
    SIGTERM exits quickly however loaded the machine is."""
    code = main()
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console()
