"""`livekit render`: stills and contact sheets through the same engine the live show uses."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from livekit.commands.args import model_kwargs
from pipeline import Conditioning, EngineConfig, StreamEngine, load_model, to_uint8

GRID_GAP_PX = 4  # gap between contact-sheet cells


def _prompts(args: argparse.Namespace) -> tuple[tuple[str, float], ...]:
    """Weighted prompts from --prompt (repeatable) and --mix."""
    prompts = args.prompt or [""]
    if args.mix is not None:
        if len(prompts) != 2:
            raise ValueError("--mix needs exactly two --prompt values")
        if not 0.0 <= args.mix <= 1.0:
            raise ValueError(f"--mix must be in range 0..1, got {args.mix}")
        return ((prompts[0], 1.0 - args.mix), (prompts[1], args.mix))
    return tuple((p, 1.0) for p in prompts)


def render_still(engine: StreamEngine, prompts: tuple[tuple[str, float], ...], seed: int, negative: str = "",
                 guidance: float | None = None) -> np.ndarray:
    """One frame (H, W, 3) uint8, sampled the way the stream samples it."""
    g = engine.defaults.guidance if guidance is None else guidance
    cond = Conditioning(prompts=prompts, negative_prompt=negative, seeds=((seed, 1.0),), guidance=g)
    return to_uint8(engine.render(cond))


def contact_sheet(cells: list[list[np.ndarray]], gap_px: int = GRID_GAP_PX) -> np.ndarray:
    """Tile rows of equally sized frames into one image with dark gaps."""
    h, w, _ = cells[0][0].shape
    rows, cols = len(cells), max(len(r) for r in cells)
    sheet = np.full((rows * h + (rows + 1) * gap_px, cols * w + (cols + 1) * gap_px, 3), 16, dtype=np.uint8)
    for r, row in enumerate(cells):
        for c, img in enumerate(row):
            y, x = gap_px + r * (h + gap_px), gap_px + c * (w + gap_px)
            sheet[y : y + h, x : x + w] = img
    return sheet


def render_command(args: argparse.Namespace) -> int:
    """Run `livekit render`."""
    from livekit.outputs.recording import save_png

    if args.out.suffix.lower() != ".png":
        raise ValueError(f"--out must be a .png file, got {args.out}")
    model = load_model(args.model, device=args.device, **model_kwargs(args))
    engine = StreamEngine(model, EngineConfig(size_px=args.size, sampler=args.sampler, steps=args.steps, cfg=args.cfg))
    if args.grid is not None:
        lines = [ln.strip() for ln in Path(args.grid).read_text(encoding="utf-8").splitlines()]
        prompts = [ln for ln in lines if ln and not ln.startswith("#")]
        if not prompts:
            raise ValueError(f"{args.grid} holds no prompts (one prompt per line)")
        cells = [[render_still(engine, ((p, 1.0),), args.seed + k, args.negative, args.guidance)
                  for k in range(args.seeds)] for p in prompts]
        image = contact_sheet(cells)
    else:
        image = render_still(engine, _prompts(args), args.seed, args.negative, args.guidance)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_png(args.out, image)
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]})")
    return 0
