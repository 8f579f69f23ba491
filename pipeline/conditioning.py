"""Conditioning: everything that may change from one stream step to the next without resetting the stream."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

BLEND_MODES = ("lerp", "slerp")
CONTROL_MODES = ("canny", "none")  # ControlNet pre-processing; "none": the picture as is (an edge or depth map)


@dataclass(frozen=True)
class Conditioning:
    """Per-tick inputs of `StreamEngine.step`: prompt and seed mixes, guidance, noise walk, input and control images."""

    prompts: tuple[tuple[str, float], ...] = (("", 1.0),)  # (text, weight) pairs; weights need not sum to 1
    negative_prompt: str = ""  # used by cfg "full" and "onetime"
    seeds: tuple[tuple[int, float], ...] = ((0, 1.0),)  # (seed, weight) pairs; the start noise is their blend
    noise_walk: float = 0.0  # phase in radians of the slow rotation of the start noise (same phase = same frame)
    motion_phase: float = 0.0  # animation phase in cycles (1.0 = one loop of the builtin patterns' motion)
    guidance: float = 1.0  # CFG scale (cfg "full", "self", "onetime")
    delta: float = 1.0  # residual CFG: scale of the virtual negative noise
    strength: float = 0.5  # img2img: how much of the input image is re-noised (0 = keep, 1 = ignore)
    prompt_blend: str = "slerp"  # lerp | slerp (see pipeline.blending)
    # (H, W, 3) uint8 numpy input image, or None for txt2img (StreamWorker swaps in the pre-processed tensor)
    image: Any = field(default=None, compare=False)
    control_scale: float = 1.0  # ControlNet: how strongly the control picture's structure steers (0 = no ControlNet)
    control_mode: str = "canny"  # ControlNet pre-processing of control_image: canny | none
    # ControlNet picture: (H, W, 3) uint8 numpy (StreamWorker swaps in the pre-processed (1, 3, h, w) tensor) or None
    control_image: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("prompts must hold at least one (text, weight) pair; use (('', 1.0),) for none")
        if not self.seeds:
            raise ValueError("seeds must hold at least one (seed, weight) pair")
        for _, w in self.prompts + self.seeds:
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"weights must be finite and >= 0, got {w!r}")
        if sum(w for _, w in self.prompts) <= 0 or sum(w for _, w in self.seeds) <= 0:
            raise ValueError("at least one prompt weight and one seed weight must be > 0")
        if self.prompt_blend not in BLEND_MODES:
            raise ValueError(f"prompt_blend must be one of {BLEND_MODES}, got {self.prompt_blend!r}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be in range 0..1, got {self.strength!r}")
        if not math.isfinite(self.control_scale) or self.control_scale < 0:
            raise ValueError(f"control_scale must be finite and >= 0, got {self.control_scale!r}")
        if self.control_mode not in CONTROL_MODES:
            raise ValueError(f"control_mode must be one of {CONTROL_MODES}, got {self.control_mode!r}")
        for name in ("noise_walk", "motion_phase", "guidance", "delta"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
