"""Timesteps for a step count and the per-slot coefficient tables the samplers run on (computed once per config)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np
import torch

from pipeline.noise_schedule import alpha_sigma_at, log_sigma_table, timestep_of_sigma

SAMPLERS = ("turbo", "lcm", "ddim", "dpmpp_2m")
SPACINGS = ("trailing", "leading", "linspace", "logsnr", "karras", "model")
LCM_SIGMA_DATA = 0.5  # LCM boundary condition constant (Song et al., consistency models; diffusers fixes it too)
KARRAS_RHO = 7.0  # Karras et al. 2022, eq. 5


@dataclass(frozen=True)
class SchedulerSettings:
    """What a checkpoint's scheduler_config.json says about sampling (diffusers' key names)."""

    timestep_spacing: str = "trailing"  # the spacing EngineConfig(spacing="model") uses
    steps_offset: int = 0  # added to "leading" timesteps (SD 1.x ships 1)
    set_alpha_to_one: bool = True  # ddim: the last step goes to alpha 1 (True) or to alphas_cumprod[0]
    original_inference_steps: int = 50  # lcm: size of the distillation grid (timesteps 19, 39, ..., 999)
    timestep_scaling: float = 10.0  # lcm: boundary-condition time scale
    thresholding: bool = False  # dynamic thresholding of x0 (Imagen, Saharia et al. 2022)
    dynamic_thresholding_ratio: float = 0.995  # quantile of |x0| used as the threshold
    sample_max_value: float = 1.0  # largest threshold

    def __post_init__(self) -> None:
        if self.timestep_spacing not in SPACINGS[:-1]:
            raise ValueError(f"timestep_spacing must be one of {SPACINGS[:-1]}, got {self.timestep_spacing!r}")
        if self.original_inference_steps < 1:
            raise ValueError(f"original_inference_steps must be >= 1, got {self.original_inference_steps}")
        if not 0.0 < self.dynamic_thresholding_ratio <= 1.0 or self.sample_max_value < 1.0:
            raise ValueError("dynamic_thresholding_ratio must be in (0, 1] and sample_max_value >= 1")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "SchedulerSettings":
        """Read a diffusers scheduler config; a missing key takes diffusers' default (spacing: 'leading')."""
        spacing = config.get("timestep_spacing", "leading")
        if spacing not in SPACINGS[:-1]:
            raise ValueError(f"scheduler timestep_spacing {spacing!r} is not one of {SPACINGS[:-1]}")
        ois = config.get("original_inference_steps")
        return cls(
            timestep_spacing=spacing, steps_offset=int(config.get("steps_offset", 0) or 0),
            set_alpha_to_one=bool(config.get("set_alpha_to_one", True)),
            original_inference_steps=int(ois) if ois else 50,
            timestep_scaling=float(config.get("timestep_scaling", 10.0)),
            thresholding=bool(config.get("thresholding", False)),
            dynamic_thresholding_ratio=float(config.get("dynamic_thresholding_ratio", 0.995)),
            sample_max_value=float(config.get("sample_max_value", 1.0)),
        )


@dataclass(frozen=True)
class ScheduleConfig:
    """Which timesteps a stream visits and how it moves between them."""

    sampler: str = "dpmpp_2m"  # turbo | lcm | ddim | dpmpp_2m
    steps: int = 4  # number of denoising steps = stream slots
    spacing: str = "trailing"  # ddim/dpmpp_2m: trailing | leading | linspace | logsnr | karras | model (checkpoint's)
    t_index_list: tuple[int, ...] | None = None  # lcm/turbo: explicit indices into the LCM distillation grid
    strength: float = 1.0  # img2img: fraction of the schedule that is run (1.0 = from pure noise, 0.0 = none)
    settings: SchedulerSettings = field(default_factory=SchedulerSettings)  # the checkpoint's scheduler config

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {SPACINGS}, got {self.spacing!r}")
        if self.t_index_list is not None:
            origin = self.settings.original_inference_steps
            if len(self.t_index_list) == 0:
                raise ValueError("t_index_list must not be empty")
            if any(not 0 <= i < origin for i in self.t_index_list):
                raise ValueError(f"t_index_list entries must be in range 0..{origin - 1}")
            if list(self.t_index_list) != sorted(set(self.t_index_list)):
                raise ValueError("t_index_list must be strictly increasing, e.g. (0, 16, 32, 45)")
        elif not 1 <= self.steps <= 1000:
            raise ValueError(f"steps must be in range 1..1000, got {self.steps}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be in range 0..1, got {self.strength}")

    @property
    def slots(self) -> int:
        """How many frames are in flight (one per denoising step)."""
        return len(self.t_index_list) if self.t_index_list is not None else self.steps


def lcm_grid(num_train_timesteps: int = 1000, origin_steps: int = 50) -> np.ndarray:
    """LCM's distillation timesteps, descending: 999, 979, ..., 19 for 1000 training steps."""
    k = num_train_timesteps // origin_steps
    return (np.arange(1, origin_steps + 1) * k - 1)[::-1].copy()


def _distinct(ts: np.ndarray, n: int) -> np.ndarray:
    """The distinct non-negative integer timesteps of ts, descending, at most n of them."""
    ts = np.unique(ts[ts >= 0].astype(np.int64))[::-1]
    return ts[:n]


def make_timesteps(config: ScheduleConfig, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The distinct descending timesteps (M,) float64, M <= slots, a configuration runs (M < slots at low strength).

    Integer timesteps except for logsnr/karras, whose continuous timesteps the table rounds for the model.
    """
    T, n, s, st = len(alphas_cumprod), config.slots, config.strength, config.settings
    top = s * T
    spacing = st.timestep_spacing if config.spacing == "model" else config.spacing
    if config.t_index_list is not None:
        ts = lcm_grid(T, st.original_inference_steps)[list(config.t_index_list)]  # the indices fix the strength
        return torch.from_numpy(ts.astype(np.float64))
    if config.sampler == "lcm":  # the distillation grid below the strength, evenly sub-sampled (diffusers' rule)
        k = T // st.original_inference_steps
        grid = (np.arange(1, int(st.original_inference_steps * s + 1e-9) + 1) * k - 1)[::-1]
        if len(grid) > n:
            grid = grid[np.floor(np.linspace(0, len(grid), num=n, endpoint=False)).astype(np.int64)]
        return torch.from_numpy(grid.astype(np.float64))
    if config.sampler == "turbo" or spacing == "trailing":
        ts = np.round(np.arange(top, 0, -top / n))[:n] - 1 if top > 0 else np.zeros(0)
        return torch.from_numpy(_distinct(ts, n).astype(np.float64))
    if spacing == "leading":
        ratio = int(top) // n
        ts = (np.arange(n) * ratio)[::-1] + st.steps_offset if ratio else np.arange(int(top))[::-1]
        return torch.from_numpy(_distinct(ts[ts < max(top, 1)], n).astype(np.float64))
    if spacing == "linspace":
        ts = np.round(np.linspace(0, top - 1, n))[::-1] if top >= 1 else np.zeros(0)
        return torch.from_numpy(_distinct(ts, n).astype(np.float64))
    t_top = min(top, T) - 1
    if t_top < 0:
        return torch.zeros(0, dtype=torch.float64)
    m = min(n, int(np.floor(t_top)) + 1)  # never more noise levels than integer timesteps below the top
    log_s = log_sigma_table(alphas_cumprod)
    s_max = float(np.exp(np.interp(t_top, np.arange(T), log_s.numpy())))
    s_min = float(torch.exp(log_s[0]))
    if m == 1:
        sig = torch.tensor([s_max], dtype=torch.float64)
    elif spacing == "logsnr":  # lambda = -log(sigma_ve) uniform between its ends
        sig = torch.exp(torch.linspace(np.log(s_max), np.log(s_min), m, dtype=torch.float64))
    else:  # karras
        ramp = torch.linspace(0, 1, m, dtype=torch.float64)
        lo, hi = s_min ** (1 / KARRAS_RHO), s_max ** (1 / KARRAS_RHO)
        sig = (hi + ramp * (lo - hi)) ** KARRAS_RHO
    return timestep_of_sigma(alphas_cumprod, sig)


@dataclass(frozen=True)
class SlotTable:
    """Per-slot coefficient vectors, each (N,): slot i holds a frame at timesteps[i] and moves it to i+1.

    Every sampler's update is  x_next = a * x + b * D + c * noise,  D = x0 + d * (x0 - x0_prev),  where x0 is the
    (boundary-conditioned) data prediction: c_skip * x + c_out * x0_model. A hold slot (active False, low img2img
    strength) passes its frame on unchanged: a = 1, b = c = d = 0. A frame enters at (entry_alpha, entry_sigma).
    The samplers carry u = alpha x0 (`pipeline.samplers`): the *_u vectors are the weights that multiply it, computed
    in float64 here; bd_u divides by the alpha of the slot before (where the frame's x0_prev was made).
    """

    timesteps: torch.Tensor  # (N,) model input timesteps (integers, as diffusers passes them)
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
    b_u: torch.Tensor  # (N,) b / alpha: the weight of u in a first-order step
    b_2m_u: torch.Tensor  # (N,) b (1 + d) / alpha: the weight of u in the second-order step
    bd_u: torch.Tensor  # (N,) b d / alpha of slot i - 1: the weight of u_prev (subtracted)
    c_skip_u: torch.Tensor  # (N,) alpha c_skip: LCM's boundary condition in u (c_out stays as it is)
    active: torch.Tensor  # (N,) bool: False for a hold slot
    entry_alpha: torch.Tensor  # (1,) alpha of a frame entering slot 0 (1 when every slot holds: strength 0)
    entry_sigma: torch.Tensor  # (1,) sigma of a frame entering slot 0
    sampler: str
    threshold: tuple[float, float] | None = None  # dynamic thresholding (ratio, max value) of x0, None = off

    @cached_property
    def slots(self) -> int:
        """Number of slots N (kept: `len` of a tensor is slow next to a dict look-up, and the stream asks often)."""
        return len(self.timesteps)

    def to(self, device: torch.device, dtype: torch.dtype) -> "SlotTable":
        """The same table with every float vector on device/dtype; timesteps stay float32 (bfloat16 would turn the
        model's timestep 999 into 1000)."""

        def kind(k: str, v: torch.Tensor) -> torch.dtype:
            return v.dtype if not v.is_floating_point() else torch.float32 if k == "timesteps" else dtype

        values = {f.name: getattr(self, f.name) for f in fields(self)}  # fields only: not the cached columns
        return SlotTable(**{k: (v.to(device=device, dtype=kind(k, v)) if isinstance(v, torch.Tensor) else v)
                            for k, v in values.items()})

    @cached_property
    def columns(self) -> "SlotColumns":
        """The per-slot coefficients as (N, 1, 1, 1) columns, computed once per table (the stream's hot path)."""
        def col(v: torch.Tensor) -> torch.Tensor:
            return v.reshape(-1, 1, 1, 1)

        return SlotColumns(alpha=col(self.alpha), sigma=col(self.sigma), a_minus_1=col(self.a - 1), b=col(self.b_u),
                           c=col(self.c), c_skip=col(self.c_skip_u), c_out=col(self.c_out), b_2m=col(self.b_2m_u),
                           bd=col(self.bd_u))

    @cached_property
    def slot_columns(self) -> tuple["SlotColumns", ...]:
        """Slot i's (1, 1, 1, 1) columns, views of `columns` (sequential sampling runs one slot at a time)."""
        k = self.columns
        return tuple(SlotColumns(*(getattr(k, f.name)[i:i + 1] for f in fields(SlotColumns)))
                     for i in range(self.slots))


@dataclass(frozen=True)
class SlotColumns:
    """A SlotTable's vectors as (N, 1, 1, 1) columns that broadcast over latents (N, C, h, w); the weights of the
    scaled prediction u = alpha x0 (b, c_skip, b_2m, bd) are the table's *_u vectors."""

    alpha: torch.Tensor
    sigma: torch.Tensor
    a_minus_1: torch.Tensor  # a - 1: x_next starts as x + (a - 1) x (`pipeline.samplers.advance`)
    b: torch.Tensor  # b / alpha: the weight of u
    c: torch.Tensor
    c_skip: torch.Tensor  # alpha c_skip: LCM's boundary weight of x (u = c_skip x + c_out u_model)
    c_out: torch.Tensor
    b_2m: torch.Tensor  # b (1 + d) / alpha: the weight of u in the second-order update
    bd: torch.Tensor  # b d / alpha_prev: the weight of u_prev (subtracted)


def diagonal(tables: list[SlotTable]) -> SlotTable:
    """The table whose row i is row i of tables[i]: each frame in flight runs the table it entered with."""
    first = tables[0]
    if all(t is first for t in tables):
        return first
    rows = {}
    for f in fields(SlotTable):
        v = getattr(first, f.name)
        if isinstance(v, torch.Tensor) and f.name not in ("entry_alpha", "entry_sigma"):
            rows[f.name] = torch.stack([getattr(t, f.name)[i] for i, t in enumerate(tables)])
        else:
            rows[f.name] = v
    return SlotTable(**rows)


def _lcm_boundary(t: torch.Tensor, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """LCM's (c_skip, c_out) at discrete timesteps t."""
    st = t * scaling
    return LCM_SIGMA_DATA**2 / (st**2 + LCM_SIGMA_DATA**2), st / torch.sqrt(st**2 + LCM_SIGMA_DATA**2)


def build_table(
    sampler: str, alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, final_timestep: float | None = None,
    slots: int | None = None, settings: SchedulerSettings = SchedulerSettings(),
) -> SlotTable:
    """Coefficient table for `sampler` over distinct descending timesteps (M,), preceded by slots - M hold slots;
    the last slot goes to final_timestep (None = clean)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    ts = timesteps.to(torch.float64)
    m = len(ts)
    n = m if slots is None else slots
    if m > n or (m > 1 and not bool((ts[:-1] > ts[1:]).all())):
        raise ValueError(f"timesteps must be at most {n} strictly decreasing values, got {ts.tolist()}")
    if m == 0:  # strength 0: every slot holds, the frame is its input (evaluated at t=0 only to stay finite)
        ts = torch.zeros(1, dtype=torch.float64)
    alpha, sigma = alpha_sigma_at(alphas_cumprod, ts)
    if final_timestep is None or m == 0:
        fa, fs = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    else:
        fa, fs = alpha_sigma_at(alphas_cumprod, torch.tensor([float(final_timestep)]))
    alpha_next, sigma_next = torch.cat([alpha[1:], fa]), torch.cat([sigma[1:], fs])
    k = len(ts)
    zeros, ones = torch.zeros(k, dtype=torch.float64), torch.ones(k, dtype=torch.float64)
    c_skip, c_out, d = zeros, ones, zeros
    if sampler in ("turbo", "lcm"):
        if sampler == "lcm":
            c_skip, c_out = _lcm_boundary(ts.round(), settings.timestep_scaling)
        a, b, c = zeros, alpha_next, sigma_next  # predict x0, re-noise to the next slot's timestep
    else:
        # DPM-Solver++ in lambda = log(alpha / sigma): x_next = (s_n/s) x + alpha_n (1 - e^-h) D, e^-h = (s_n a)/(a_n s)
        a = sigma_next / sigma
        b = alpha_next - sigma_next * alpha / sigma
        c = zeros
        if sampler == "dpmpp_2m" and k > 1:
            lam = torch.log(alpha / sigma)  # (M,)
            lam_next = torch.log(alpha_next / sigma_next.clamp_min(1e-30))
            h = lam_next - lam
            r = torch.zeros(k, dtype=torch.float64)
            r[1:] = (lam[1:] - lam[:-1]) / h[1:]  # h_prev / h
            second = torch.zeros(k, dtype=torch.bool)
            second[1:] = sigma_next[1:] > 0  # first order on the first step and on a final step to sigma 0
            d = torch.where(second, 1.0 / (2.0 * r.clamp_min(1e-12)), zeros)
    if m == 0:
        a, b, c, d = ones, zeros, zeros, zeros
        alpha_next, sigma_next = alpha, sigma
    hold = n - m if m else n - 1
    active = torch.cat([torch.zeros(hold, dtype=torch.bool), torch.full((k,), m > 0)])

    def pad(v: torch.Tensor, fill: float | None) -> torch.Tensor:  # hold rows: fill, or the first real row's value
        head = v[:1].expand(hold) if fill is None else torch.full((hold,), fill, dtype=v.dtype)
        return torch.cat([head, v])

    alpha, b, d, c_skip = pad(alpha, None), pad(b, 0.0), pad(d, 0.0), pad(c_skip, 0.0)  # (N,)
    alpha_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha[:-1]])  # slot 0 has no x0_prev (d = 0)
    table = SlotTable(
        timesteps=pad(ts.round(), None), alpha=alpha, sigma=pad(sigma, None),
        alpha_next=torch.cat([alpha[:1].expand(hold), alpha_next]),
        sigma_next=torch.cat([sigma[:1].expand(hold), sigma_next]), c_skip=c_skip, c_out=pad(c_out, 1.0),
        a=pad(a, 1.0), b=b, c=pad(c, 0.0), d=d, b_u=b / alpha, b_2m_u=b * (1 + d) / alpha, bd_u=b * d / alpha_prev,
        c_skip_u=alpha * c_skip, active=active,
        entry_alpha=alpha[:1].clone() if m else torch.ones(1, dtype=torch.float64),
        entry_sigma=sigma[:1].clone() if m else torch.zeros(1, dtype=torch.float64), sampler=sampler,
        threshold=(settings.dynamic_thresholding_ratio, settings.sample_max_value) if settings.thresholding else None,
    )
    return table


def table_for(config: ScheduleConfig, alphas_cumprod: torch.Tensor) -> SlotTable:
    """The slot table of a configuration (timesteps + coefficients), honouring the checkpoint's settings."""
    st = config.settings
    final = 0.0 if config.sampler == "ddim" and not st.set_alpha_to_one else None  # diffusers' final_alpha_cumprod
    return build_table(config.sampler, alphas_cumprod, make_timesteps(config, alphas_cumprod), final,
                       slots=config.slots, settings=st)
