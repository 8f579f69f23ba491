"""The diffusers SD family as a Denoiser: loads offline, matches diffusers itself, picks defaults, fails clearly."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch

from pipeline.protocol import Denoiser
from pipeline.sd import _alphas_cumprod_from_config, load_sd
from pipeline.sd_files import ModelNotFoundError


def _ddim_render(model, prompt: str, noise: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
    """Deterministic DDIM (eta 0) written from the paper, using only the model's protocol surface."""
    cond = model.encode_prompt(prompt)[None]
    a = model.alphas_cumprod
    x = noise
    for i, t in enumerate(timesteps):
        out = model(x, torch.full((1,), float(t)), cond)
        a_t = float(a[t])
        a_prev = float(a[timesteps[i + 1]]) if i + 1 < len(timesteps) else float(a[0])  # set_alpha_to_one=False
        alpha, sigma = a_t**0.5, (1 - a_t) ** 0.5
        if model.prediction_type == "epsilon":
            x0, eps = (x - sigma * out) / alpha, out
        else:  # v = alpha * eps - sigma * x0
            x0, eps = alpha * x - sigma * out, alpha * out + sigma * x
        x = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps
    return model.decode(x)


@pytest.mark.parametrize("fixture, prediction", [("tiny_sd_model", "epsilon"), ("tiny_sd_v_model", "v_prediction")])
def test_folder_model_renders_the_image_diffusers_renders(request, fixture: str, prediction: str) -> None:
    from diffusers import StableDiffusionPipeline

    folder = request.getfixturevalue(fixture)
    model = load_sd(folder, device="cpu", progress=False)
    assert isinstance(model, Denoiser)
    assert model.prediction_type == prediction
    assert (model.device, model.dtype) == (torch.device("cpu"), torch.float32)

    width, height = 96, 64
    noise = torch.randn((1, *model.latent_shape((width, height))), generator=torch.Generator().manual_seed(3))
    ours = _ddim_render(model, "a red square", noise, [501, 1])  # diffusers' DDIM grid for 2 steps

    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    theirs = pipe("a red square", num_inference_steps=2, guidance_scale=1.0, height=height, width=width,
                  latents=noise.clone(), output_type="pt").images
    assert ours.shape == (1, 3, height, width)
    assert 0.0 <= float(ours.min()) and float(ours.max()) <= 1.0
    assert float(ours.std()) > 1e-3, "a flat image says nothing"
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_unet_output_equals_diffusers_unet_called_directly_with_fractional_timesteps(tiny_sd_model: Path) -> None:
    from diffusers import UNet2DConditionModel

    # torch's own layouts: the reference's arithmetic in the reference's order
    model = load_sd(tiny_sd_model, device="cpu", progress=False, channels_last=False, cpu_layers=False)
    reference = UNet2DConditionModel.from_pretrained(tiny_sd_model / "unet", local_files_only=True).eval()
    x = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    cond = torch.stack([model.encode_prompt("red"), model.encode_prompt("")])
    t = torch.tensor([37.5, 512.25], dtype=torch.float64)
    with torch.no_grad():
        expected = reference(x, t.float(), encoder_hidden_states=cond).sample
    got = model(x, t, cond)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    fast = load_sd(tiny_sd_model, device="cpu", progress=False)  # the CPU default: channels-last, oneDNN layers
    assert fast.channels_last and fast.cpu_layers
    torch.testing.assert_close(fast(x, t, cond), expected, atol=5e-6, rtol=0)  # float rounding, no more
    rounded = model(x, t.round(), cond)
    assert float((got - rounded).abs().max()) > 1e-5, "fractional timesteps must reach the UNet unrounded"


def test_prompt_embedding_is_clip_last_hidden_state_one_prompt_at_a_time(tiny_sd_model: Path) -> None:
    from transformers import CLIPTextModel, CLIPTokenizer

    model = load_sd(tiny_sd_model, device="cpu", progress=False)
    tokenizer = CLIPTokenizer.from_pretrained(tiny_sd_model / "tokenizer")
    encoder = CLIPTextModel.from_pretrained(tiny_sd_model / "text_encoder").eval()
    ids = tokenizer("a blue circle", padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = encoder(ids).last_hidden_state[0]
    got = model.encode_prompt("a blue circle")
    assert got.shape == (77, 32)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, model.encode_prompt(""))


def test_alphas_cumprod_is_the_checkpoints_scheduler_in_float64(tiny_sd_model: Path) -> None:
    from diffusers import DDIMScheduler

    model = load_sd(tiny_sd_model, device="cpu", progress=False)
    scheduler = DDIMScheduler.from_pretrained(tiny_sd_model, subfolder="scheduler")
    assert model.alphas_cumprod.dtype == torch.float64 and model.alphas_cumprod.device == torch.device("cpu")
    torch.testing.assert_close(model.alphas_cumprod, scheduler.alphas_cumprod.double(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "config",
    [
        {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02},
        {"beta_schedule": "squaredcos_cap_v2"},
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "rescale_betas_zero_snr": True},
        {"trained_betas": torch.linspace(1e-4, 0.03, 1000).tolist()},
    ],
    ids=["linear", "cosine", "zero_snr", "trained"],
)
def test_every_beta_schedule_matches_diffusers(config: dict) -> None:
    from diffusers import DDIMScheduler

    expected = DDIMScheduler(num_train_timesteps=1000, **config).alphas_cumprod.double()
    got = _alphas_cumprod_from_config({"num_train_timesteps": 1000, **config})
    torch.testing.assert_close(got[:-1], expected[:-1], atol=1e-6, rtol=1e-5)
    if config.get("rescale_betas_zero_snr"):
        assert 0 < float(got[-1]) < 1e-6, "zero SNR is floored so log(alpha/sigma) stays finite"
    else:
        torch.testing.assert_close(got[-1:], expected[-1:], atol=1e-6, rtol=1e-5)


def test_non_distilled_checkpoint_defaults_to_dpmpp_2m_with_self_guidance(tiny_sd_model: Path) -> None:
    defaults = load_sd(tiny_sd_model, device="cpu", progress=False).defaults
    assert (defaults.sampler, defaults.steps, defaults.cfg) == ("dpmpp_2m", 10, "self")
    assert defaults.size_px == (256, 256)  # the tiny UNet's sample_size 32 x the VAE's 8


def test_distilled_checkpoints_are_recognised_by_folder_name_or_scheduler(tiny_sd_model: Path, tmp_path: Path) -> None:
    turbo = tmp_path / "my-sd-turbo"
    turbo.symlink_to(tiny_sd_model)
    (tmp_path / "sd-turbo-experiments").mkdir()
    plain = tmp_path / "sd-turbo-experiments" / "sd15"  # only the checkpoint's own name counts, not its parents
    plain.symlink_to(tiny_sd_model)
    lcm = tmp_path / "dreamshaper"
    shutil.copytree(tiny_sd_model, lcm)
    config_path = lcm / "scheduler" / "scheduler_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "_class_name": "LCMScheduler"}))
    kinds = {p.name: load_sd(p, device="cpu", progress=False).defaults for p in (turbo, plain, lcm)}
    assert (kinds["my-sd-turbo"].sampler, kinds["my-sd-turbo"].steps, kinds["my-sd-turbo"].cfg) == ("turbo", 1, "none")
    assert kinds["sd15"].sampler == "dpmpp_2m"
    assert (kinds["dreamshaper"].sampler, kinds["dreamshaper"].steps) == ("lcm", 4)


def _fake_hub_cache(cache: Path, repo_id: str, source: Path) -> None:
    """Lay `source` out as huggingface_hub's cache does after `huggingface-cli download repo_id`."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(source, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, private Hugging Face cache; any attempt to open a socket fails the test."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    def no_network(*args, **kwargs):
        raise AssertionError(f"livekit touched the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    return cache


def test_cached_hub_id_loads_and_sd_turbo_is_recognised(tiny_sd_model: Path, hub_cache: Path) -> None:
    _fake_hub_cache(hub_cache, "livekit-test/tiny-sd-turbo", tiny_sd_model)
    model = load_sd("livekit-test/tiny-sd-turbo", device="cpu", progress=False)
    assert model.name == "livekit-test/tiny-sd-turbo"
    d = model.defaults
    assert (d.sampler, d.steps, d.cfg) == ("turbo", 1, "none")
    x = torch.randn(1, 4, 8, 8)
    cond = model.encode_prompt("x")[None]
    same = load_sd(tiny_sd_model, device="cpu", progress=False)
    torch.testing.assert_close(model(x, torch.tensor([999.0]), cond), same(x, torch.tensor([999.0]), cond))


def test_unknown_id_offline_gives_one_error_that_says_how_to_get_it(hub_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        load_sd("nobody/no-such-model", device="cpu", progress=False)
    message = str(caught.value)
    assert "nobody/no-such-model" in message
    assert "huggingface-cli download nobody/no-such-model" in message
    assert "local folder" in message
    assert isinstance(caught.value, ValueError)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__, "no traceback chain"


def test_missing_lora_and_vae_ids_and_folders_name_themselves(tiny_sd_model: Path, hub_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"huggingface-cli download someone/lcm-lora-nope"):
        load_sd(tiny_sd_model, device="cpu", lora="someone/lcm-lora-nope", progress=False)
    with pytest.raises(ModelNotFoundError, match=r"madebyollin/taesd-nope"):
        load_sd(tiny_sd_model, device="cpu", vae="madebyollin/taesd-nope", progress=False)
    with pytest.raises(ModelNotFoundError, match=r"\./no/such/folder.*does not exist"):
        load_sd("./no/such/folder", device="cpu", progress=False)


def test_folders_that_are_not_sd_pipelines_are_refused_with_the_reason(tmp_path: Path, tiny_sd_model: Path) -> None:
    xl = tmp_path / "xl"
    xl.mkdir()
    (xl / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(ValueError, match="SDXL"):
        load_sd(xl, device="cpu", progress=False)
    partial = tmp_path / "partial"
    shutil.copytree(tiny_sd_model / "unet", partial / "unet")
    with pytest.raises(ModelNotFoundError, match=r"text_encoder/"):
        load_sd(partial, device="cpu", progress=False)
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"")
    with pytest.raises(ValueError, match="single file"):
        load_sd(single, device="cpu", progress=False)


def test_sizes_that_the_vae_cannot_make_are_refused(tiny_sd_model: Path) -> None:
    model = load_sd(tiny_sd_model, device="cpu", progress=False)
    assert model.latent_shape((512, 768)) == (4, 96, 64)
    with pytest.raises(ValueError, match=r"multiples of 8.*try 96x64"):
        model.latent_shape((100, 64))


def test_a_progress_bar_shows_while_loading(tiny_sd_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_sd(tiny_sd_model, device="cpu", progress=True)
    err = capsys.readouterr().err
    assert f"Loading {tiny_sd_model}" in err and "4/4" in err
    load_sd(tiny_sd_model, device="cpu", progress=False)
    assert "Loading " + str(tiny_sd_model) not in capsys.readouterr().err
