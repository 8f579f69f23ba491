"""Sampler math against closed forms: solver order on a Gaussian with an exact ODE flow, schedules, conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import samplers
from pipeline.noise_schedule import alpha_sigma_at, timestep_of_sigma
from pipeline.schedule import ScheduleConfig, build_table, lcm_grid, make_timesteps
from tests.pipeline.gaussian import GaussianModel

# Integrate to a non-zero sigma, where the exact flow is known. Nearer sigma 0 the Gaussian's flow is stiff and
# 8..64 steps sit in the pre-asymptotic range (error terms of opposite sign cross); at t=300 with unit data variance
# the local orders measured are 2.24, 2.16, 2.09, 2.05 for 8->16->...->128 steps.
T_FINAL = 300.0
DATA_STD = 1.0


def _logsnr_timesteps(model: GaussianModel, steps: int) -> torch.Tensor:
    a, s = alpha_sigma_at(model.alphas_cumprod, torch.tensor([999.0, T_FINAL], dtype=torch.float64))
    lam = torch.linspace(float(torch.log(a[0] / s[0])), float(torch.log(a[1] / s[1])), steps + 1, dtype=torch.float64)
    return timestep_of_sigma(model.alphas_cumprod, torch.exp(-lam))[:-1]


def _error(sampler: str, steps: int) -> float:
    model = GaussianModel(s=DATA_STD)
    cond = model.encode_prompt("a prompt")
    table = build_table(sampler, model.alphas_cumprod, _logsnr_timesteps(model, steps), final_timestep=T_FINAL)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def model_x0(xx: torch.Tensor, i: int) -> torch.Tensor:
        t = table.timesteps[i : i + 1]
        return samplers.to_x0(model(xx, t, cond[None]), xx, table.alpha[i : i + 1], table.sigma[i : i + 1], "epsilon")

    got = samplers.sample(model_x0, x, table)
    exact = model.exact_flow(x, 999.0, T_FINAL, cond)
    return float((got - exact).abs().max())


@pytest.mark.parametrize("sampler, order", [("ddim", 1.0), ("dpmpp_2m", 2.0)])
def test_solver_order_on_exact_gaussian_flow(sampler: str, order: float) -> None:
    steps = np.array([8, 16, 32, 64])
    errors = np.array([_error(sampler, int(n)) for n in steps])
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.25, (slope, errors)


def test_timestep_sigma_maps_invert_each_other() -> None:
    model = GaussianModel()
    t = torch.tensor([0.0, 12.25, 500.5, 998.9], dtype=torch.float64)
    a, s = alpha_sigma_at(model.alphas_cumprod, t)
    assert torch.allclose(timestep_of_sigma(model.alphas_cumprod, s / a), t, atol=1e-9)
    assert torch.allclose(a**2 + s**2, torch.ones_like(a))


def test_schedules_match_known_grids() -> None:
    ac = GaussianModel().alphas_cumprod
    assert make_timesteps(ScheduleConfig("turbo", 4), ac).tolist() == [999, 749, 499, 249]
    assert make_timesteps(ScheduleConfig("dpmpp_2m", 3), ac).tolist() == [999, 666, 332]
    assert make_timesteps(ScheduleConfig("lcm", t_index_list=(0, 16, 32, 45)), ac).tolist() == [999, 679, 359, 99]
    assert lcm_grid()[:3].tolist() == [999, 979, 959]
    for spacing in ("logsnr", "karras"):
        ts = make_timesteps(ScheduleConfig("dpmpp_2m", 8, spacing), ac)
        assert len(ts) == 8 and ts[0] == pytest.approx(999.0) and bool((ts[:-1] > ts[1:]).all())


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_prediction_types_give_the_same_x0(prediction: str) -> None:
    eps_model, other = GaussianModel(), GaussianModel(prediction_type=prediction)
    x = torch.randn(3, 4, 4, 4, dtype=torch.float64)
    t = torch.tensor([900.0, 500.0, 50.0])
    cond = eps_model.encode_prompt("x")[None].expand(3, 2, 3)
    a, s = alpha_sigma_at(eps_model.alphas_cumprod, t)
    ref = samplers.to_x0(eps_model(x, t, cond), x, a, s, "epsilon")
    got = samplers.to_x0(other(x, t, cond), x, a, s, prediction)
    assert torch.allclose(got, ref, atol=1e-9)
    assert torch.allclose(samplers.to_eps(other(x, t, cond), x, a, s, prediction), eps_model(x, t, cond), atol=1e-8)


def test_bad_configuration_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="sampler must be one of"):
        ScheduleConfig("euler")
    with pytest.raises(ValueError, match="strictly increasing"):
        ScheduleConfig("lcm", t_index_list=(16, 0))


def test_a_bfloat16_table_keeps_the_models_integer_timesteps() -> None:
    """bfloat16 rounds 999 to 1000: the table's model timesteps stay float32 while its coefficients follow the model."""
    model = GaussianModel()
    table = build_table("lcm", model.alphas_cumprod, torch.tensor([999.0, 759.0, 499.0, 259.0], dtype=torch.float64))
    moved = table.to(torch.device("cpu"), torch.bfloat16)
    assert moved.timesteps.tolist() == [999.0, 759.0, 499.0, 259.0]
    assert moved.alpha.dtype == torch.bfloat16
