"""`livekit bench`: the stream against its floor and sequential sampling, as text or one JSON object."""

from __future__ import annotations

import argparse
import json

from livekit.commands.args import model_kwargs


def bench_command(args: argparse.Namespace) -> int:
    """Run `livekit bench` from parsed arguments."""
    from pipeline import EngineConfig, load_model
    from pipeline.bench import run_bench
    from pipeline.devices import set_threads

    if args.threads:
        set_threads(args.threads)
    model = load_model(args.model, device=args.device, **model_kwargs(args))
    config = EngineConfig(size_px=args.size, sampler=args.sampler, steps=args.steps, cfg=args.cfg)
    result = run_bench(model, config, frames=args.frames)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v}")
    return 0
