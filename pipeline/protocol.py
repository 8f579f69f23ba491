"""The Denoiser protocol: what a model gives the engine, whatever family it comes from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass(frozen=True)
class ModelDefaults:
    """The sampling settings a model runs best with (a sketch or the CLI may override them)."""

    sampler: str = "dpmpp_2m"  # turbo | lcm | ddim | dpmpp_2m
    steps: int = 4  # denoising steps = stream slots
    cfg: str = "none"  # none | full | self | onetime
    guidance: float = 1.0  # classifier-free guidance scale (ignored when cfg is "none")
    size_px: tuple[int, int] = (512, 512)  # (width, height) the model was trained at


@runtime_checkable
class Denoiser(Protocol):
    """A diffusion model as the engine sees it.

    Shapes: latents x are (B, C, h, w); timesteps t are (B,) float (fractional timesteps are allowed, see
    `pipeline.schedule.alpha_sigma_at`); conditioning embeddings are (B, L, D) as `encode_prompt` returns (L, D).
    """

    name: str
    prediction_type: str  # one of PREDICTION_TYPES
    alphas_cumprod: torch.Tensor  # (T,) float64 on the CPU: the training noise schedule
    device: torch.device
    dtype: torch.dtype
    defaults: ModelDefaults

    def latent_shape(self, size_px: tuple[int, int]) -> tuple[int, int, int]:
        """(C, h, w) of the latent for an output of size_px = (width, height)."""
        ...

    def encode_prompt(self, text: str) -> torch.Tensor:
        """Embed one prompt: (L, D) on the model's device and dtype; "" is the unconditional embedding."""
        ...

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Model output for latents x (B,C,h,w) at timesteps t (B,) with embeddings cond (B,L,D)."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B,C,h,w) -> images (B,3,H,W) in [0, 1]."""
        ...

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B,3,H,W) in [0, 1] -> clean latents (B,C,h,w) (the x0 of img2img)."""
        ...
