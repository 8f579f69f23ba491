"""How smoothly the builtin model flows: `python -m pipeline.builtin_motion_report [--out DIR]`.

Streams one frame per step of a sweep (a prompt morph, a seed morph, a constant-speed noise walk, a constant-speed
motion phase) through the real StreamEngine and prints, per sweep: the largest single frame-to-frame step as a share
of the total change (want <= 5%) and the share of steps that carry 80% of the change (want >= 30%). Writes a contact
strip PNG (every 20th frame) of each sweep to DIR.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from pipeline.builtin_model import BuiltinModel
from pipeline.conditioning import Conditioning
from pipeline.stream import EngineConfig, StreamEngine

PROMPT_A, PROMPT_B = "neon magenta rings", "deep blue ocean waves"


def flow_figures(frames: list[torch.Tensor]) -> dict[str, float]:
    """Largest step share and the share of steps carrying 80% of the change, for frames (3, H, W) in [0, 1]."""
    steps = np.array([float((b - a).abs().mean()) * 255 for a, b in zip(frames, frames[1:])])
    total = float(steps.sum())
    if total <= 0:
        return {"total_change": 0.0, "max_step_share": 1.0, "steps_for_80pct": 0.0}
    ranked = np.sort(steps)[::-1].cumsum() / total
    needed = int(np.searchsorted(ranked, 0.8) + 1)
    return {"total_change": total, "max_step_share": float(steps.max() / total), "steps_for_80pct": needed / len(steps)}


def _stream(model: BuiltinModel, conds: Iterator[tuple[Conditioning, float]], size: int) -> list[torch.Tensor]:
    engine = StreamEngine(model, EngineConfig(size_px=(size, size), skip_static=False))
    frames = []
    for cond, phase in conds:
        frames.append(engine.step(replace(cond, motion_phase=phase)).float().cpu())  # the engine hands it on
    return frames


def sweeps(n: int) -> dict[str, Callable[[], Iterator[tuple[Conditioning, float]]]]:
    """The measured sweeps: name -> a generator of (conditioning, motion phase) per streamed frame."""
    ramp = [i / (n - 1) for i in range(n)]
    prompt = lambda: ((Conditioning(prompts=((PROMPT_A, 1 - s), (PROMPT_B, s)), seeds=((1, 1.0),)), 0.0)  # noqa
                      for s in ramp)
    seed = lambda: ((Conditioning(prompts=((PROMPT_A, 1.0),), seeds=((1, 1 - s), (2, s))), 0.0) for s in ramp)  # noqa
    walk = lambda: ((Conditioning(prompts=(("", 1.0),), noise_walk=2 * math.pi * s), 0.0) for s in ramp)  # noqa
    motion = lambda: ((Conditioning(prompts=(("cosmic tunnel", 1.0),)), 2.0 * s) for s in ramp)  # noqa
    return {"prompt": prompt, "seed": seed, "noise_walk": walk, "motion": motion}


def contact_strip(frames: list[torch.Tensor], every: int) -> np.ndarray:
    """(H, n*W, 3) uint8: every `every`-th frame side by side."""
    picks = frames[::every] + ([frames[-1]] if (len(frames) - 1) % every else [])
    return (torch.cat(picks, dim=2).permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _write_png(path: Path, image: np.ndarray) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def main(argv: list[str] | None = None) -> int:
    """Print the flow figures of every sweep and write their contact strips."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/builtin_motion", help="folder for the contact strip PNGs")
    parser.add_argument("--steps", type=int, default=200, help="frames per sweep")
    parser.add_argument("--size", type=int, default=256, help="frame size in pixels (square)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = BuiltinModel()
    print(f"{'sweep':12} {'total':>8} {'max step':>9} {'80% in':>7}  (want max <= 5%, 80% in >= 30% of steps)")
    for name, make in sweeps(args.steps).items():
        frames = _stream(model, make(), args.size)
        fig = flow_figures(frames)
        print(f"{name:12} {fig['total_change']:8.1f} {100 * fig['max_step_share']:8.2f}% "
              f"{100 * fig['steps_for_80pct']:6.1f}%")
        _write_png(out / f"strip_{name}.png", contact_strip(frames, max(1, args.steps // 10)))
    print(f"strips: {out}/strip_*.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
