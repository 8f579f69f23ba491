"""A closed-form test model: data x0 ~ N(mu, s^2 I), with mu shifted by the conditioning embedding."""

from __future__ import annotations

import torch

from pipeline.noise_schedule import alpha_sigma_at, scaled_linear_alphas_cumprod
from pipeline.protocol import ModelDefaults


class GaussianModel:
    """Exact epsilon-prediction denoiser of an isotropic Gaussian; the embedding's mean shifts the data mean."""

    name = "gaussian"

    def __init__(self, mu: float = 0.3, s: float = 0.5, channels: int = 4, prediction_type: str = "epsilon",
                 dtype: torch.dtype = torch.float64) -> None:
        self.mu, self.s = mu, s
        self.channels = channels
        self.prediction_type = prediction_type
        self.alphas_cumprod = scaled_linear_alphas_cumprod()
        self.device = torch.device("cpu")
        self.dtype = dtype
        self.defaults = ModelDefaults(sampler="dpmpp_2m", steps=4, cfg="none", size_px=(64, 64))
        self.calls: list[int] = []

    def latent_shape(self, size_px: tuple[int, int]) -> tuple[int, int, int]:
        """(C, h, w): an 8x smaller latent, like SD."""
        return (self.channels, size_px[1] // 8, size_px[0] // 8)

    def encode_prompt(self, text: str) -> torch.Tensor:
        """(2, 3): a deterministic embedding per text; '' is zeros (the unconditional mean)."""
        if not text:
            return torch.zeros(2, 3, dtype=self.dtype)
        g = torch.Generator().manual_seed(sum(map(ord, text)))
        return torch.randn(2, 3, generator=g, dtype=self.dtype)

    def mean(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, 1, 1, 1) data mean under each conditioning."""
        return (self.mu + cond.mean(dim=(1, 2))).view(-1, 1, 1, 1)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Exact model output for N(mean(cond), s^2 I) data."""
        self.calls.append(x.shape[0])
        a, sg = alpha_sigma_at(self.alphas_cumprod, t)
        a, sg = a.to(x.dtype).view(-1, 1, 1, 1), sg.to(x.dtype).view(-1, 1, 1, 1)
        m = self.mean(cond).to(x.dtype)
        v = a**2 * self.s**2 + sg**2
        eps = sg * (x - a * m) / v
        if self.prediction_type == "epsilon":
            return eps
        x0 = (x - sg * eps) / a
        if self.prediction_type == "sample":
            return x0
        return (a * x - x0) / sg  # v = alpha eps - sigma x0  <=>  x0 = alpha x - sigma v

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> (B, 3, 8h, 8w): the first three channels, upsampled, squashed to [0, 1]."""
        rgb = latents[:, :3]
        return torch.sigmoid(torch.nn.functional.interpolate(rgb, scale_factor=8, mode="nearest"))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> latents (inverse of decode on the first three channels)."""
        small = torch.nn.functional.avg_pool2d(images, 8)
        lat = torch.logit(small.clamp(1e-4, 1 - 1e-4))
        extra = torch.zeros(lat.shape[0], self.channels - 3, *lat.shape[2:], dtype=lat.dtype)
        return torch.cat([lat, extra], dim=1).to(self.dtype)

    def exact_flow(self, x_a: torch.Tensor, t_a: float, t_b: float, cond: torch.Tensor) -> torch.Tensor:
        """The probability-flow ODE solution from t_a to t_b: x_b = alpha_b mu + sqrt(v_b/v_a)(x_a - alpha_a mu)."""
        (aa, ab), (sa, sb) = alpha_sigma_at(self.alphas_cumprod, torch.tensor([t_a, t_b], dtype=torch.float64))
        m = self.mean(cond[None]).to(x_a.dtype)
        va, vb = aa**2 * self.s**2 + sa**2, ab**2 * self.s**2 + sb**2
        return ab * m + torch.sqrt(vb / va) * (x_a - aa * m)
