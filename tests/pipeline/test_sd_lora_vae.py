"""LoRA fusing and swapped-in VAEs (TAESD / AutoencoderTiny) on the diffusers SD family."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.sd import load_sd

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # the UNet attention projections


@pytest.fixture(scope="module")
def lora_dir(tiny_sd_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """Random LoRA weights saved the way diffusers' training scripts save them, plus the unfused peft UNet."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    torch.manual_seed(1)
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_model / "unet", local_files_only=True).eval()
    # init_lora_weights=False: B is random too, so the adapter really changes the output.
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=LORA_TARGETS))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    root = tmp_path_factory.mktemp("loras")
    for name in ("lcm-lora-tiny", "style-lora"):
        StableDiffusionPipeline.save_lora_weights(root / name, unet_lora_layers=layers)
    return root, unet


def _probe(model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    cond = torch.stack([model.encode_prompt("a green field"), model.encode_prompt("")])
    return x, torch.tensor([250.0, 750.5]), cond


def test_lcm_lora_file_changes_the_unet_exactly_as_peft_does_and_switches_to_lcm(
    tiny_sd_model: Path, lora_dir: tuple[Path, torch.nn.Module]
) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    root, peft_unet = lora_dir
    base = load_sd(tiny_sd_model, device="cpu", progress=False)
    model = load_sd(tiny_sd_model, device="cpu", lora=root / "lcm-lora-tiny" / "pytorch_lora_weights.safetensors",
                    progress=False)
    x, t, cond = _probe(model)
    with torch.no_grad():
        expected = peft_unet(x, t, encoder_hidden_states=cond).sample
    got = model(x, t, cond)
    assert float((got - base(x, t, cond)).abs().max()) > 1e-2, "the LoRA must change the UNet output"
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, BaseTunerLayer) for m in model.unet.modules()), "fused: no LoRA layers per call"
    d = model.defaults
    assert (d.sampler, d.steps, d.cfg) == ("lcm", 4, "none")
    assert model.lora is not None and "lcm-lora-tiny" in model.lora


def test_other_loras_keep_the_checkpoint_defaults_unless_flagged_lcm(
    tiny_sd_model: Path, lora_dir: tuple[Path, torch.nn.Module]
) -> None:
    root, _ = lora_dir
    style = load_sd(tiny_sd_model, device="cpu", lora=root / "style-lora", progress=False)  # a folder works too
    assert style.defaults.sampler == "dpmpp_2m"
    flagged = load_sd(tiny_sd_model, device="cpu", lora=root / "style-lora", lcm_lora=True, progress=False)
    assert (flagged.defaults.sampler, flagged.defaults.steps) == ("lcm", 4)
    x, t, cond = _probe(style)
    torch.testing.assert_close(style(x, t, cond), flagged(x, t, cond))


def test_a_peft_adapter_folder_loads_with_its_own_alpha(tiny_sd_model: Path, tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_model / "unet", local_files_only=True).eval()
    # lora_alpha != r: the scale 2 lives only in adapter_config.json, so dropping it would show.
    peft_unet = get_peft_model(unet, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=LORA_TARGETS))
    peft_unet.save_pretrained(tmp_path / "my-adapter")  # adapter_model.safetensors (bare peft keys) + adapter_config.json
    model = load_sd(tiny_sd_model, device="cpu", lora=tmp_path / "my-adapter", progress=False)
    x, t, cond = _probe(model)
    with torch.no_grad():
        expected = peft_unet(x, t, encoder_hidden_states=cond).sample
    torch.testing.assert_close(model(x, t, cond), expected, atol=1e-4, rtol=1e-4)
    assert model.defaults.sampler == "dpmpp_2m"


def test_a_lora_for_another_model_is_refused_with_the_reason(tiny_sd_model: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"mid_block.nothing_here.to_q.lora_A.weight": torch.zeros(4, 7),
               "mid_block.nothing_here.to_q.lora_B.weight": torch.zeros(7, 4)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match=r"other\.safetensors.*base model"):
        load_sd(tiny_sd_model, device="cpu", lora=tmp_path / "other.safetensors", progress=False)


@pytest.fixture(scope="module")
def tiny_taesd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight AutoencoderTiny (TAESD's architecture, narrow) saved as a diffusers folder."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(2)
    vae = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=4,
    )
    path = tmp_path_factory.mktemp("taesd") / "taesd-tiny"
    vae.save_pretrained(path)
    return path


def test_tiny_autoencoder_decodes_and_encodes_at_the_requested_size(tiny_sd_model: Path, tiny_taesd: Path) -> None:
    from diffusers import AutoencoderTiny

    model = load_sd(tiny_sd_model, device="cpu", vae=tiny_taesd, progress=False)
    assert isinstance(model.vae, AutoencoderTiny)
    reference = AutoencoderTiny.from_pretrained(tiny_taesd, local_files_only=True).eval()
    z = torch.randn(2, *model.latent_shape((96, 64)), generator=torch.Generator().manual_seed(4))
    images = model.decode(z)
    assert images.shape == (2, 3, 64, 96)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    with torch.no_grad():
        expected = (reference.decode(z).sample / 2 + 0.5).clamp(0, 1)
        expected_latents = reference.encode(images * 2 - 1).latents
    torch.testing.assert_close(images, expected)
    latents = model.encode_image(images)
    assert latents.shape == (2, 4, 8, 12)
    torch.testing.assert_close(latents, expected_latents)


def test_full_vae_encode_is_the_scaled_posterior_mean(tiny_sd_model: Path) -> None:
    from diffusers import AutoencoderKL

    model = load_sd(tiny_sd_model, device="cpu", vae=tiny_sd_model, progress=False)  # a pipeline folder's vae/
    reference = AutoencoderKL.from_pretrained(tiny_sd_model / "vae", local_files_only=True).eval()
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = reference.encode(images * 2 - 1).latent_dist.mean * reference.config.scaling_factor
    latents = model.encode_image(images)
    torch.testing.assert_close(latents, expected)
    torch.testing.assert_close(model.encode_image(images), latents, atol=0, rtol=0)  # deterministic


def test_a_vae_with_other_latent_channels_is_refused(tiny_sd_model: Path, tmp_path: Path) -> None:
    from diffusers import AutoencoderTiny

    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1),
                    latent_channels=16).save_pretrained(tmp_path / "taesd3")
    with pytest.raises(ValueError, match=r"16 latent channels.*has 4"):
        load_sd(tiny_sd_model, device="cpu", vae=tmp_path / "taesd3", progress=False)
