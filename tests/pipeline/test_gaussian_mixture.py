"""The closed-form mixture denoiser against closed forms, dense linear algebra, an exact ODE flow and Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.builtin import Components, MixtureConfig, MixtureDenoiser, check_size
from pipeline.builtin_text import TagEncoder
from pipeline.gaussian_mixture import FLIP_SIGNS, FLIPS, LowRankMixture, MirrorCoordinates, smooth_basis
from pipeline.noise_schedule import alpha_sigma_at
from pipeline.protocol import Denoiser

F64 = torch.float64


def _one_image_model(image: torch.Tensor, config: MixtureConfig) -> MixtureDenoiser:
    """A MixtureDenoiser whose data is one Gaussian around `image` (3, h, w) (repeated at any size)."""
    encoder = TagEncoder(("red",))

    def render(h: int, w: int) -> Components:
        return Components(F.interpolate(image[None], size=(h, w), mode="area"), torch.ones(1, 3, dtype=F64))

    return MixtureDenoiser("one", render, torch.ones(1, 1), encoder, config, dtype=F64)


def _random_mixture(k: int = 4, modes: int = 2, mirrors: torch.Tensor | None = None,
                    seed: int = 0) -> LowRankMixture:
    g = torch.Generator().manual_seed(seed)
    basis, _, _ = smooth_basis(4, 4, modes)
    d, r = basis.shape
    means, basis_var = torch.randn(k, d, generator=g, dtype=F64), torch.rand(k, r, generator=g, dtype=F64) * 2
    return LowRankMixture(means, basis, basis_var, torch.rand(k, generator=g, dtype=F64), 0.1, (3, 4, 4), mirrors)


def _flip_matrix(dims: tuple[int, ...], shape: tuple[int, int, int]) -> torch.Tensor:
    eye = torch.eye(math.prod(shape), dtype=F64).reshape(-1, *shape)
    return (eye.flip(dims) if dims else eye).reshape(math.prod(shape), -1)


def _dense_posterior(mix: LowRankMixture, mirrors: torch.Tensor, x: torch.Tensor, a: float, s: float,
                     log_prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E[eps | x], E[x0 | x]) by explicit covariances and dense solves, one (view, component) at a time."""
    d = x.shape[0]
    log_w, eps, x0 = [], [], []
    for g, dims in enumerate(FLIPS):
        flip = _flip_matrix(dims, mix.image_shape)
        for k in range(mix.num_components):
            if not mirrors[k, g]:
                continue
            mu, cov = flip @ mix.means[k], flip @ mix.covariance(k) @ flip.T
            marginal = a * a * cov + s * s * torch.eye(d, dtype=F64)
            dist = torch.distributions.MultivariateNormal(a * mu, marginal)
            log_w.append(dist.log_prob(x) + log_prior[k] - math.log(float(mirrors[k].sum())))
            eps.append(s * torch.linalg.solve(marginal, x - a * mu))
            x0.append(mu + a * cov @ torch.linalg.solve(marginal, x - a * mu))
    w = torch.softmax(torch.stack(log_w), 0)[:, None]
    return (w * torch.stack(eps)).sum(0), (w * torch.stack(x0)).sum(0)


def test_single_isotropic_gaussian_gives_the_closed_form_noise_prediction() -> None:
    image = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(1), dtype=F64)
    model = _one_image_model(image, MixtureConfig(variation_std=0.0, detail_std=0.0))
    assert isinstance(model, Denoiser)
    x = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(2), dtype=F64)
    t = torch.tensor([999.0, 500.25, 3.5], dtype=F64)  # fractional timesteps too
    out = model(x, t, model.encode_prompt("")[None].expand(3, -1, -1))
    a, s = (v.view(-1, 1, 1, 1) for v in alpha_sigma_at(model.alphas_cumprod, t))
    mu = model.tone_encode(image[None])  # (1, 3, 4, 4)
    s_data = model.config.noise_std / model.gain(4, 4)  # the isotropic std in latent units
    v = a**2 * s_data**2 + s**2
    torch.testing.assert_close(out, s * (x - a * mu) / v, rtol=1e-10, atol=1e-10)


def test_low_rank_gaussian_matches_a_dense_solve() -> None:
    mix = _random_mixture(k=1)
    x = torch.randn(2, 48, generator=torch.Generator().manual_seed(3), dtype=F64)
    a, s = torch.tensor([0.9, 0.2], dtype=F64), torch.tensor([0.3, 0.95], dtype=F64)
    eps = mix.eps(x, a, s, torch.zeros(2, 1, dtype=F64))
    for b in range(2):
        marginal = a[b] ** 2 * mix.covariance(0) + s[b] ** 2 * torch.eye(48, dtype=F64)
        torch.testing.assert_close(eps[b], s[b] * torch.linalg.solve(marginal, x[b] - a[b] * mix.means[0]))


def _ddim(model: MixtureDenoiser, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM along `timesteps`: x0 = (x - sigma eps) / alpha, x_next = alpha_n x0 + sigma_n eps."""
    cond = model.encode_prompt("")[None].expand(x.shape[0], -1, -1)
    alpha, sigma = alpha_sigma_at(model.alphas_cumprod, timesteps)
    for i in range(len(timesteps) - 1):
        eps = model(x, timesteps[i].expand(x.shape[0]), cond)
        x0 = (x - sigma[i] * eps) / alpha[i]
        x = alpha[i + 1] * x0 + sigma[i + 1] * eps
    return x


def test_many_ddim_steps_land_on_the_exact_ode_flow() -> None:
    image = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(4), dtype=F64)
    model = _one_image_model(image, MixtureConfig(variation_std=0.0, detail_std=0.0, noise_std=4.0))
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(5), dtype=F64)
    t_a, t_b = 999.0, 300.0  # nearer t = 0 the flow is stiff and needs many more steps
    (aa, ab), (sa, sb) = alpha_sigma_at(model.alphas_cumprod, torch.tensor([t_a, t_b], dtype=F64))
    mu, s_data = model.tone_encode(image[None]), model.config.noise_std / model.gain(4, 4)
    va, vb = aa**2 * s_data**2 + sa**2, ab**2 * s_data**2 + sb**2
    exact = ab * mu + torch.sqrt(vb / va) * (x - aa * mu)
    errors = [float((_ddim(model, x, torch.linspace(t_a, t_b, n + 1, dtype=F64)) - exact).abs().max())
              for n in (50, 100, 200)]
    assert errors[-1] < 5e-3 * float(exact.abs().max()), errors
    assert 1.7 < errors[0] / errors[1] < 2.3 and 1.7 < errors[1] / errors[2] < 2.3, errors  # first order


def test_low_rank_ddim_lands_on_the_exact_flow_in_the_eigenbasis() -> None:
    mix = _random_mixture(k=1)
    ac = _one_image_model(torch.zeros(3, 1, 1, dtype=F64), MixtureConfig()).alphas_cumprod
    x_a = torch.randn(1, 48, generator=torch.Generator().manual_seed(6), dtype=F64)
    ts = torch.linspace(999.0, 300.0, 401, dtype=F64)
    alpha, sigma = alpha_sigma_at(ac, ts)
    x = x_a
    for i in range(len(ts) - 1):
        eps = mix.eps(x, alpha[i : i + 1], sigma[i : i + 1], torch.zeros(1, 1, dtype=F64))
        x = alpha[i + 1] * (x - sigma[i] * eps) / alpha[i] + sigma[i + 1] * eps
    lam, q = torch.linalg.eigh(mix.covariance(0))  # each eigen-direction flows on its own
    va, vb = alpha[0] ** 2 * lam + sigma[0] ** 2, alpha[-1] ** 2 * lam + sigma[-1] ** 2
    d = (x_a - alpha[0] * mix.means[0]) @ q
    exact = alpha[-1] * mix.means[0] + (d * torch.sqrt(vb / va)) @ q.T
    assert float((x - exact).abs().max()) < 2e-3 * float(exact.abs().max())


def test_mixture_posterior_matches_dense_computation_with_and_without_mirrors() -> None:
    mirrors = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    for m in (None, mirrors):
        mix = _random_mixture(mirrors=m)
        allowed = mirrors if m is not None else torch.tensor([[1, 0, 0, 0]] * 4, dtype=torch.bool)
        x = torch.randn(3, 48, generator=torch.Generator().manual_seed(7), dtype=F64)
        a = torch.tensor([0.95, 0.5, 0.1], dtype=F64)
        s = torch.sqrt(1 - a**2)
        log_prior = torch.log_softmax(torch.randn(3, 4, generator=torch.Generator().manual_seed(8), dtype=F64), -1)
        eps, x0 = mix.eps(x, a, s, log_prior), mix.x0(x, a, s, log_prior)
        for b in range(3):
            eps_ref, x0_ref = _dense_posterior(mix, allowed, x[b], float(a[b]), float(s[b]), log_prior[b])
            torch.testing.assert_close(eps[b], eps_ref, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(x0[b], x0_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("shape", [(3, 4, 4), (3, 5, 7), (2, 1, 6)])
def test_mirror_coordinates_are_orthonormal_and_turn_flips_into_block_signs(shape: tuple[int, int, int]) -> None:
    coords = MirrorCoordinates(shape, F64, torch.device("cpu"))
    x = torch.randn(2, math.prod(shape), generator=torch.Generator().manual_seed(13), dtype=F64)
    y = coords.forward(x)
    torch.testing.assert_close(coords.inverse(y), x)
    torch.testing.assert_close(y.norm(dim=1), x.norm(dim=1))
    for g, dims in enumerate(FLIPS):
        flipped = coords.forward(x.reshape(2, *shape).flip(dims).reshape(2, -1) if dims else x)
        signs = torch.cat([torch.full((sl.stop - sl.start,), float(FLIP_SIGNS[g, i]), dtype=F64)
                           for i, sl in enumerate(coords.blocks)])
        torch.testing.assert_close(flipped, y * signs)


def test_mixture_posterior_mean_matches_monte_carlo() -> None:
    basis, _, _ = smooth_basis(2, 2, 1)  # D = 12, R = 3
    g = torch.Generator().manual_seed(9)
    means = torch.randn(3, 12, generator=g, dtype=F64) * 0.6
    mix = LowRankMixture(means, basis, torch.full((3, 3), 0.3, dtype=F64), torch.full((3,), 0.3, dtype=F64), 0.2)
    log_prior = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=F64))
    x0 = mix.sample(400_000, g, log_prior)  # exact draws from the data distribution
    a, s = 0.6, 0.8
    x_t = a * mix.sample(1, g, log_prior) + s * torch.randn(1, 12, generator=g, dtype=F64)
    log_w = -((x_t - a * x0) ** 2).sum(1) / (2 * s * s)  # self-normalised importance weights p(x_t | x0)
    w = torch.softmax(log_w, 0)
    estimate = (w[:, None] * x0).sum(0)
    ess = 1.0 / float((w**2).sum())
    exact = mix.x0(x_t, torch.tensor([a], dtype=F64), torch.tensor([s], dtype=F64), log_prior[None])[0]
    assert ess > 1000
    assert float((estimate - exact).abs().max()) < 0.05, (estimate, exact)


def test_samples_and_covariance_agree() -> None:
    mix = _random_mixture(k=1, seed=10)
    draws = mix.sample(200_000, torch.Generator().manual_seed(11))
    torch.testing.assert_close(draws.mean(0), mix.means[0], atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), mix.covariance(0), atol=0.05, rtol=0.05)


def test_decode_is_cubic_upsampling_then_the_tone_curve() -> None:
    model = _one_image_model(torch.rand(3, 2, 2, dtype=F64), MixtureConfig())
    z = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(12), dtype=F64) * 0.3
    up = F.interpolate(z, scale_factor=8, mode="bicubic", align_corners=False)
    expected = torch.sigmoid(up * model.gain(5, 7) + model._centre_model)
    torch.testing.assert_close(model.decode(z), expected)
    image = model.decode(z)
    assert float((model.decode(model.encode_image(image)) - image).abs().mean()) < 0.03  # encode ~ inverts decode


def test_empty_prompt_is_uniform_and_blends_blend_preferences() -> None:
    encoder = TagEncoder(("red", "blue"))
    tags = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])

    def render(h: int, w: int) -> Components:
        return Components(torch.rand(4, 3, h, w), torch.ones(4, 3))

    model = MixtureDenoiser("tags", render, tags, encoder, MixtureConfig(prompt_sharpness=5.0))
    empty, red, blue = (model.encode_prompt(p) for p in ("", "red", "blue"))
    torch.testing.assert_close(model.log_prior(empty[None]).exp(), torch.full((1, 4), 0.25))
    blend = model.log_prior(((red + blue) / 2)[None])[0]
    scores = torch.tensor([0.5, 0.5, 1.0, 0.0]) * 5.0
    torch.testing.assert_close(blend, torch.log_softmax(scores, 0))


def test_sizes_and_shapes_are_checked_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="multiple of 8, got 250x250"):
        check_size((250, 250))
    model = _one_image_model(torch.rand(3, 2, 2, dtype=F64), MixtureConfig())
    assert model.latent_shape((320, 240)) == (3, 30, 40)
    with pytest.raises(ValueError, match=r"x must be \(B, 3, h, w\)"):
        model(torch.zeros(1, 4, 8, 8), torch.zeros(1), torch.zeros(1, 1, 1))
    with pytest.raises(ValueError, match="cond must be"):
        model(torch.zeros(1, 3, 8, 8), torch.zeros(1), torch.zeros(1, 1, 5))
