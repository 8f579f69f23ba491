"""Classifier-free guidance and StreamDiffusion's residual CFG (arXiv 2312.12491, section 3.2).

none    : one conditional evaluation per slot (batch N).
full    : classic CFG, eps = eps_neg + g (eps_cond - eps_neg) with eps_neg from the negative prompt (batch 2N).
self    : residual CFG, self-negative: eps_neg is approximated by delta * the frame's virtual residual noise, the
          noise that takes the frame's previous x0 estimate to its current latent (batch N).
onetime : residual CFG, onetime-negative: one extra evaluation of slot 0 with the negative prompt gives the frame's
          negative x0 estimate, which travels with the frame; at every slot the negative noise is the residual of
          the latent against it, (x - alpha x0_neg) / sigma (batch N + 1).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from pipeline.protocol import ModelDefaults

CFG_MODES = ("none", "full", "self", "onetime")


def batch_size(mode: str, slots: int) -> int:
    """Model batch size of one stream step for a guidance mode."""
    if mode not in CFG_MODES:
        raise ValueError(f"cfg must be one of {CFG_MODES}, got {mode!r}")
    return {"none": slots, "full": 2 * slots, "self": slots, "onetime": slots + 1}[mode]


def guide(eps_cond: torch.Tensor, eps_neg: torch.Tensor, guidance: float) -> torch.Tensor:
    """CFG combination eps_neg + g (eps_cond - eps_neg)."""
    return eps_neg + guidance * (eps_cond - eps_neg)


def residual_noise(x: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Virtual residual noise (x - alpha x0) / sigma of latents x against a data estimate x0; alpha, sigma (B,)."""
    return (x - alpha.view(-1, 1, 1, 1) * x0) / sigma.view(-1, 1, 1, 1).clamp_min(1e-12)


def sampler_defaults(defaults: ModelDefaults, sampler: str) -> ModelDefaults:
    """The model's defaults for running `sampler`: lcm and turbo bring their own guidance (none), unless the model
    itself defaults to that sampler; the other samplers keep the model's cfg and guidance."""
    if sampler == defaults.sampler or sampler not in ("lcm", "turbo"):
        return replace(defaults, sampler=sampler)
    return replace(defaults, sampler=sampler, cfg="none", guidance=1.0)  # distilled samplers: guidance is baked in
