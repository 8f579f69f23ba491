"""Samplers as small pure functions over per-slot coefficient vectors (see `pipeline.schedule.SlotTable`).

turbo / lcm  : predict x0 (LCM: with boundary conditions c_skip, c_out), re-noise to the next slot's timestep.
ddim         : DPM-Solver++ first order (Lu et al. 2022, arXiv 2211.01095) = DDIM with eta 0.
dpmpp_2m     : DPM-Solver++(2M), data prediction, midpoint form; the history is the x0 the same frame had at
               the previous slot, so it runs inside a stream batch exactly as it runs sequentially.

A step carries the data prediction scaled by its slot's alpha, u = alpha x0 (for epsilon models u = x - sigma eps,
one pass over the latents, no division); the coefficients that multiply it carry the 1 / alpha (`SlotColumns`).

Every term of a stream step is one `torch.addcmul(..., out=)`: right after the model call the CPU's caches are cold
and each distinct torch op pays for its own dispatch path again (~8 us at 256x256 on a 2-core CPU), while one op
used for every term is warm after its first (the step's six terms measured in place: 53 -> 40 us).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Callable

import torch

from pipeline.schedule import SlotColumns, SlotTable


def _col(v: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N, 1, 1, 1) for broadcasting over latents (a column already is one)."""
    return v if v.dim() == 4 else v.view(-1, 1, 1, 1)


def _columns(table: SlotTable, idx: torch.Tensor | None) -> SlotColumns:
    """The (B, 1, 1, 1) coefficients of slots idx (None: every slot), all cached by the table but a batch of
    several chosen slots."""
    if idx is None:
        return table.columns
    if idx.numel() == 1:
        return table.slot_columns[int(idx)]
    k = table.columns
    return SlotColumns(*(getattr(k, f.name)[idx] for f in fields(SlotColumns)))


def to_x0(out: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
          prediction: str) -> torch.Tensor:
    """Data prediction x0 from a model output (epsilon, v_prediction or sample); alpha, sigma are (B,) or columns."""
    a, s = _col(alpha), _col(sigma)
    if prediction == "epsilon":
        return torch.addcmul(x, out, s, value=-1.0).div_(a)  # (x - s out) / a in two passes
    if prediction == "v_prediction":
        return torch.mul(x, a).addcmul_(out, s, value=-1.0)
    if prediction == "sample":
        return out
    raise ValueError(f"prediction type must be epsilon, v_prediction or sample, got {prediction!r}")


def to_scaled(out: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, prediction: str,
              into: torch.Tensor | None = None) -> torch.Tensor:
    """The scaled data prediction u = alpha x0 from a model output; alpha, sigma are (B,) or columns.
    into, if given, receives u."""
    if prediction == "epsilon":
        return torch.addcmul(x, out, _col(sigma), value=-1.0, out=into)  # x - sigma eps in one pass
    return torch.mul(to_x0(out, x, alpha, sigma, prediction), _col(alpha), out=into)


def to_eps(out: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
           prediction: str) -> torch.Tensor:
    """Noise prediction epsilon from a model output; alpha, sigma are (B,)."""
    a, s = _col(alpha), _col(sigma)
    if prediction == "epsilon":
        return out
    if prediction == "v_prediction":
        return s * x + a * out
    if prediction == "sample":
        return (x - a * out) / s
    raise ValueError(f"prediction type must be epsilon, v_prediction or sample, got {prediction!r}")


def dynamic_threshold(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Imagen's dynamic thresholding: clamp x0 to the ratio-quantile s of |x0| (1 <= s <= max_value), divide by s."""
    flat = x0.abs().reshape(x0.shape[0], -1).float()  # (B, C*h*w)
    s = torch.quantile(flat, ratio, dim=1).clamp(1.0, max_value).to(x0.dtype).view(-1, 1, 1, 1)
    return torch.maximum(torch.minimum(x0, s), -s) / s


def boundary(u: torch.Tensor, x: torch.Tensor, table: SlotTable, idx: torch.Tensor | None) -> torch.Tensor:
    """The scaled data estimate u = alpha x0 a step uses: x0 thresholded if the checkpoint asks, then LCM's
    boundary conditions c_skip * x + c_out * x0 (identity for the other samplers)."""
    if table.threshold is None and table.sampler != "lcm":
        return u
    k = _columns(table, idx)
    if table.threshold is not None:
        u = dynamic_threshold(u / k.alpha, *table.threshold) * k.alpha
    if table.sampler != "lcm":
        return u
    return k.c_skip * x + k.c_out * u


def advance(
    x: torch.Tensor, u: torch.Tensor, u_prev: torch.Tensor | None, noise: torch.Tensor | None,
    k: SlotColumns, sampler: str, into: torch.Tensor | None = None,
) -> torch.Tensor:
    """One step for the slots whose columns k are (`_columns`): x_next = a x + b (x0 + d (x0 - x0_prev)) + c noise,
    from the scaled predictions u = alpha x0 and u_prev (the frame's u at its previous slot).

    x, u: (B, C, h, w); into, if given, receives x_next (the stream writes it straight into its next batch)."""
    x_next = torch.addcmul(x, x, k.a_minus_1, out=into)  # a x as x + (a - 1) x: one pass per term, one op
    if u_prev is not None and sampler == "dpmpp_2m":  # D = x0 + d (x0 - x0_prev): the midpoint correction
        torch.addcmul(x_next, u, k.b_2m, out=x_next)
        torch.addcmul(x_next, u_prev, k.bd, value=-1.0, out=x_next)  # d = 0 where first order
    else:
        torch.addcmul(x_next, u, k.b, out=x_next)
    if noise is not None and sampler in ("turbo", "lcm"):
        torch.addcmul(x_next, noise, k.c, out=x_next)  # re-noise with the slot's fixed noise
    return x_next


def renoise_of(noises: torch.Tensor | None, i: int) -> torch.Tensor | None:
    """The re-noise a frame with noise set `noises` gets leaving slot i: noises[i + 1] (None after the last slot)."""
    if noises is None or i + 1 >= len(noises):
        return None
    return noises[i + 1]


def sample(
    model_x0: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor, table: SlotTable,
    noises: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run one frame through every slot sequentially; model_x0(x, i) returns the data prediction at slot i.

    noises (N, B, C, h, w) is a frame's noise set, the same convention as the stream's: noises[0] is its start
    noise and noises[i] (i >= 1) the re-noise it gets entering slot i (turbo/lcm). Returns x after the last slot.
    """
    u_prev = None
    for i in range(table.slots):
        idx = torch.tensor([i])
        k = _columns(table, idx)
        u = boundary(model_x0(x, i) * k.alpha, x, table, idx)  # (B, C, h, w) alpha x0
        x = advance(x, u, u_prev, renoise_of(noises, i), k, table.sampler)
        u_prev = u
    return x
