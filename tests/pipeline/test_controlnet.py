"""ControlNet on a live picture: matches diffusers' ControlNet pipeline, streams exactly, scale 0 is no ControlNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.conditioning import Conditioning
from pipeline.controlnet import ControlledModel, canny, load_controlnet, preprocess_control
from pipeline.sd import load_sd
from pipeline.stream import EngineConfig, StreamEngine

W, H = 64, 48


@pytest.fixture(scope="module")
def tiny_controlnet(tiny_sd_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ControlNetModel made from the tiny UNet, its zero convolutions randomised (else it does nothing)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sd_model / "unet", local_files_only=True)
    torch.manual_seed(1)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")):
                p.normal_(0.0, 0.3)
    folder = tmp_path_factory.mktemp("controlnet") / "net"
    net.save_pretrained(folder)
    return folder


def _picture() -> np.ndarray:
    """A bright disc on a dark ground, (H, W, 3) uint8."""
    yy, xx = np.mgrid[:H, :W]
    disc = ((yy - H / 2) ** 2 + (xx - W / 2) ** 2 < 15**2).astype(np.uint8) * 200 + 30
    return np.repeat(disc[:, :, None], 3, axis=2)


def test_canny_finds_the_outline_of_a_disc_and_nothing_inside() -> None:
    edges = canny(torch.from_numpy(_picture()).permute(2, 0, 1).float() / 255.0)[0]
    r = torch.hypot(*torch.meshgrid(torch.arange(H) - H / 2, torch.arange(W) - W / 2, indexing="ij"))
    assert set(torch.unique(edges).tolist()) == {0.0, 1.0}
    assert float(edges[(r - 15).abs() < 2].mean()) > 0.3, "the rim is an edge"
    assert float(edges[(r < 11) | (r > 19)].sum()) == 0.0, "flat areas hold no edges"


def _ddim(model, noise: torch.Tensor) -> torch.Tensor:
    cond, a, x, ts = model.encode_prompt("a red square")[None], model.alphas_cumprod, noise, [501, 1]
    for i, t in enumerate(ts):
        eps = model(x, torch.full((1,), float(t)), cond)
        a_t, a_prev = float(a[t]), float(a[ts[i + 1]]) if i + 1 < len(ts) else float(a[0])
        x = a_prev**0.5 * (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5 + (1 - a_prev) ** 0.5 * eps
    return model.decode(x)


def test_controlled_frame_matches_diffusers_controlnet_pipeline(tiny_sd_model: Path, tiny_controlnet: Path) -> None:
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline

    base = load_sd(tiny_sd_model, device="cpu", progress=False)
    model = load_controlnet(base, tiny_controlnet)
    control = preprocess_control(_picture(), (W, H), "canny")
    model.set_control(control, 0.7)
    noise = torch.randn((1, *model.latent_shape((W, H))), generator=torch.Generator().manual_seed(3))
    ours = _ddim(model, noise)
    sd = StableDiffusionPipeline.from_pretrained(tiny_sd_model, local_files_only=True)
    pipe = StableDiffusionControlNetPipeline(
        vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet, scheduler=sd.scheduler,
        controlnet=ControlNetModel.from_pretrained(tiny_controlnet), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    theirs = pipe("a red square", image=control, num_inference_steps=2, guidance_scale=1.0, height=H, width=W,
                  controlnet_conditioning_scale=0.7, latents=noise.clone(), output_type="pt").images
    assert float((ours - theirs).abs().max()) <= 1e-4
    plain = _ddim(base, noise)
    assert float((ours - plain).abs().max()) > 1e-3, "the control image must change the picture"
    model.set_control(scale=0.0)
    assert torch.equal(_ddim(model, noise), plain), "scale 0 is exactly the model without ControlNet"


def test_controlled_stream_equals_sequential(tiny_sd_model: Path, tiny_controlnet: Path) -> None:
    model = load_controlnet(load_sd(tiny_sd_model, device="cpu", progress=False), tiny_controlnet)
    model.set_control(preprocess_control(_picture(), (W, H), "none"), 1.0)
    engine = StreamEngine(model, EngineConfig(size_px=(W, H), sampler="lcm", steps=3, cfg="none", skip_static=False))
    cond = Conditioning(prompts=(("a red square", 1.0),), seeds=((2, 1.0),))
    frames = [engine.step(cond) for _ in range(4)]
    torch.testing.assert_close(frames[-1], engine.render(cond), atol=1e-5, rtol=0)


def test_bad_control_inputs_fail_clearly(tiny_sd_model: Path, tiny_controlnet: Path) -> None:
    model = load_controlnet(load_sd(tiny_sd_model, device="cpu", progress=False), tiny_controlnet)
    with pytest.raises(ValueError, match="control_scale"):
        model.set_control(scale=float("nan"))
    with pytest.raises(ValueError, match="control mode"):
        preprocess_control(_picture(), (W, H), "depth")
    with pytest.raises(ValueError, match="uint8"):
        preprocess_control(np.zeros((4, 4)), (W, H))
    assert isinstance(model, ControlledModel) and model.prediction_type == "epsilon"
