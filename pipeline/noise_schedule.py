"""The training noise schedule: alphas_cumprod tables and the map between timesteps and (alpha, sigma)."""

from __future__ import annotations

import torch


def scaled_linear_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """Stable Diffusion's 'scaled_linear' schedule: (T,) float64 alphas_cumprod."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def log_sigma_table(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """log of the variance-exploding sigma, sqrt((1 - a) / a), per training timestep: (T,) float64."""
    a = alphas_cumprod.to(torch.float64)
    return 0.5 * torch.log((1.0 - a) / a)


def alpha_sigma_at(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t) of the VP process at (possibly fractional) timesteps t, float64.

    Integer t reads the table; fractional t interpolates log(sigma/alpha) linearly, which inverts
    `timestep_of_sigma` exactly (the rule diffusers uses for Karras sigmas).
    """
    log_s = log_sigma_table(alphas_cumprod)
    tt = t.detach().to(torch.float64).cpu().clamp(0, len(log_s) - 1)
    lo = tt.floor().long()
    hi = (lo + 1).clamp(max=len(log_s) - 1)
    w = tt - lo.to(torch.float64)
    ls = (1 - w) * log_s[lo] + w * log_s[hi]
    sigma_ve = torch.exp(ls)
    alpha = 1.0 / torch.sqrt(1.0 + sigma_ve**2)
    return alpha, sigma_ve * alpha


def timestep_of_sigma(alphas_cumprod: torch.Tensor, sigma_ve: torch.Tensor) -> torch.Tensor:
    """Fractional timestep whose VE sigma (sigma/alpha) is sigma_ve: piecewise-linear in log sigma, float64."""
    log_s = log_sigma_table(alphas_cumprod)
    target = torch.log(sigma_ve.to(torch.float64))
    idx = torch.searchsorted(log_s, target).clamp(1, len(log_s) - 1)
    lo, hi = log_s[idx - 1], log_s[idx]
    w = ((target - lo) / (hi - lo)).clamp(0, 1)
    return (idx - 1).to(torch.float64) + w
