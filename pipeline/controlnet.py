"""ControlNet on a live picture: a Stable Diffusion Denoiser whose every UNet call is steered by a control image.

`ControlledModel(base, controlnet)` speaks the Denoiser protocol; `set_control(image, scale)` swaps the control
picture (already pre-processed: see `preprocess_control`, run on the pre-processing thread) and the strength
(`control_scale`, a knob: 0 gives exactly the model without ControlNet). Every slot of the stream sees the same
control image, so the stream still equals sequential sampling.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.conditioning import CONTROL_MODES  # "canny" | "none": the picture as is (an edge or depth map, a pose)
from pipeline.cpu_layers import use_cpu_layers


def _gaussian_blur(gray: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (1, 1, H, W)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=gray.dtype, device=gray.device)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    gray = F.conv2d(F.pad(gray, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(gray, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


def canny(image: torch.Tensor, low: float = 0.1, high: float = 0.2, sigma: float = 1.0) -> torch.Tensor:
    """Canny edges (Canny 1986: blur, Sobel gradient, non-maximum suppression, hysteresis) of (3, H, W) in [0, 1].

    Returns (3, H, W) with 1.0 on edges and 0.0 elsewhere; low/high are gradient thresholds on the [0, 1] scale."""
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None, None].float()  # (1, 1, H, W)
    gray = _gaussian_blur(gray, sigma)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=gray.device) / 4.0
    padded = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, sobel.view(1, 1, 3, 3))[0, 0]
    gy = F.conv2d(padded, sobel.t().contiguous().view(1, 1, 3, 3))[0, 0]
    mag = torch.hypot(gx, gy)  # (H, W)
    # non-maximum suppression along the gradient direction, quantised to 0/45/90/135 degrees
    angle = (torch.rad2deg(torch.atan2(gy, gx)) + 180.0) % 180.0
    sector = ((angle + 22.5) // 45).long() % 4
    m = F.pad(mag, (1, 1, 1, 1))
    h, w = mag.shape
    shifted = {(dy, dx): m[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    pairs = [((0, -1), (0, 1)), ((-1, -1), (1, 1)), ((-1, 0), (1, 0)), ((-1, 1), (1, -1))]  # per sector
    keep = torch.zeros_like(mag, dtype=torch.bool)
    for s, (a, b) in enumerate(pairs):
        keep |= (sector == s) & (mag >= shifted[a]) & (mag >= shifted[b])
    mag = mag * keep
    strong, weak = mag >= high, mag >= low
    edges = strong
    for _ in range(max(h, w)):  # hysteresis: weak pixels connected to strong ones, grown until stable
        grown = weak & (F.max_pool2d(edges[None, None].float(), 3, 1, 1)[0, 0] > 0)
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges.to(image.dtype).expand(3, h, w).clone()


def preprocess_control(image: np.ndarray | torch.Tensor, size_px: tuple[int, int], mode: str = "canny",
                       device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W, 3) uint8 picture (or (3, H, W) float in [0, 1]) -> (1, 3, h, w) control image in [0, 1] at size_px."""
    if mode not in CONTROL_MODES:
        raise ValueError(f"control mode must be one of {CONTROL_MODES}, got {mode!r}")
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"control picture must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        image = np.require(image, requirements=["C", "W"])  # a live source's read-only frame is copied
        img = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    else:
        img = image.float()
    w, h = size_px
    if img.shape[-2:] != (h, w):
        img = F.interpolate(img[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    if mode == "canny":
        img = canny(img)
    return img[None].to(device, dtype)


class ControlledModel:
    """A Stable Diffusion Denoiser plus a ControlNet: the control residuals join every UNet call."""

    def __init__(self, base: Any, controlnet: torch.nn.Module, control_scale: float = 1.0) -> None:
        if type(base).__name__ != "SDModel":
            raise ValueError(f"ControlNet runs on SD 1.x/2.x models (SDModel); got {type(base).__name__}")
        width = int(controlnet.config.cross_attention_dim)
        if width != int(base.unet.config.cross_attention_dim):
            raise ValueError(f"the ControlNet expects {width}-wide text embeddings but the model gives "
                             f"{base.unet.config.cross_attention_dim}: it was trained for another base model")
        self.base = base
        param = next(controlnet.parameters())
        if (param.device, param.dtype) != (torch.device(base.device), base.dtype):  # a needless to() only warns
            controlnet = controlnet.to(base.device, base.dtype)
        self.controlnet = controlnet.eval().requires_grad_(False)
        if base.channels_last:
            self.controlnet.to(memory_format=torch.channels_last)
        if getattr(base, "cpu_layers", False):  # the same oneDNN-friendly layers as the base (pipeline.cpu_layers)
            use_cpu_layers(self.controlnet)
        self.control_image: torch.Tensor | None = None  # (1, 3, H, W) in [0, 1]
        self.control_scale = float(control_scale)
        self.control_version = 0  # bumped by take_control with every new picture (the engine's static key sees it)
        self._taken: tuple[Any, str] | None = None  # (picture, mode) take_control last got; held, so `is` is safe

    def __getattr__(self, name: str) -> Any:  # name, prediction_type, alphas_cumprod, decode, ... of the base
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def set_control(self, image: torch.Tensor | None = None, scale: float | None = None) -> None:
        """Swap the control image (1, 3, H, W) in [0, 1] and/or the scale (finite, >= 0; 0 = no ControlNet)."""
        if scale is not None:
            if not math.isfinite(scale) or scale < 0:
                raise ValueError(f"control_scale must be finite and >= 0, got {scale!r}")
            self.control_scale = float(scale)
        if image is not None:
            if image.ndim != 4 or image.shape[:2] != (1, 3):
                raise ValueError(f"control image must be (1, 3, H, W) in [0, 1], got {tuple(image.shape)}")
            self.control_image = image.to(self.base.device, self.base.dtype)

    def take_control(self, picture: np.ndarray | torch.Tensor | None, mode: str, scale: float,
                     size_px: tuple[int, int]) -> tuple[float, int]:
        """The engine's hand-off each step: the scale, and the picture when it is a new one (a (1, 3, H, W) tensor
        as pre-processed, or an (H, W, 3) uint8 picture, pre-processed here); None keeps the last picture.
        Returns (scale, picture version): the part of the engine's static key the ControlNet decides."""
        last = self._taken
        if picture is not None and (last is None or picture is not last[0] or mode != last[1]):
            self._taken = (picture, mode)
            if not isinstance(picture, torch.Tensor):  # a picture that did not pass StreamWorker's pre-thread
                picture = preprocess_control(picture, size_px, mode, self.base.device, self.base.dtype)
            self.set_control(picture, scale)
            self.control_version += 1
        else:
            self.set_control(scale=scale)
        return self.control_scale, self.control_version

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """UNet output with the ControlNet's residuals at control_scale (the plain model when 0 or no image)."""
        if self.control_image is None or self.control_scale == 0.0:
            return self.base(x, t, cond)
        b = self.base
        batch = x.shape[0]
        t = torch.as_tensor(t)
        t = t.expand(batch) if t.ndim == 0 else t
        sample = x.to(b.device, b.dtype)
        if b.channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last)
        timesteps, cond = t.to(b.device, torch.float32), cond.to(b.device, b.dtype)
        h, w = (int(v) * b.vae_scale for v in x.shape[-2:])
        image = self.control_image
        if image.shape[-2:] != (h, w):
            image = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
        down, mid = self.controlnet(sample, timesteps, encoder_hidden_states=cond,
                                    controlnet_cond=image.expand(batch, -1, -1, -1),
                                    conditioning_scale=self.control_scale, return_dict=False)
        out = b._unet_forward(sample, timesteps, encoder_hidden_states=cond, down_block_additional_residuals=down,
                              mid_block_additional_residual=mid, return_dict=False)[0]
        return out.to(x.device, x.dtype)


def load_controlnet(base: Any, id_or_path: str | Path, control_scale: float = 1.0) -> ControlledModel:
    """A diffusers ControlNetModel from a local folder or the local hub cache, attached to an SD model."""
    from diffusers import ControlNetModel

    from pipeline.sd_files import resolve_local, weights_variant

    folder = resolve_local(id_or_path, "ControlNet")
    if not (folder / "config.json").is_file():
        raise ValueError(f"ControlNet {str(id_or_path)!r} ({folder}) is not a diffusers model folder (no config.json)")
    net = ControlNetModel.from_pretrained(folder, torch_dtype=base.dtype, local_files_only=True,
                                          variant=weights_variant(folder))
    return ControlledModel(base, net, control_scale)
