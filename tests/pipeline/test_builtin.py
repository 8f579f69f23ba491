"""The builtin model as a user sees it: protocol, content, prompts that mean their colours, seeds, clean frames."""

from __future__ import annotations

import pytest
import torch

from pipeline.builtin import BuiltinModel, load_builtin
from pipeline.builtin_content import FAMILIES, PALETTES
from pipeline.conditioning import Conditioning
from pipeline.noise_schedule import alpha_sigma_at, scaled_linear_alphas_cumprod
from pipeline.protocol import PREDICTION_TYPES, Denoiser
from pipeline.stream import EngineConfig, StreamEngine

SIZE = (256, 256)
STEPS = torch.tensor([999.0, 749.0, 499.0, 249.0])  # 4 trailing steps, as the stream runs them


@pytest.fixture(scope="module")
def model() -> BuiltinModel:
    return load_builtin()


def _noise(model: BuiltinModel, seeds: list[int]) -> torch.Tensor:
    shape = model.latent_shape(SIZE)
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])


def _sample(model: BuiltinModel, emb: torch.Tensor, x: torch.Tensor, last: bool = False) -> torch.Tensor:
    """Deterministic DDIM over STEPS: x0 = (x - sigma eps) / alpha, x_next = alpha_n x0 + sigma_n eps; returns the
    final x0 (or, with last=True, the latents entering the last step)."""
    alpha, sigma = alpha_sigma_at(model.alphas_cumprod, STEPS)
    cond = emb[None].expand(x.shape[0], -1, -1)
    for i, t in enumerate(STEPS[:-1]):
        eps = model(x, t.expand(x.shape[0]), cond)
        x = alpha[i + 1] * (x - sigma[i] * eps) / alpha[i] + sigma[i + 1] * eps
    if last:
        return x
    return (x - sigma[-1] * model(x, STEPS[-1].expand(x.shape[0]), cond)) / alpha[-1]


def _images(model: BuiltinModel, emb: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    return model.decode(_sample(model, emb, _noise(model, seeds)))


def test_builtin_speaks_the_denoiser_protocol(model: BuiltinModel) -> None:
    assert isinstance(model, Denoiser)
    assert model.prediction_type in PREDICTION_TYPES
    torch.testing.assert_close(model.alphas_cumprod, scaled_linear_alphas_cumprod())
    assert model.latent_shape((512, 512)) == (3, 64, 64) and model.latent_shape((136, 72)) == (3, 9, 17)
    emb = model.encode_prompt("neon rings")
    assert emb.shape == (1, model.encoder.dim) and emb.dtype == model.dtype
    x = torch.randn(2, 3, 9, 17)
    out = model(x, torch.tensor([999.0, 12.5]), emb[None].expand(2, -1, -1))
    assert out.shape == x.shape and torch.isfinite(out).all()
    image = model.decode(x)
    assert image.shape == (2, 3, 72, 136) and 0 <= float(image.min()) and float(image.max()) <= 1
    assert model.encode_image(image).shape == x.shape
    with pytest.raises(ValueError, match="multiple of 8, got 250x250"):
        model.latent_shape((250, 250))


def test_many_families_and_palettes_each_answer_their_word(model: BuiltinModel) -> None:
    assert len(FAMILIES) >= 12 and len(PALETTES) >= 12
    for name in FAMILIES:
        fam, _ = model.style_weights(model.encode_prompt(name))
        assert float(fam[0, :, model.families.index(name)].min()) > 0.95, name
    for pal in PALETTES:
        _, weights = model.style_weights(model.encode_prompt(pal.name))
        assert float(weights[0, :, [p.name for p in PALETTES].index(pal.name)].min()) > 0.9, pal.name


def test_white_black_and_black_and_white_are_three_pictures(model: BuiltinModel) -> None:
    """The colour words alone give a white picture and a black one; together they give white on black (mono)."""
    def shot(prompt: str) -> torch.Tensor:
        engine = StreamEngine(model, EngineConfig(size_px=(128, 128), steps=4))
        image = engine.render(Conditioning(prompts=((prompt, 1.0),)))  # (3, H, W) in [0, 1]
        return image.max(0).values, image.min(0).values

    (w_max, w_min), (b_max, b_min), (m_max, m_min) = (shot(p) for p in ("white rings", "black rings",
                                                                         "black and white rings"))
    assert float((w_max < 0.12).float().mean()) < 0.02 and float((w_min > 0.8).float().mean()) > 0.3
    assert float((b_min > 0.8).float().mean()) < 0.02 and float((b_max < 0.12).float().mean()) > 0.4
    assert float((m_max < 0.12).float().mean()) > 0.2 and float((m_min > 0.8).float().mean()) > 0.1


def test_red_and_blue_prompts_give_their_colours_and_a_blend_lies_between(model: BuiltinModel) -> None:
    seeds = list(range(8))
    red_emb, blue_emb = model.encode_prompt("red"), model.encode_prompt("blue")
    red = _images(model, red_emb, seeds).mean(dim=(0, 2, 3))  # (3,) mean R, G, B
    blue = _images(model, blue_emb, seeds).mean(dim=(0, 2, 3))
    mixed = _images(model, 0.5 * red_emb + 0.5 * blue_emb, seeds).mean(dim=(0, 2, 3))
    assert float(red[0]) > float(red[1:].max()) + 0.15, red
    assert float(blue[2]) > float(blue[:2].max()) + 0.1, blue
    assert float(blue[0]) < float(mixed[0]) < float(red[0]), (red, mixed, blue)
    assert float(red[2]) < float(mixed[2]) < float(blue[2]), (red, mixed, blue)


def _render(model: BuiltinModel, seed: int, prompt: str = "") -> torch.Tensor:
    engine = StreamEngine(model, EngineConfig(size_px=SIZE))
    return engine.render(Conditioning(prompts=((prompt, 1.0),), seeds=((seed, 1.0),)))


def test_seeds_differ_and_the_same_seed_repeats_exactly(model: BuiltinModel) -> None:
    a, b = _render(model, 1), _render(model, 2)
    assert float((a - b).abs().mean()) > 0.1
    fresh = load_builtin()  # a fresh model: content generation is deterministic
    assert torch.equal(a, _render(fresh, 1)) and torch.equal(b, _render(fresh, 2))


def test_the_model_is_the_exact_posterior_of_one_gaussian_per_conditioning(model: BuiltinModel) -> None:
    h, w = 3, 4
    emb = model.encode_prompt("golden waves")
    model.layout = ((2.25, 1.0), (13.5, 0.5))
    mean = model.layout_mean(emb, h, w, 0.3, model.layout)[0].double()  # (D,)
    flow = model.flow(h, w)
    cov = flow.covariance(0).double()  # noise_std^2 I + the smooth fields' variances
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    model.motion_phase = 0.3
    try:
        for t in (999.0, 500.0, 20.0):
            alpha, sigma = (float(v) for v in alpha_sigma_at(model.alphas_cumprod, torch.tensor([t])))
            got = model(x.float(), torch.tensor([t]), emb[None]).double().reshape(-1)
            total = alpha * alpha * cov + sigma * sigma * torch.eye(cov.shape[0], dtype=torch.float64)
            want = sigma * torch.linalg.solve(total, x.reshape(-1) - alpha * mean)  # E[eps | x_t] of a Gaussian
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    finally:
        model.motion_phase, model.layout = 0.0, ((0.0, 1.0),)


def test_the_noise_walk_morphs_continuously(model: BuiltinModel) -> None:
    emb = model.encode_prompt("")
    n1, n2 = _noise(model, [3, 4, 5, 6]), _noise(model, [7, 8, 9, 10])
    frames = [model.decode(_sample(model, emb, n1 * torch.cos(p) + n2 * torch.sin(p)))
              for p in torch.tensor([0.0, 0.002, 0.02, 0.2])]
    steps = [float((f - frames[0]).abs().mean(dim=(1, 2, 3)).max()) for f in frames[1:]]
    assert steps[0] < 0.01 and steps[0] <= steps[1] <= steps[2], steps


def test_frames_are_clean_no_white_noise_left(model: BuiltinModel) -> None:
    emb, noise = model.encode_prompt("neon rings"), _noise(model, list(range(4)))
    x0 = _sample(model, emb, noise)
    h, w = model.latent_shape(SIZE)[1:]
    flow = model.flow(h, w)
    means = model.means(emb, h, w, 0.0)[0]  # (V, D)
    q, _ = torch.linalg.qr(torch.cat([means, flow.flip(means), flow.basis.T]).T.double())  # what the data can draw
    for i in range(4):
        frame = x0[i].reshape(-1).double()
        grain = frame - q @ (q.T @ frame)  # the part of the frame no layout or smooth field explains
        rms_logit = float(grain[: 3 * h * w].pow(2).mean().sqrt()) * model.gain(h, w)
        assert rms_logit < 0.05, (i, rms_logit)  # the start noise was model.gain(h, w) = 8 logit units


def test_img2img_fades_from_the_input_to_the_prompt_and_feedback_stays_clean(model: BuiltinModel) -> None:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    picture = torch.stack([(xx > 0.5).float() * 0.9, ((xx - 0.3) ** 2 + (yy - 0.6) ** 2 < 0.04).float() * 0.8,
                           yy * 0.7])
    image = (picture.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    prompt = (("neon magenta rings", 1.0),)
    away = []
    for strength in (0.0, 0.1, 0.5, 0.9, 1.0):
        engine = StreamEngine(model, EngineConfig(size_px=(128, 128), mode="img2img"))
        frame = engine.render(Conditioning(prompts=prompt, image=image, strength=strength))
        away.append(float((frame - picture).abs().mean()))
    assert away[0] < 0.03 and away[1] < 0.06, away  # strength 0 is the input; a little strength keeps most of it
    assert away[0] < away[1] < away[2] < away[3], away  # then the prompt's picture takes over step by step
    txt = StreamEngine(model, EngineConfig(size_px=(128, 128))).render(Conditioning(prompts=prompt))
    assert float((txt - StreamEngine(model, EngineConfig(size_px=(128, 128), mode="img2img")).render(
        Conditioning(prompts=prompt, image=image, strength=1.0))).abs().mean()) < 0.1  # strength 1 is the prompt

    def grain(frame: torch.Tensor) -> float:  # mean neighbour difference: noise shows as a rise
        return float((frame[:, 1:] - frame[:, :-1]).abs().mean())

    for walk in (0.0, 0.01):  # a still feedback loop (its input is the prompt's own picture) and a moving one
        engine = StreamEngine(model, EngineConfig(size_px=(128, 128), mode="feedback"))
        frames = [engine.step(Conditioning(prompts=prompt, strength=0.35, noise_walk=walk * i)) for i in range(20)]
        assert max(grain(f) for f in frames) < 1.3 * grain(frames[0]), [round(grain(f), 4) for f in frames[::4]]
