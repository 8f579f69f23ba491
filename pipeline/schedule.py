"""Timesteps for a step count and the per-slot coefficient tables the samplers run on (computed once per config)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.noise_schedule import alpha_sigma_at, log_sigma_table, timestep_of_sigma

SAMPLERS = ("turbo", "lcm", "ddim", "dpmpp_2m")
SPACINGS = ("trailing", "logsnr", "karras")
LCM_ORIGIN_STEPS = 50  # LCM's distillation grid: timesteps 19, 39, ..., 999
LCM_SIGMA_DATA = 0.5  # LCM boundary condition constants (Song et al., consistency models)
LCM_TIMESTEP_SCALING = 10.0
KARRAS_RHO = 7.0  # Karras et al. 2022, eq. 5


@dataclass(frozen=True)
class ScheduleConfig:
    """Which timesteps a stream visits and how it moves between them."""

    sampler: str = "dpmpp_2m"  # turbo | lcm | ddim | dpmpp_2m
    steps: int = 4  # number of denoising steps = stream slots
    spacing: str = "trailing"  # ddim/dpmpp_2m: trailing | logsnr (uniform in lambda) | karras
    t_index_list: tuple[int, ...] | None = None  # lcm/turbo: explicit indices into the 50-step LCM grid
    strength: float = 1.0  # img2img: fraction of the schedule that is run (1.0 = from pure noise)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {SPACINGS}, got {self.spacing!r}")
        if self.t_index_list is not None:
            if len(self.t_index_list) == 0:
                raise ValueError("t_index_list must not be empty")
            if any(not 0 <= i < LCM_ORIGIN_STEPS for i in self.t_index_list):
                raise ValueError(f"t_index_list entries must be in range 0..{LCM_ORIGIN_STEPS - 1}")
            if list(self.t_index_list) != sorted(set(self.t_index_list)):
                raise ValueError("t_index_list must be strictly increasing, e.g. (0, 16, 32, 45)")
        elif not 1 <= self.steps <= 1000:
            raise ValueError(f"steps must be in range 1..1000, got {self.steps}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in range (0, 1], got {self.strength}")

    @property
    def slots(self) -> int:
        """How many frames are in flight (one per denoising step)."""
        return len(self.t_index_list) if self.t_index_list is not None else self.steps


def lcm_grid(num_train_timesteps: int = 1000, origin_steps: int = LCM_ORIGIN_STEPS) -> np.ndarray:
    """LCM's distillation timesteps, descending: 999, 979, ..., 19 for 1000 training steps."""
    k = num_train_timesteps // origin_steps
    return (np.arange(1, origin_steps + 1) * k - 1)[::-1].copy()


def make_timesteps(config: ScheduleConfig, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Descending model timesteps (N,) float64 for a configuration."""
    T = len(alphas_cumprod)
    n = config.slots
    top = config.strength * T
    if config.t_index_list is not None:
        return torch.from_numpy(lcm_grid(T)[list(config.t_index_list)].astype(np.float64))
    if config.sampler == "lcm":
        grid = lcm_grid(T)
        grid = grid[grid < top] if config.strength < 1.0 else grid
        if n > len(grid):
            raise ValueError(f"lcm has only {len(grid)} grid timesteps at this strength, asked for {n} steps")
        idx = np.floor(np.linspace(0, len(grid), num=n, endpoint=False)).astype(np.int64)
        return torch.from_numpy(grid[idx].astype(np.float64))
    if config.sampler == "turbo" or config.spacing == "trailing":
        ts = np.round(np.arange(top, 0, -top / n)).astype(np.int64)[:n] - 1
        return torch.from_numpy(np.maximum(ts, 0).astype(np.float64))
    log_s = log_sigma_table(alphas_cumprod)
    t_top = min(top, T) - 1
    s_max = float(torch.exp(torch.from_numpy(np.interp([t_top], np.arange(T), log_s.numpy()))))
    s_min = float(torch.exp(log_s[0]))
    if config.spacing == "logsnr":  # lambda = -log(sigma_ve) uniform between its ends
        sig = torch.exp(torch.linspace(np.log(s_max), np.log(s_min), n, dtype=torch.float64))
    else:  # karras
        ramp = torch.linspace(0, 1, n, dtype=torch.float64)
        lo, hi = s_min ** (1 / KARRAS_RHO), s_max ** (1 / KARRAS_RHO)
        sig = (hi + ramp * (lo - hi)) ** KARRAS_RHO
    return timestep_of_sigma(alphas_cumprod, sig)


@dataclass(frozen=True)
class SlotTable:
    """Per-slot coefficient vectors, each (N,): slot i holds a frame at timesteps[i] and moves it to i+1.

    Every sampler's update is  x_next = a * x + b * D + c * noise,  D = x0 + d * (x0 - x0_prev),  where x0 is the
    (boundary-conditioned) data prediction: c_skip * x + c_out * x0_model.
    """

    timesteps: torch.Tensor  # (N,) model input timesteps
    alpha: torch.Tensor  # (N,) alpha_t of each slot
    sigma: torch.Tensor  # (N,) sigma_t of each slot
    alpha_next: torch.Tensor  # (N,) alpha of the target (1 for the final clean step)
    sigma_next: torch.Tensor  # (N,) sigma of the target (0 for the final clean step)
    c_skip: torch.Tensor  # (N,) LCM boundary condition (0 otherwise)
    c_out: torch.Tensor  # (N,) LCM boundary condition (1 otherwise)
    a: torch.Tensor  # (N,) coefficient of x
    b: torch.Tensor  # (N,) coefficient of D
    c: torch.Tensor  # (N,) coefficient of the re-noise noise
    d: torch.Tensor  # (N,) second-order correction weight 1/(2r) (0 = first order)
    sampler: str

    @property
    def slots(self) -> int:
        """Number of slots N."""
        return len(self.timesteps)

    def to(self, device: torch.device, dtype: torch.dtype) -> "SlotTable":
        """The same table with every vector on device/dtype."""
        moved = {k: (v.to(device=device, dtype=dtype) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return SlotTable(**moved)


def _lcm_boundary(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LCM's (c_skip, c_out) at discrete timesteps t."""
    st = t * LCM_TIMESTEP_SCALING
    return LCM_SIGMA_DATA**2 / (st**2 + LCM_SIGMA_DATA**2), st / torch.sqrt(st**2 + LCM_SIGMA_DATA**2)


def build_table(
    sampler: str, alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, final_timestep: float | None = None
) -> SlotTable:
    """Coefficient table for `sampler` over descending timesteps; the last slot goes to final_timestep (None = clean)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    ts = timesteps.to(torch.float64)
    n = len(ts)
    alpha, sigma = alpha_sigma_at(alphas_cumprod, ts)
    if final_timestep is None:
        fa, fs = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    else:
        fa, fs = alpha_sigma_at(alphas_cumprod, torch.tensor([float(final_timestep)]))
    alpha_next, sigma_next = torch.cat([alpha[1:], fa]), torch.cat([sigma[1:], fs])
    zeros, ones = torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
    c_skip, c_out, d = zeros, ones, zeros
    if sampler in ("turbo", "lcm"):
        if sampler == "lcm":
            c_skip, c_out = _lcm_boundary(ts)
        a, b, c = zeros, alpha_next, sigma_next  # predict x0, re-noise to the next slot's timestep
    else:
        # DPM-Solver++ in lambda = log(alpha / sigma): x_next = (s_n/s) x + alpha_n (1 - e^-h) D, e^-h = (s_n a)/(a_n s)
        a = sigma_next / sigma
        b = alpha_next - sigma_next * alpha / sigma
        c = zeros
        if sampler == "dpmpp_2m" and n > 1:
            lam = torch.log(alpha / sigma)  # (N,)
            lam_next = torch.log(alpha_next / sigma_next.clamp_min(1e-30))
            h = lam_next - lam
            r = torch.zeros(n, dtype=torch.float64)
            r[1:] = (lam[1:] - lam[:-1]) / h[1:]  # h_prev / h
            second = torch.zeros(n, dtype=torch.bool)
            second[1:] = sigma_next[1:] > 0  # first order on the first step and on a final step to sigma 0
            d = torch.where(second, 1.0 / (2.0 * r.clamp_min(1e-12)), zeros)
    return SlotTable(ts, alpha, sigma, alpha_next, sigma_next, c_skip, c_out, a, b, c, d, sampler)


def table_for(config: ScheduleConfig, alphas_cumprod: torch.Tensor) -> SlotTable:
    """The slot table of a configuration (timesteps + coefficients)."""
    return build_table(config.sampler, alphas_cumprod, make_timesteps(config, alphas_cumprod))
