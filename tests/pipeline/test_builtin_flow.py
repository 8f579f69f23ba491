"""The builtin model's flow: exact against a dense reference, and prompt / seed / motion sweeps that move smoothly."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.builtin_flow import FlowMixture
from pipeline.builtin_model import BuiltinModel
from pipeline.builtin_motion_report import flow_figures
from pipeline.conditioning import Conditioning
from pipeline.gaussian_mixture import smooth_basis
from pipeline.stream import EngineConfig, StreamEngine


def _dense_eps(flow: FlowMixture, x: torch.Tensor, a: float, s: float, means: torch.Tensor) -> torch.Tensor:
    """E[eps | x_t] by brute force: every (view, variant) Gaussian with its dense covariance."""
    d = x.shape[0]
    logs, eps = [], []
    for g in range(flow.views):
        for v in range(means.shape[0]):
            mu = means[v] if g == 0 else flow.flip(means[v][None])[0]
            cov = a * a * flow.covariance(v) + s * s * torch.eye(d, dtype=x.dtype)  # flips keep Sigma_v
            diff = x - a * mu
            sol = torch.linalg.solve(cov, diff)
            logs.append(-0.5 * (diff @ sol + torch.logdet(cov)))
            eps.append(s * sol)
    w = torch.softmax(torch.stack(logs), 0)
    return (w[:, None] * torch.stack(eps)).sum(0)


@pytest.mark.parametrize("mirror", [False, True])
def test_flow_mixture_matches_a_dense_reference(mirror: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    h, w, v = 4, 5, 3
    basis, _, _ = smooth_basis(h, w, 2)  # (3*h*w, 12)
    var = torch.rand(v, basis.shape[1], generator=gen, dtype=torch.float64) * 0.5
    flow = FlowMixture(basis, var, 0.1, (3, h, w), mirror=mirror)
    means = torch.randn(2, v, 3 * h * w, generator=gen, dtype=torch.float64) * 0.4  # per-sample means
    x = torch.randn(2, 3 * h * w, generator=gen, dtype=torch.float64)
    for a, s in ((0.07, 0.99), (0.6, 0.8), (0.99, 0.05)):
        alpha, sigma = torch.full((2,), a, dtype=torch.float64), torch.full((2,), s, dtype=torch.float64)
        got = flow.eps(x, alpha, sigma, means)
        for b in range(2):
            torch.testing.assert_close(got[b], _dense_eps(flow, x[b], a, s, means[b]), rtol=1e-7, atol=1e-9)


@pytest.fixture(scope="module")
def model() -> BuiltinModel:
    return BuiltinModel()


def _sweep(model: BuiltinModel, conds: list[Conditioning], size: int = 64) -> list[torch.Tensor]:
    engine = StreamEngine(model, EngineConfig(size_px=(size, size), skip_static=False))
    frames = []
    for cond in conds:
        frames.append(engine.step(cond))
    model.motion_phase = 0.0
    return frames


def test_a_prompt_morph_flows_instead_of_cutting(model: BuiltinModel) -> None:
    ramp = [i / 199 for i in range(200)]
    frames = _sweep(model, [Conditioning(prompts=(("neon magenta rings", 1 - s), ("deep blue ocean waves", s)))
                            for s in ramp])
    fig = flow_figures(frames)
    assert fig["max_step_share"] <= 0.05 and fig["steps_for_80pct"] >= 0.25, fig
    blue = frames[-1].mean(dim=(1, 2))
    assert float(blue[2]) > float(blue[0]) + 0.1, blue  # the morph lands on the blue prompt


def test_a_seed_morph_and_the_noise_walk_flow_instead_of_cutting(model: BuiltinModel) -> None:
    ramp = [i / 199 for i in range(200)]
    seed = _sweep(model, [Conditioning(prompts=(("neon magenta rings", 1.0),), seeds=((1, 1 - s), (2, s)))
                          for s in ramp])
    fig = flow_figures(seed)
    assert fig["total_change"] > 20 and fig["max_step_share"] <= 0.05 and fig["steps_for_80pct"] >= 0.3, fig
    one, two = (Conditioning(prompts=(("neon magenta rings", 1.0),), seeds=((s, 1.0),)) for s in (1, 2))
    landed = _sweep(model, [Conditioning(prompts=(("neon magenta rings", 1.0),), seeds=((1, 1 - s), (2, s)))
                            for s in ramp] + [two] * 4)[-1]  # once the frames in flight have all seen seed 2
    assert float((seed[0] - _sweep(model, [one])[0]).abs().max()) < 1e-5
    assert float((landed - _sweep(model, [two] * 5)[-1]).abs().max()) < 1e-5  # the morph lands on seed 2's picture
    walk = _sweep(model, [Conditioning(noise_walk=2 * math.pi * s) for s in ramp])
    fig = flow_figures(walk)
    assert fig["total_change"] > 50 and fig["max_step_share"] <= 0.05 and fig["steps_for_80pct"] >= 0.3, fig
    turn = _sweep(model, [Conditioning(noise_walk=w) for w in (2 * math.pi,) * 5])[-1]
    assert float((walk[0] - turn).abs().max()) < 1e-4  # a whole turn of the walk comes back to its start


def test_the_motion_phase_moves_the_picture_smoothly_and_loops(model: BuiltinModel) -> None:
    frames = _sweep(model, [Conditioning(prompts=(("green tunnel", 1.0),), motion_phase=i / 100) for i in range(101)],
                    size=128)
    fig = flow_figures(frames)
    assert fig["total_change"] > 50 and fig["max_step_share"] <= 0.05 and fig["steps_for_80pct"] >= 0.3, fig
    again = _sweep(model, [Conditioning(prompts=(("green tunnel", 1.0),), motion_phase=p) for p in (0.0,) * 5], size=128)
    assert float((frames[-1] - again[-1]).abs().mean()) < 0.02  # phase 1 is phase 0: the motion loops


def test_family_words_land_on_their_pattern(model: BuiltinModel) -> None:
    h = w = 8
    for name in ("waves", "stars", "tunnel", "rings"):
        fam, _ = model.style_weights(model.encode_prompt(f"blue {name}"))
        assert float(fam[0, :, model.families.index(name)].min()) > 0.95, name
    means = model.means(model.encode_prompt("red"), h, w, 0.0)[0, :, : 3 * h * w].reshape(-1, 3, h * w)
    rgb = torch.sigmoid(means * model.gain(h, w) + model._centre.reshape(1, 3, 1)).mean(dim=(0, 2))
    assert float(rgb[0]) > float(rgb[1:].max()) + 0.15, rgb
    assert math.isfinite(float(rgb.sum()))
